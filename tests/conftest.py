"""Shared pytest configuration: environment and server fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.support.fixtures_s3",
    "tests.support.fixtures_registry",
    "tests.support.fixtures_worker",
]
