"""Hub upload benchmark: the stock ``huggingface_hub`` client publishing a ~200 MB adapter.

Starts the registry in-process (SQLite metadata, local blob store, uvicorn thread),
then uploads the same adapter three ways, each to a new repo, timing each and the
server process's peak RSS (the client runs in a subprocess, so its memory is its own):

* ``regular``: the default client (hf_xet installed): every file answered
  ``regular``, the weights base64-encoded inside one NDJSON line of the commit;
* ``lfs``: ``HF_HUB_DISABLE_XET=1`` and ``X-Loreg-Upload-Mode: lfs``: the LFS batch
  API, a signed PUT of the raw bytes, then a commit of ``lfsFile`` lines;
* ``loreg push`` (the SDK) for reference.

Run: ``.venv/bin/python bench/hub_upload.py [--size-mb 200]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import secrets
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients"))
os.environ.setdefault("LOREG_NO_PROGRESS", "1")

MiB = 2**20


def reset_peak_rss() -> None:
    """Restart the peak-RSS count (Linux >= 4.0: ``5`` to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    """This process's peak resident set size since :func:`reset_peak_rss` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def distinct_copy(src: Path, dst: Path, n: int) -> None:
    """A copy of the adapter whose weights differ from every other copy (no dedup)."""
    shutil.copytree(src, dst)
    weights = dst / "adapter_model.safetensors"
    with open(weights, "r+b") as f:  # the last float32 of the last tensor
        f.seek(-4, os.SEEK_END)
        f.write(struct.pack("<f", 1.0 + n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()

    from bench.pull import write_adapter
    from loreg import Registry
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings
    from tests.support.hf_client import run_hf
    from tests.support.servers import ServerThread

    with tempfile.TemporaryDirectory(prefix="loreg-bench-hub-") as tmp:
        root = Path(tmp)
        size = write_adapter(root / "adapter", args.size_mb)
        settings = Settings(
            data_dir=root / "data",
            database_url=f"sqlite:///{root / 'data' / 'loreg.db'}",
            secret_key=secrets.token_hex(16),
        )
        (root / "data").mkdir()
        ctx, token = prepare(settings)
        rows = []
        with ServerThread(create_app(context=ctx)) as server:
            runs = {
                "regular (default client, base64 in the commit)": ({}, {}),
                "lfs (HF_HUB_DISABLE_XET=1 + X-Loreg-Upload-Mode: lfs)": (
                    {"HF_HUB_DISABLE_XET": "1"},
                    {"X-Loreg-Upload-Mode": "lfs"},
                ),
            }
            for n, (label, (env, headers)) in enumerate(runs.items()):
                folder = root / f"adapter{n}"
                distinct_copy(root / "adapter", folder, n)
                reset_peak_rss()
                before = peak_rss_mib()
                start = time.perf_counter()
                out = run_hf(
                    server.url,
                    token,
                    root / f"hf{n}",
                    f"""
                    api = HfApi(headers={headers!r})
                    api.create_repo("default/bench{n}")
                    out["oid"] = attempt(
                        api.upload_folder, repo_id="default/bench{n}",
                        folder_path={str(folder)!r},
                    )
                    """,
                    timeout=1200,
                    **env,
                )
                seconds = time.perf_counter() - start
                assert isinstance(out["oid"], str) and len(out["oid"]) == 40, out
                rows.append((label, seconds, before, peak_rss_mib()))
            distinct_copy(root / "adapter", root / "adapter-push", len(runs))
            start = time.perf_counter()
            Registry(server.url, token=token).push(root / "adapter-push", name="bench-push")
            rows.append(("loreg push (SDK, same process)", time.perf_counter() - start, 0, 0))
    print(
        f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"load {os.getloadavg()[0]:.2f}, adapter {size / MiB:.1f} MiB"
    )
    print("| method | seconds | MiB/s | server RSS at start -> peak during the upload (MiB) |")
    print("| --- | ---: | ---: | --- |")
    for label, seconds, before, after in rows:
        rss = f"{before:.0f} -> {after:.0f}" if after else "(client in-process)"
        print(f"| {label} | {seconds:.2f} | {size / MiB / seconds:.1f} | {rss} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
