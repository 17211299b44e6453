"""Content-aware fuzzing of publish: N cases through the real two-phase publish over HTTP.

Starts a fresh registry in-process on a backend (``sqlite_local``: SQLite +
LocalStore; ``postgres_s3``: a throw-away Postgres database + a moto_server S3
of its own), registers the tiny Llama base model, builds a tiny PEFT adapter and
publishes ``--cases`` cases drawn from ``tests/support/fuzz_cases.py`` (headers,
configs, names, paths, containers, manifests, regexes, byte mutations of the
valid adapter). Every accepted version is resolved, pulled back and judged by
safetensors' parser and PEFT's loaders (``tests/support/fuzz_oracle.py``).

Prints cases/s, counts by outcome (accepted, each status + error code) and per
family, and every failure with its reproducer::

    python bench/fuzz_publish.py --backend sqlite_local --cases 10000 --seed 1
    python bench/fuzz_publish.py --backend postgres_s3 --seed 1 --case 4711 --dump /tmp/c

``--case N`` runs case N alone (``--dump DIR`` also writes its files and request
body there). Exit status 1 when any case failed. Run it with ``nice -n 10`` on a
shared machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tests.support.fuzz_cases import ValidAdapter, dumps, make_case  # noqa: E402
from tests.support.fuzz_runner import (  # noqa: E402
    FuzzRunner,
    describe_failures,
    file_entries,
    fuzz_backend,
    read_folder,
    register_base,
)


def _fixtures() -> tuple[ValidAdapter, dict[str, bytes]]:
    from tests.support.tiny import save_adapter, save_base_model

    with tempfile.TemporaryDirectory() as tmp:
        adapter = read_folder(save_adapter(Path(tmp, "adapter")))
        base = read_folder(save_base_model(Path(tmp, "base")))
    return ValidAdapter.from_files(adapter), base


def _dump(case, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(case.files.values()):
        (folder / f"file{i}.bin").write_bytes(data)
    body = {
        "kind": "adapter",
        "name": case.name,
        "files": case.declared or file_entries(case.files),
        **case.body_extra,
    }
    (folder / "upload.json").write_text(dumps(body), errors="surrogateescape")
    (folder / "paths.txt").write_text(
        "\n".join(f"file{i}.bin\t{p!r}" for i, p in enumerate(case.files))
    )


def main() -> int:
    """Run the fuzz cases and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument(
        "--backend", choices=["sqlite_local", "postgres_s3"], default="sqlite_local"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="first case index")
    parser.add_argument("--case", type=int, help="run this one case only")
    parser.add_argument("--family", help="draw every case from this family")
    parser.add_argument("--dump", type=Path, help="with --case: write the case's files here")
    parser.add_argument(
        "--no-deep-load", action="store_true", help="skip PeftModel.from_pretrained"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    parser.add_argument("--slow", type=float, default=10.0, help="a commit slower than this fails")
    parser.add_argument("--server-log", action="store_true", help="show the server's error log")
    args = parser.parse_args()
    if not args.server_log:  # every 500 logs a traceback; the summary lists them
        for name in ("loreg", "uvicorn.error", "uvicorn"):
            logging.getLogger(name).setLevel(logging.CRITICAL)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up servers on SIGTERM
    valid, base = _fixtures()
    indices = [args.case] if args.case is not None else range(args.start, args.start + args.cases)
    with fuzz_backend(args.backend) as (url, token):
        register_base(url, token, base)
        runner = FuzzRunner(
            url, token, timeout=args.timeout, slow_s=args.slow, deep_load=not args.no_deep_load
        )
        t0 = time.monotonic()
        n = 0
        try:
            for i in indices:
                case = make_case(args.seed, i, valid, args.family)
                if args.dump and args.case is not None:
                    _dump(case, args.dump)
                result = runner.run(case)
                n += 1
                if args.case is not None:
                    print(
                        f"case {i} [{case.family}] {case.label}\n"
                        f"  -> {result.outcome} at {result.phase}: {result.message}"
                    )
                if n % 500 == 0:
                    rate = n / (time.monotonic() - t0)
                    print(
                        f"  {n} cases, {rate:.1f}/s, {len(runner.stats.failures)} failing",
                        flush=True,
                    )
        except KeyboardInterrupt:  # SIGINT or SIGTERM: report what ran so far
            print(f"interrupted after {n} cases", flush=True)
        elapsed = time.monotonic() - t0
        runner.close()
    stats = runner.stats
    print(
        f"\nbackend {args.backend}, seed {args.seed}: {n} cases in {elapsed:.1f} s "
        f"= {n / elapsed:.1f} cases/s"
    )
    print(
        f"pulled and compared {stats.pulled_files} files; "
        f"{stats.deep_loads} PeftModel.from_pretrained loads"
    )
    print(f"slowest case {stats.slowest[0]:.2f} s: {stats.slowest[1]}")
    print("outcomes:")
    for outcome, count in stats.outcomes.most_common():
        print(f"  {count:6d}  {outcome}")
    print("by family (family, outcome status):")
    for (family, status), count in sorted(stats.families.items()):
        print(f"  {family:11s} {status:9s} {count:6d}")
    print(f"failures: {len(stats.failures)}")
    reproduce = (
        f"python bench/fuzz_publish.py --backend {args.backend} --seed {args.seed} "
        "--case {index} --dump /tmp/case{index}"
    )
    print(describe_failures(stats, reproduce, limit=10**9))
    return 1 if stats.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
