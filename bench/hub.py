"""Hub benchmark: ``snapshot_download`` through loreg's ``/hf`` vs ``loreg pull`` vs raw boto3.

Starts a loopback S3 server (moto_server) and two registries in-process (SQLite
metadata; one with S3 blobs, one with the local blob folder), pushes the same
~200 MB LoRA adapter to both, then measures in one run, best of ``--repeat`` cold
runs each (empty caches):

* ``snapshot_download`` (stock huggingface_hub) with ``endpoint=<registry>/hf``:
  repo info, tree, then per file a HEAD answered by a 302 to a presigned S3 URL and
  a GET of that URL;
* the same against the local-store registry, where the API streams the bytes;
* ``loreg pull`` (``Registry.pull``, sha256-verified);
* raw boto3 on the weights object (``download_file`` and one streamed
  ``get_object``; the faster is the reference).

Run: ``.venv/bin/python bench/hub.py [--size-mb 200] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("LOREG_NO_PROGRESS", "1")
# huggingface_hub reads these at import: talk to the loopback registry only
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="loreg-bench-hf-home-"))

MiB = 2**20


def best_of(repeat: int, run: Callable[[int], None]) -> list[float]:
    """Wall seconds of ``run(i)`` for i in range(repeat)."""
    out = []
    for i in range(repeat):
        t0 = time.perf_counter()
        run(i)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    """Run the benchmark and print a side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="cold runs per method (best kept)")
    args = parser.parse_args()

    import boto3
    from huggingface_hub import snapshot_download
    from pull import write_adapter

    import loreg
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings
    from registry.storage.base import blob_key
    from tests.support.s3server import MotoServer
    from tests.support.servers import ServerThread

    work = Path(tempfile.mkdtemp(prefix="loreg-bench-hub-"))
    rows: dict[str, list[float]] = {}
    try:
        write_adapter(work / "adapter", args.size_mb)
        with MotoServer() as moto:
            s3_settings = Settings(
                data_dir=work / "s3",
                database_url=f"sqlite:///{work / 's3' / 'loreg.db'}",
                s3_bucket="bench",
                s3_endpoint_url=moto.endpoint_url,
                s3_region="us-east-1",
            )
            local_settings = Settings(
                data_dir=work / "local", database_url=f"sqlite:///{work / 'local' / 'loreg.db'}"
            )
            s3_ctx, s3_token = prepare(s3_settings)
            local_ctx, local_token = prepare(local_settings)
            with (
                ServerThread(create_app(context=s3_ctx)) as s3_server,
                ServerThread(create_app(context=local_ctx)) as local_server,
            ):
                for server, token in ((s3_server, s3_token), (local_server, local_token)):
                    pusher = loreg.Registry(
                        url=server.url, token=token, cache_dir=work / "push", progress=False
                    )
                    pusher.push(work / "adapter", "big")
                resolved = pusher.resolve("big-v1")
                total = sum(f["size"] for f in resolved["files"])
                weights = next(
                    f for f in resolved["files"] if f["path"] == "adapter_model.safetensors"
                )

                def hub(server_url: str, token: str, label: str) -> Callable[[int], None]:
                    def run(i: int) -> None:
                        cache = work / f"hf-{label}-{i}"
                        snapshot_download(
                            "default/big",
                            endpoint=f"{server_url}/hf",
                            token=token,
                            cache_dir=cache,
                        )
                        shutil.rmtree(cache)

                    return run

                rows["snapshot_download via /hf (S3 redirect)"] = best_of(
                    args.repeat, hub(s3_server.url, s3_token, "s3")
                )
                rows["snapshot_download via /hf (API stream)"] = best_of(
                    args.repeat, hub(local_server.url, local_token, "local")
                )

                def pull(i: int) -> None:
                    cache = work / f"pull-{i}"
                    loreg.Registry(
                        url=s3_server.url, token=s3_token, cache_dir=cache, progress=False
                    ).pull("big-v1")
                    shutil.rmtree(cache)

                rows["loreg pull (S3, sha256-verified)"] = best_of(args.repeat, pull)

                s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1")
                key = blob_key(weights["sha256"])

                def managed(i: int) -> None:
                    dest = work / f"raw-{i}.bin"
                    s3.download_file("bench", key, str(dest))
                    dest.unlink()

                def stream(i: int) -> None:
                    dest = work / f"raw-{i}.bin"
                    body = s3.get_object(Bucket="bench", Key=key)["Body"]
                    with open(dest, "wb") as f:
                        for chunk in body.iter_chunks(8 * MiB):
                            f.write(chunk)
                    dest.unlink()

                def client_stack(i: int) -> None:
                    # the stock client's own HTTP stack on the presigned URL the HEAD returns:
                    # what any Hub client pays, loreg or not
                    import httpx2

                    head = httpx2.head(
                        f"{s3_server.url}/hf/default/big/resolve/main/adapter_model.safetensors",
                        headers={"Authorization": f"Bearer {s3_token}"},
                    )
                    dest = work / f"stack-{i}.bin"
                    with (
                        httpx2.stream("GET", head.headers["Location"]) as r,
                        open(dest, "wb") as f,
                    ):
                        for chunk in r.iter_bytes(chunk_size=10 * MiB):
                            f.write(chunk)
                    dest.unlink()

                rows["httpx2 GET of the presigned URL (weights)"] = best_of(
                    args.repeat, client_stack
                )
                rows["boto3 download_file (weights only)"] = best_of(args.repeat, managed)
                rows["boto3 get_object stream (weights only)"] = best_of(args.repeat, stream)
            s3_ctx.engine.dispose()
            local_ctx.engine.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    raw = {k: v for k, v in rows.items() if k.startswith("boto3")}
    raw_name = min(raw, key=lambda k: min(raw[k]))
    raw_tp = weights["size"] / min(raw[raw_name]) / MiB
    print(
        f"# bench/hub.py  {dt.date.today()}  {platform.node()}  "
        f"{platform.processor() or platform.machine()}  python {platform.python_version()}"
    )
    print(
        f"# adapter: {total / MiB:.1f} MiB ({weights['size'] / MiB:.1f} MiB weights); "
        f"best of {args.repeat} cold runs; S3 = moto_server on loopback"
    )
    print(f"{'method':<42}{'seconds':>10}{'MiB/s':>10}{'vs raw':>8}")
    for name, times in rows.items():
        size = weights["size"] if "weights" in name else total
        tp = size / min(times) / MiB
        print(f"{name:<42}{min(times):>10.3f}{tp:>10.1f}{tp / raw_tp:>7.2f}x")
    hub_tp = total / min(rows["snapshot_download via /hf (S3 redirect)"]) / MiB
    ratio = hub_tp / raw_tp
    print(
        f"snapshot_download via /hf (S3) / raw boto3 ({raw_name}) throughput: {ratio:.2f}x "
        f"(target >= 0.8x): {'PASS' if ratio >= 0.8 else 'FAIL'}"
    )
    for name, times in rows.items():
        print(f"  {name}: " + " ".join(f"{t:.3f}" for t in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
