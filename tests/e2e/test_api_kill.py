"""SIGKILL the API while 8 clients push: nothing lost, duplicated or half-written.

A real ``loreg serve`` (embedded: SQLite + blob folder; production: a throw-away
Postgres database + the moto S3 server) takes pushes from 8 client threads, each
pushing distinct small adapters with the SDK (``loreg.Registry.push``) and
retrying a push that failed. The test SIGKILLs the server at random moments
(``KILLS`` times), restarts it on the same data dir, port and environment, lets
the clients finish, and then checks:

* 0 lost: every push a client saw succeed resolves to the same digest and its
  files pull back byte for byte;
* 0 duplicated: no adapter has two versions with the same manifest digest, and a
  retried push of the same folder answers the same version;
* 0 half-written: every listed version resolves and each of its files is in the
  store with the right size and sha256;
* the only client errors are connection refused/reset (or 503) while the API is
  down, never a 4xx, a 500 or a timeout.

``LOREG_KILL_SECONDS`` bounds the loop (default 40 s per mode).
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Served, production_server, start_server
from tests.support.fuzz_cases import ADAPTER_WEIGHTS, ValidAdapter, safetensors_bytes
from tests.support.waiting import wait_until

CLIENTS = 8
KILLS = int(os.environ.get("LOREG_KILLS", "4"))
LOOP_SECONDS = float(os.environ.get("LOREG_KILL_SECONDS", "40"))


@dataclass
class ClientLog:
    """What one client saw: its successful pushes and every error, classified."""

    pushes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)


def classify(exc: BaseException) -> str:
    """``refused``, ``reset``, ``503`` (all expected while the API is down) or ``other``."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        if isinstance(e, httpx.ConnectError):
            return "refused"
        if isinstance(e, httpx.TimeoutException):
            return "other"
        if isinstance(e, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
            return "reset"
        if getattr(e, "status", None) == 503:
            return "503"
    text = str(exc)
    if "Connection refused" in text or "All connection attempts failed" in text:
        return "refused"
    if "Connection reset" in text or "Server disconnected" in text:
        return "reset"
    return "other"


def _adapter_folder(root: Path, valid: ValidAdapter, client: int, n: int) -> Path:
    """A distinct small adapter: the valid one with unique safetensors metadata."""
    folder = root / f"c{client}" / f"a{n}"
    folder.mkdir(parents=True)
    for path, data in valid.files.items():
        (folder / path).write_bytes(data)
    meta = {"format": "pt", "client": str(client), "n": str(n)}
    (folder / ADAPTER_WEIGHTS).write_bytes(safetensors_bytes(valid.tensors, meta))
    return folder


def _try_push(served: Served, cache_dir: Path, folder: Path, name: str, log: ClientLog) -> Any:
    """One SDK push of ``folder``: its result, or None after logging why it failed."""
    import loreg

    try:
        with loreg.Registry(
            url=served.url, token=served.token, cache_dir=cache_dir, progress=False, timeout=20
        ) as reg:
            return reg.push(folder, name)
    except Exception as exc:  # noqa: BLE001 - classified and asserted on below
        log.errors.append((classify(exc), f"{type(exc).__name__}: {str(exc)[:300]}"))
        return None


def _client_loop(
    served: Served,
    root: Path,
    valid: ValidAdapter,
    client: int,
    stop: threading.Event,
    log: ClientLog,
) -> None:
    name = f"kill-c{client}"
    n = 0
    while not stop.is_set():
        folder = _adapter_folder(root, valid, client, n)
        result = wait_until(
            functools.partial(_try_push, served, root / f"cache{client}", folder, name, log),
            timeout=120,
            interval=0.2,
            message=lambda: f"{name}: no push got through; last error: {log.errors[-1]}",
        )
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        log.pushes.append(
            {"ref": result.ref, "version": result.version, "digest": result.digest, "files": files}
        )
        n += 1


def _store_object(served: Served, sha: str) -> bytes | None:
    from registry.storage.base import blob_key

    key = blob_key(sha)
    if served.bucket is None:
        path = served.data_dir / "objects" / key
        return path.read_bytes() if path.exists() else None
    client = served.s3_client()
    try:
        return client.get_object(Bucket=served.bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def _kill(served: Served) -> None:
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(timeout=30)


def _restart(served: Served) -> None:
    served.starts += 1
    log_path = served.log_path.with_name(f"serve.{served.starts}.log")
    again = start_server(
        served.data_dir, env=served.server_env, port=served.port, log_path=log_path
    )
    served.process, served.log_path, served.token = again.process, again.log_path, again.token


def _verify(served: Served, logs: list[ClientLog]) -> dict[str, int]:
    api = httpx.Client(
        base_url=served.url, timeout=60, headers={"Authorization": f"Bearer {served.token}"}
    )
    figures = {"pushes": 0, "versions": 0, "files": 0}
    problems: list[str] = []
    # 0 lost: every push a client saw succeed resolves, same digest, same bytes.
    for log in logs:
        by_digest: dict[str, int] = {}
        for push in log.pushes:
            figures["pushes"] += 1
            if by_digest.setdefault(push["digest"], push["version"]) != push["version"]:
                problems.append(f"{push['ref']}: same content answered two versions")
            r = api.get(f"/v1/resolve/{push['ref']}")
            if r.status_code != 200 or r.json()["digest"] != push["digest"]:
                problems.append(f"lost: {push['ref']} answers {r.status_code} {r.text[:200]}")
                continue
            for f in r.json()["files"]:
                data = httpx.get(f["url"], timeout=60).content
                if data != push["files"].get(f["path"]):
                    problems.append(f"lost bytes: {push['ref']} {f['path']}")
    # 0 duplicated, 0 half-written: every listed version, every file in the store.
    for client in range(CLIENTS):
        r = api.get(f"/v1/adapters/default/kill-c{client}/versions", params={"limit": 200})
        if r.status_code == 404:
            continue
        assert r.json()["next_cursor"] is None, "more versions than one page holds"
        versions = r.json()["items"]
        digests = [v["digest"] for v in versions]
        if len(set(digests)) != len(digests):
            problems.append(f"kill-c{client}: duplicated digests among {len(digests)} versions")
        for v in versions:
            figures["versions"] += 1
            ref = f"default/kill-c{client}-v{v['version']}"
            rr = api.get(f"/v1/resolve/{ref}")
            if rr.status_code != 200:
                problems.append(f"half-written: {ref} is listed but resolves {rr.status_code}")
                continue
            for f in rr.json()["files"]:
                figures["files"] += 1
                data = _store_object(served, f["sha256"])
                if data is None or len(data) != f["size"]:
                    problems.append(f"half-written: {ref} {f['path']} missing or wrong size")
                elif hashlib.sha256(data).hexdigest() != f["sha256"]:
                    problems.append(f"half-written: {ref} {f['path']} wrong sha256")
    api.close()
    assert not problems, "\n".join(problems[:40])
    return figures


def _run_kill_loop(served: Served, tmp_path: Path, valid: ValidAdapter) -> dict[str, int]:
    rng = random.Random(int(os.environ.get("LOREG_KILL_SEED", "0")) or None)
    stop = threading.Event()
    logs = [ClientLog() for _ in range(CLIENTS)]
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(served, tmp_path / "clients", valid, i, stop, logs[i]),
            daemon=True,
        )
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    started = time.monotonic()
    up_for = (LOOP_SECONDS - 8) / KILLS  # leave time for restarts and a final calm phase
    kills = 0
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.0) * up_for)
        _kill(served)
        kills += 1
        time.sleep(rng.uniform(0.0, 1.0))  # clients meet a dead port for a while
        _restart(served)
    time.sleep(3)  # every client finishes a push against a healthy server
    stop.set()
    for t in threads:
        t.join(timeout=180)
        assert not t.is_alive(), "a client hung"
    elapsed = time.monotonic() - started
    errors = [e for log in logs for e in log.errors]
    unexpected = [e for e in errors if e[0] == "other"]
    assert not unexpected, (
        f"{len(unexpected)} client errors besides refused/reset/503: {unexpected[:10]}"
    )
    figures = _verify(served, logs)
    kinds = {k: sum(1 for e in errors if e[0] == k) for k in ("refused", "reset", "503")}
    figures.update(kills=kills, seconds=round(elapsed), **kinds)
    assert figures["pushes"] >= CLIENTS, figures  # every client got work through
    print(f"\nkill loop figures: {figures}")
    return figures


@pytest.fixture(scope="module")
def valid_adapter(tmp_path_factory) -> ValidAdapter:
    """The tiny PEFT adapter (made with PEFT), split for recombination."""
    from tests.support.fuzz_runner import read_folder
    from tests.support.tiny import save_adapter

    return ValidAdapter.from_files(read_folder(save_adapter(tmp_path_factory.mktemp("adapter"))))


def test_sigkill_api_embedded(tmp_path, valid_adapter):
    """Embedded mode (SQLite + blob folder): KILLS SIGKILLs under 8 writing clients."""
    served = start_server(tmp_path / "data")
    try:
        figures = _run_kill_loop(served, tmp_path, valid_adapter)
    finally:
        served.stop()
    assert figures["kills"] >= 3


def test_sigkill_api_production(tmp_path, valid_adapter, s3_endpoint):
    """Production mode (Postgres + S3 via LOREG_* variables): the same loop."""
    with production_server(tmp_path, s3_endpoint) as served:
        figures = _run_kill_loop(served, tmp_path, valid_adapter)
    assert figures["kills"] >= 3
