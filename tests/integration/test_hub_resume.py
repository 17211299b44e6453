"""An ``hf_hub_download`` cut halfway resumes with a ``Range`` request, byte-identical.

A relay between the client and where the bytes come from (the API for the local
store; S3 behind the presigned URL, via ``LOREG_S3_PUBLIC_ENDPOINT_URL``) closes the
connection once, after 14 of its 24 MiB. The stock client retries within the
same call from where it stopped.
"""

from __future__ import annotations

import hashlib
import shutil
from contextlib import ExitStack
from urllib.parse import urlsplit

import pytest

import loreg
from tests.support.cutting_proxy import CuttingProxy
from tests.support.fixtures_registry import make_settings
from tests.support.hf_client import run_hf
from tests.support.publish import random_safetensors
from tests.support.servers import ServerThread

#: The client writes whole 10 MiB chunks (``DOWNLOAD_CHUNK_SIZE``) and resumes from the
#: last one it wrote: cut after more than one chunk so there is something to keep.
SIZE = 24 * 2**20
CUT = 14 * 2**20


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.mark.parametrize("backend", ["sqlite_local", "postgres_s3"])
def test_interrupted_download_resumes_with_range(request, backend, tmp_path, adapter_dir):
    from registry.app import create_app
    from registry.serve import prepare

    big = random_safetensors(SIZE, seed=11)
    folder = tmp_path / "adapter"
    shutil.copytree(adapter_dir, folder)
    (folder / "big.safetensors").write_bytes(big)
    with ExitStack() as stack:
        s3 = request.getfixturevalue("s3_endpoint") if backend == "postgres_s3" else None
        settings = make_settings(backend, tmp_path, stack, s3)
        if s3 is not None:  # presigned URLs point at the relay in front of S3
            proxy = stack.enter_context(
                CuttingProxy("127.0.0.1", _port(s3), "big.safetensors", CUT)
            )
            settings = settings.with_overrides(s3_public_endpoint_url=proxy.url)
        ctx, token = prepare(settings)
        stack.callback(ctx.engine.dispose)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        endpoint = server.url
        if s3 is None:  # the API streams the bytes: the relay sits in front of it
            proxy = stack.enter_context(
                CuttingProxy("127.0.0.1", _port(server.url), "big.safetensors", CUT)
            )
            endpoint = proxy.url
        loreg.Registry(url=server.url, token=token, cache_dir=tmp_path / "c", progress=False).push(
            folder, "bigone"
        )
        out = run_hf(
            """
from huggingface_hub import hf_hub_download
path = hf_hub_download("default/bigone", "big.safetensors", revision="v1")
print(json.dumps({"sha256": sha256_of(path), "size": os.path.getsize(path)}))
""",
            endpoint + "/hf",
            token,
            tmp_path / "hf-home",
        )
    assert proxy.cuts == 1, proxy.requests
    assert out == {"sha256": hashlib.sha256(big).hexdigest(), "size": SIZE}
    ranges = proxy.range_requests()
    assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-", ranges
    resumed_at = int(ranges[0].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= CUT  # it kept what it had and asked for the rest
