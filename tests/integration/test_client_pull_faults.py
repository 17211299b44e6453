"""Pulls against a real registry on both backends when bytes are missing or half-fetched.

* A version whose blob was deleted from the store (moto_server object or local
  file) fails with a typed error naming the file and the version, not S3 XML.
* A partial download left in the cache is resumed with a ``Range`` request: the
  bytes that cross the wire (counted by a TCP proxy in front of the blob URLs)
  are about the missing half only, and the result is byte-identical.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import loreg
from loreg.errors import FilesMissingError
from tests.support.fixtures_registry import make_settings
from tests.support.publish import random_safetensors
from tests.support.servers import RunningRegistry, ServerThread
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration

MiB = 2**20
BIG = 4 * MiB


class CountingProxy(TcpProxy):
    """A :class:`TcpProxy` that counts the bytes it relays (both directions)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.relayed = 0
        self._count_lock = threading.Lock()

    def _pump(self, src, dst) -> None:  # same loop as TcpProxy, plus a counter
        try:
            while data := src.recv(256 * 1024):
                with self._count_lock:
                    self.relayed += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (src, dst):
                with self._lock:
                    self._conns.discard(conn)
                conn.close()


class Served:
    """A running registry plus the proxy every blob URL of a pull goes through."""

    def __init__(self, registry: RunningRegistry, client_url: str, proxy: CountingProxy):
        self.registry = registry
        self.client_url = client_url
        self.proxy = proxy


@pytest.fixture(params=["sqlite_local", "postgres_s3"])
def served(request, tmp_path) -> Iterator[Served]:
    """A registry whose blob downloads pass through a counting proxy.

    On S3 the registry's endpoint is the proxy in front of moto_server (so the
    presigned URLs point at it); on the local store the client talks to the API
    through the proxy (the signed blob URLs follow the request's host).
    """
    from registry.app import create_app
    from registry.serve import prepare

    with ExitStack() as stack:
        proxy = CountingProxy("127.0.0.1", 9)
        if request.param == "postgres_s3":
            endpoint = request.getfixturevalue("s3_endpoint")
            proxy.target = ("127.0.0.1", int(endpoint.rsplit(":", 1)[1]))
            settings = make_settings(request.param, tmp_path, stack, endpoint)
            settings = settings.with_overrides(s3_endpoint_url=proxy.url)
        else:
            settings = make_settings(request.param, tmp_path, stack, None)
        stack.enter_context(proxy)
        ctx, token = prepare(settings)
        stack.callback(ctx.engine.dispose)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        client_url = server.url
        if request.param == "sqlite_local":
            proxy.target = ("127.0.0.1", server.port)
            client_url = proxy.url
        running = RunningRegistry(
            url=server.url, admin_token=token, settings=settings, ctx=ctx, backend=request.param
        )
        yield Served(running, client_url, proxy)


@pytest.fixture
def bundle(adapter_dir, tmp_path) -> Path:
    """The tiny adapter plus ``assets/big.safetensors`` (4 MiB of seeded random bytes)."""
    folder = tmp_path / "bundle"
    shutil.copytree(adapter_dir, folder)
    (folder / "assets").mkdir()
    (folder / "assets" / "big.safetensors").write_bytes(random_safetensors(BIG, seed=4))
    return folder


def _sdk(served: Served, cache: Path) -> loreg.Registry:
    return loreg.Registry(
        url=served.client_url,
        token=served.registry.admin_token,
        cache_dir=cache,
        progress=False,
    )


def test_pull_of_a_file_deleted_from_the_store_names_file_and_version(
    served: Served, bundle: Path, tmp_path: Path
) -> None:
    from registry.storage.base import blob_key

    with _sdk(served, tmp_path / "pusher") as sdk:
        pushed = sdk.push(bundle, "faulty")
    weights = (bundle / "adapter_model.safetensors").read_bytes()
    served.registry.ctx.store.delete(blob_key(hashlib.sha256(weights).hexdigest()))

    with _sdk(served, tmp_path / "puller") as sdk, pytest.raises(FilesMissingError) as info:
        sdk.pull("faulty-v1")
    message = str(info.value)
    assert "'adapter_model.safetensors'" in message
    assert pushed.ref in message and pushed.digest in message
    assert "<" not in message and "X-Amz-" not in message, message  # no XML, no query
    assert info.value.missing == ["adapter_model.safetensors"]
    snapshots = tmp_path / "puller" / "snapshots"
    assert not snapshots.exists() or not any(snapshots.iterdir())


def test_cli_pull_of_a_deleted_file_prints_one_line(
    served: Served, bundle: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from loreg import cli
    from registry.storage.base import blob_key

    with _sdk(served, tmp_path / "pusher") as sdk:
        sdk.push(bundle, "faulty")
    big = (bundle / "assets" / "big.safetensors").read_bytes()
    served.registry.ctx.store.delete(blob_key(hashlib.sha256(big).hexdigest()))
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cli-cache"))
    monkeypatch.setenv("LOREG_NO_PROGRESS", "1")
    code = cli.main(
        ["pull", "faulty", "--url", served.client_url, "--token", served.registry.admin_token]
    )
    err = capsys.readouterr().err
    assert code == FilesMissingError.exit_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: file 'assets/big.safetensors' of "), err
    assert "is missing from the registry's object store" in lines[0]


def test_partial_download_in_the_cache_is_resumed_with_range(
    served: Served, bundle: Path, tmp_path: Path
) -> None:
    big = (bundle / "assets" / "big.safetensors").read_bytes()
    sha = hashlib.sha256(big).hexdigest()
    with _sdk(served, tmp_path / "pusher") as sdk:
        sdk.push(bundle, "resumable")

    cache = tmp_path / "puller"
    (cache / "tmp").mkdir(parents=True)
    (cache / "tmp" / f"{sha}.incomplete").write_bytes(big[: BIG // 2])  # a killed pull's leftover
    served.proxy.relayed = 0
    with _sdk(served, cache) as sdk:
        path = sdk.pull("resumable")
    relayed = served.proxy.relayed
    assert (path / "assets" / "big.safetensors").read_bytes() == big
    assert (path / "adapter_model.safetensors").read_bytes() == (
        bundle / "adapter_model.safetensors"
    ).read_bytes()
    # the missing half, the small files and HTTP overhead; a full fetch would be > 4 MiB
    assert BIG // 2 <= relayed < BIG // 2 + MiB // 2, relayed
    assert list((cache / "tmp").iterdir()) == []

    # a fresh cache, for comparison, pulls the whole file through the same proxy
    served.proxy.relayed = 0
    with _sdk(served, tmp_path / "fresh") as sdk:
        sdk.pull("resumable")
    assert served.proxy.relayed >= BIG
