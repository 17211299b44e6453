"""Pull benchmark: cold and warm ``Registry.pull`` vs a plain boto3 download, one run.

Starts a loopback S3 server (moto_server) and the registry (SQLite metadata,
S3 blobs) in-process, pushes a ~200 MB LoRA adapter, then measures:

* cold pull: empty cache, ``Registry.pull(ref)`` (resolve + presigned GETs,
  sha256-verified, atomic rename into the cache);
* raw boto3: the same weights object with ``download_file`` (managed, ranged
  GETs) and with one ``get_object`` streamed to a file; the faster of the two is
  the reference;
* warm pull: ``Registry.pull(ref)`` again with everything cached (one request).

Run: ``.venv/bin/python bench/pull.py [--size-mb 200] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("LOREG_NO_PROGRESS", "1")

MiB = 2**20


def write_adapter(folder: Path, size_mb: int) -> int:
    """A valid PEFT LoRA folder of about ``size_mb`` MiB (fp32, r=64, hidden 4096)."""
    import numpy as np
    from safetensors.numpy import save_file

    hidden, r = 4096, 64
    per_module = 2 * hidden * r * 4
    modules = max(1, size_mb * MiB // per_module)
    rng = np.random.default_rng(0)
    tensors = {}
    names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    for i in range(modules):
        layer, proj = divmod(i, len(names))
        prefix = f"base_model.model.model.layers.{layer}.self_attn.{names[proj]}"
        tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((r, hidden), dtype=np.float32)
        tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((hidden, r), dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": 2 * r,
        "target_modules": names,
        "task_type": "CAUSAL_LM",
        "lora_dropout": 0.0,
        "bias": "none",
        "base_model_name_or_path": None,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return (folder / "adapter_model.safetensors").stat().st_size


class RequestCounter:
    """Counts the HTTP requests a boto3 client sends."""

    def __init__(self, client):
        self.count = 0
        client.meta.events.register("before-send.s3.*", self._inc)

    def _inc(self, **_):
        self.count += 1


def timed(fn) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    """Run the benchmark and print a side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="cold runs per method (best kept)")
    parser.add_argument("--warm", type=int, default=50, help="warm pulls (median reported)")
    args = parser.parse_args()

    import boto3

    import loreg
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings
    from registry.storage.base import blob_key
    from tests.support.s3server import MotoServer
    from tests.support.servers import ServerThread

    work = Path(tempfile.mkdtemp(prefix="loreg-bench-pull-"))
    try:
        with MotoServer() as moto:
            settings = Settings(
                data_dir=work / "data",
                database_url=f"sqlite:///{work / 'data' / 'loreg.db'}",
                s3_bucket="bench",
                s3_endpoint_url=moto.endpoint_url,
                s3_region="us-east-1",
            )
            ctx, token = prepare(settings)
            with ServerThread(create_app(context=ctx)) as server:
                write_adapter(work / "adapter", args.size_mb)
                pusher = loreg.Registry(
                    url=server.url, token=token, cache_dir=work / "push-cache", progress=False
                )
                t_push = timed(lambda: pusher.push(work / "adapter", "big"))
                resolved = pusher.resolve("big-v1")
                weights = next(
                    f for f in resolved["files"] if f["path"] == "adapter_model.safetensors"
                )
                total = sum(f["size"] for f in resolved["files"])

                # per-request counting for the registry side
                resolve_calls = {"n": 0}
                blob_gets = {"n": 0}

                def on_request(request):
                    if "/v1/resolve/" in request.url.path:
                        resolve_calls["n"] += 1
                    elif request.method == "GET":
                        blob_gets["n"] += 1

                cold, cold_requests = [], []
                for i in range(args.repeat):
                    cache = work / f"cold-{i}"
                    reg = loreg.Registry(
                        url=server.url, token=token, cache_dir=cache, progress=False
                    )
                    resolve_calls["n"] = blob_gets["n"] = 0
                    with _count_httpx(on_request):
                        cold.append(timed(lambda reg=reg: reg.pull("big-v1")))
                    cold_requests.append(resolve_calls["n"] + blob_gets["n"])
                    if i < args.repeat - 1:
                        shutil.rmtree(cache)

                s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1")
                counter = RequestCounter(s3)
                key = blob_key(weights["sha256"])
                raw_managed, raw_stream = [], []
                for i in range(args.repeat):
                    dest = work / f"raw-{i}.bin"
                    counter.count = 0
                    raw_managed.append(timed(lambda d=dest: s3.download_file("bench", key, str(d))))
                    managed_requests = counter.count
                    dest.unlink()
                    counter.count = 0

                    def stream(d=dest):
                        body = s3.get_object(Bucket="bench", Key=key)["Body"]
                        with open(d, "wb") as f:
                            for chunk in body.iter_chunks(8 * MiB):
                                f.write(chunk)

                    raw_stream.append(timed(stream))
                    stream_requests = counter.count
                    dest.unlink()

                warm_reg = loreg.Registry(
                    url=server.url,
                    token=token,
                    cache_dir=work / f"cold-{args.repeat - 1}",
                    progress=False,
                )
                warm_reg.pull("big-v1")
                resolve_calls["n"] = blob_gets["n"] = 0
                with _count_httpx(on_request):
                    warm = [timed(lambda: warm_reg.pull("big-v1")) for _ in range(args.warm)]
                warm_requests = (resolve_calls["n"] + blob_gets["n"]) / args.warm
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best_cold = min(cold)
    best_raw = min(min(raw_managed), min(raw_stream))
    raw_name = "download_file" if min(raw_managed) <= min(raw_stream) else "get_object stream"
    cold_tp = total / best_cold / MiB
    raw_tp = weights["size"] / best_raw / MiB
    warm_med = statistics.median(warm) * 1000
    warm_p95 = sorted(warm)[int(0.95 * (len(warm) - 1))] * 1000
    print(
        f"# bench/pull.py  {dt.date.today()}  {platform.node()}  "
        f"{platform.processor() or platform.machine()}  python {platform.python_version()}"
    )
    print(
        f"# adapter: {total / MiB:.1f} MiB ({weights['size'] / MiB:.1f} MiB weights), "
        f"push took {t_push:.2f} s; best of {args.repeat} cold runs; S3 = moto_server "
        "on loopback"
    )
    print(f"{'method':<36}{'seconds':>10}{'MiB/s':>10}{'requests':>10}")
    print(
        f"{'loreg cold pull (resolve+GETs+sha)':<36}{best_cold:>10.3f}{cold_tp:>10.1f}"
        f"{cold_requests[0]:>10}"
    )
    print(
        f"{'boto3 download_file':<36}{min(raw_managed):>10.3f}"
        f"{weights['size'] / min(raw_managed) / MiB:>10.1f}{managed_requests:>10}"
    )
    print(
        f"{'boto3 get_object stream':<36}{min(raw_stream):>10.3f}"
        f"{weights['size'] / min(raw_stream) / MiB:>10.1f}{stream_requests:>10}"
    )
    print(
        f"{'loreg warm pull (median/p95 ms)':<36}{warm_med:>9.2f}m{warm_p95:>9.2f}m"
        f"{warm_requests:>10.0f}"
    )
    ratio = cold_tp / raw_tp
    print(
        f"cold pull / raw boto3 ({raw_name}) throughput: {ratio:.2f}x  (target >= 0.8x): "
        f"{'PASS' if ratio >= 0.8 else 'FAIL'}"
    )
    print(
        f"warm pull median {warm_med:.2f} ms (target <= 5 ms): "
        f"{'PASS' if warm_med <= 5 else 'FAIL'}"
    )
    print(
        "cold runs (s):",
        " ".join(f"{t:.3f}" for t in cold),
        "| download_file:",
        " ".join(f"{t:.3f}" for t in raw_managed),
        "| get_object:",
        " ".join(f"{t:.3f}" for t in raw_stream),
    )
    return 0


class _count_httpx:
    """Count client HTTP requests while active: httpx (API) and http.client (blob GETs)."""

    def __init__(self, callback):
        self.callback = callback

    def __enter__(self):
        import http.client

        import httpx

        self._orig = httpx.Client.send
        self._orig_request = http.client.HTTPConnection.request
        callback = self.callback

        def send(client, request, *a, **kw):
            callback(request)
            return self._orig(client, request, *a, **kw)

        def request(conn, method, url, *a, **kw):
            callback(httpx.Request(method, f"http://{conn.host}:{conn.port}{url}"))
            return self._orig_request(conn, method, url, *a, **kw)

        httpx.Client.send = send
        http.client.HTTPConnection.request = request
        return self

    def __exit__(self, *exc):
        import http.client

        import httpx

        httpx.Client.send = self._orig
        http.client.HTTPConnection.request = self._orig_request


if __name__ == "__main__":
    sys.exit(main())
