"""Shared pytest configuration: environment and server fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No request leaves the machine: a Hugging Face client that is not pointed at a test
# server on purpose (HF_ENDPOINT=<registry>/hf) hits a closed loopback port, never the Hub.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9/no-hub-in-tests"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

pytest_plugins = [
    "tests.support.fixtures_s3",
    "tests.support.fixtures_registry",
    "tests.support.fixtures_worker",
]
