"""Fixtures shared by the integration tests: tiny adapter/base files and API clients."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.tiny import save_adapter, save_base_model

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``integration``, so the fast lane leaves it out."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _read_folder(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory) -> Path:
    """A tiny PEFT LoRA adapter (r=4 on q_proj, v_proj) for the tiny Llama base."""
    return save_adapter(tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="session")
def adapter_files(adapter_dir) -> dict[str, bytes]:
    """The adapter's files as bytes, keyed by relative path."""
    return _read_folder(adapter_dir)


@pytest.fixture(scope="session")
def other_adapter_files(tmp_path_factory) -> dict[str, bytes]:
    """A second adapter (different seed and rank)."""
    return _read_folder(save_adapter(tmp_path_factory.mktemp("adapter2"), seed=7, r=8))


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    """The tiny Llama base model folder (config.json + model.safetensors)."""
    return save_base_model(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def base_files(base_dir) -> dict[str, bytes]:
    """The base model's files as bytes."""
    return _read_folder(base_dir)


@pytest.fixture
def admin_api(registry_server):
    """An httpx client on the registry with the admin token."""
    with httpx.Client(
        base_url=registry_server.url,
        timeout=60,
        headers={"Authorization": f"Bearer {registry_server.admin_token}"},
    ) as c:
        yield c


@pytest.fixture
def anon_api(registry_server):
    """An httpx client on the registry without a token."""
    with httpx.Client(base_url=registry_server.url, timeout=60) as c:
        yield c
