"""SDK and CLI start benchmark: wall time of fresh processes, best and median of N.

Starts ``loreg serve`` (SQLite, local blobs) on a free loopback port, pushes a
tiny LoRA adapter and pulls it once (so later pulls are warm), then times, each
in N fresh processes:

* ``python -c pass`` (the interpreter's own start, for reference);
* ``import loreg; loreg.Registry()``;
* the same plus ``registry.pull(ref)`` of the cached adapter (a warm pull: one
  resolve request and a local check);
* ``loreg --help``, ``loreg pull --help`` and ``loreg pull REF`` (warm).

Columns: wall, from spawn to exit; for the two SDK cases also ready, from
spawn to the moment the ``-c`` code finished (``Registry()`` returned, or the
pull), and in-process, from the code's first line to its last (interpreter
start excluded). Wall minus ready is the interpreter's shutdown, ~15-20 ms with
httpx loaded (mostly its final garbage collection), which no library code runs. Children run without
``PYTHONDONTWRITEBYTECODE`` and after one untimed run, so every module is read
from its ``.pyc`` as in an installed package (an environment that forbids
bytecode files compiles loreg's modules in every process: +20-25 ms).

Compare checkouts with ``--src``: ``.venv/bin/python bench/sdk_start.py --src
/work/main/clients`` puts that ``loreg`` source ahead of the installed one (the
server always comes from this checkout). Run: ``.venv/bin/python
bench/sdk_start.py [--runs 10] [--src DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "tiny-start"

SDK = "import loreg; registry = loreg.Registry()"
SDK_PULL = SDK + f"; registry.pull({NAME!r})"


def write_tiny_adapter(folder: Path, r: int = 2, hidden: int = 16) -> None:
    """A valid PEFT LoRA folder (one module, fp32), written without numpy or torch."""
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    shapes = {f"{prefix}.lora_A.weight": (r, hidden), f"{prefix}.lora_B.weight": (hidden, r)}
    header: dict[str, object] = {}
    offset = 0
    for key, shape in shapes.items():
        size = shape[0] * shape[1] * 4
        header[key] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    data = struct.pack(f"<{offset // 4}f", *(0.01 * (i % 7) for i in range(offset // 4)))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    config = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": 2 * r,
        "target_modules": ["q_proj"],
        "task_type": "CAUSAL_LM",
        "lora_dropout": 0.0,
        "bias": "none",
        "base_model_name_or_path": None,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(loreg: Path, work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """``loreg serve`` on a fresh data dir; returns the process, its URL and admin token."""
    port = free_port()
    data = work / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    log = open(work / "serve.log", "wb")  # noqa: SIM115 - the child keeps its own descriptor
    proc = subprocess.Popen(
        [str(loreg), "serve", "--data-dir", str(data), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((work / "serve.log").read_text(errors="replace"))
        try:
            with urllib.request.urlopen(url + "/v1/health", timeout=1) as answer:
                if answer.status == 200:
                    return proc, url, (data / "admin_token").read_text().strip()
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("loreg serve did not answer within 60 s")


def child_env(url: str, token: str, cache: Path, src: Path | None) -> dict[str, str]:
    """The children's environment: this server and cache, bytecode allowed, no progress bar."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        LOREG_URL=url,
        LOREG_TOKEN=token,
        LOREG_CACHE_DIR=str(cache),
        LOREG_NO_PROGRESS="1",
        HF_HUB_OFFLINE="1",
    )
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Times:
    """Seconds per run of one case: process wall time, and for SDK cases ready / in-process."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.ready: list[float] = []
        self.inner: list[float] = []


def timed(argv: Sequence[str], env: dict[str, str], runs: int) -> Times:
    """Time ``runs`` fresh processes (after one untimed run)."""
    subprocess.run(argv, env=env, check=True, capture_output=True)
    times = Times()
    for _ in range(runs):
        spawned = time.time()
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
        times.wall.append(time.perf_counter() - start)
        last = done.stdout.strip().rsplit("\n", 1)[-1]
        if last.startswith("ready="):
            ready, inner = (float(part.split("=")[1]) for part in last.split())
            times.ready.append(ready - spawned)
            times.inner.append(inner)
    return times


def in_process(code: str) -> str:
    """``code`` wrapped to print when it finished (``ready=``) and what it took (``inner=``)."""
    end = "print(f'ready={time.time()} inner={time.perf_counter() - _t}')"
    return f"import time; _t = time.perf_counter()\n{code}\n{end}"


def ms(values: Sequence[float]) -> str:
    """``best / median`` in milliseconds."""
    return f"{min(values) * 1e3:.1f} / {statistics.median(values) * 1e3:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per case")
    parser.add_argument("--src", type=Path, help="a checkout's clients/ folder to time instead")
    args = parser.parse_args(argv)
    python = Path(sys.executable)
    loreg = python.parent / "loreg"
    with tempfile.TemporaryDirectory(prefix="loreg-sdk-start-") as tmp:
        work = Path(tmp)
        proc, url, token = start_server(loreg, work)
        try:
            write_tiny_adapter(work / "adapter")
            env = child_env(url, token, work / "cache", args.src)
            push = "import loreg, sys; loreg.Registry().push(sys.argv[1], sys.argv[2])"
            adapter = str(work / "adapter")
            subprocess.run([str(python), "-c", push, adapter, NAME], env=env, check=True)
            subprocess.run([str(python), "-c", SDK_PULL], env=env, check=True)  # now warm
            cases: list[tuple[str, list[str]]] = [
                ("python -c pass", [str(python), "-c", "pass"]),
                ("import loreg; Registry()", [str(python), "-c", in_process(SDK)]),
                ("... + warm pull", [str(python), "-c", in_process(SDK_PULL)]),
                ("loreg --help", [str(loreg), "--help"]),
                ("loreg pull --help", [str(loreg), "pull", "--help"]),
                (f"loreg pull {NAME} (warm)", [str(loreg), "pull", NAME]),
            ]
            load = os.getloadavg()
            print(
                f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
                f" load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {args.runs} runs each,"
                f" loreg from {args.src or 'this checkout'}"
            )
            print("milliseconds, best / median:")
            print(f"{'case':30} {'wall (to exit)':>16} {'ready':>16} {'in-process':>16}")
            for label, command in cases:
                t = timed(command, env, args.runs)
                ready = ms(t.ready) if t.ready else ""
                inner = ms(t.inner) if t.inner else ""
                print(f"{label:30} {ms(t.wall):>16} {ready:>16} {inner:>16}")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
