"""Run fuzz cases through the real two-phase publish over HTTP and judge the answers.

:class:`FuzzRunner` sends a :class:`~tests.support.fuzz_cases.Case` as a client
would (``POST /v1/uploads``, each missing blob by the method the server chose,
``POST .../commit``), every request under a timeout. Verdicts:

* a 5xx, a timeout, a transport error, a 4xx whose body is not the error shape,
  or a commit slower than ``slow_s`` is a failure;
* an accepted version is resolved and every file pulled back and compared, then
  judged by :mod:`tests.support.fuzz_oracle` (safetensors, PEFT, containers,
  kinds, paths); a re-publish must answer the same version (``created: false``).

:func:`fuzz_backend` starts a registry on either backend outside pytest (the
bench), reusing the suite's helpers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import fuzz_oracle as oracle
from tests.support.fuzz_cases import ADAPTER_CONFIG, ADAPTER_WEIGHTS, BASE_NAME, Case, dumps


@dataclass
class Outcome:
    """What happened to one case."""

    case: Case
    outcome: str  # "accepted", "<status> <code>" or "FAIL"
    phase: str
    seconds: float
    failures: list[str] = field(default_factory=list)
    message: str = ""


@dataclass
class Stats:
    """Counts by outcome, by family, and every failure."""

    outcomes: Counter = field(default_factory=Counter)
    families: Counter = field(default_factory=Counter)
    failures: list[Outcome] = field(default_factory=list)
    deep_loads: int = 0
    pulled_files: int = 0
    slowest: tuple[float, str] = (0.0, "")

    def add(self, result: Outcome) -> None:
        """Count one outcome."""
        self.outcomes[result.outcome] += 1
        self.families[(result.case.family, result.outcome.split(" ")[0])] += 1
        if result.failures:
            self.failures.append(result)
        if result.seconds > self.slowest[0]:
            self.slowest = (result.seconds, f"case {result.case.index} ({result.case.label[:80]})")


def file_entries(files: dict[str, bytes]) -> list[dict[str, Any]]:
    """(path, size, sha256) of each file."""
    return [
        {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for p, b in files.items()
    ]


class FuzzRunner:
    """Publishes cases on one registry and checks what it accepted."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        slow_s: float = 10.0,
        regex_slow_s: float = 2.0,
        deep_load: bool = True,
    ) -> None:
        self.api = httpx.Client(
            base_url=url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )
        self.plain = httpx.Client(timeout=timeout)
        self.url = url
        self.slow_s = slow_s
        self.regex_slow_s = regex_slow_s
        self.loader = oracle.PeftLoader() if deep_load else None
        self.stats = Stats()
        self.last_status: int | None = None

    def close(self) -> None:
        """Close the HTTP clients."""
        self.api.close()
        self.plain.close()

    # ------------------------------------------------------------------ requests

    def _request(
        self, fails: list[str], what: str, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        client = self.api if url.startswith("/") or url.startswith(self.url) else self.plain
        for attempt in (1, 2):
            try:
                r = client.request(method, url, **kw)
                break
            except httpx.TimeoutException as exc:
                fails.append(f"{what}: no answer within the timeout ({type(exc).__name__})")
                self._health_after_hang(fails)
                return None
            except httpx.TransportError as exc:
                # A keep-alive connection the server closed after its previous answer
                # (a 500 does that, issue 9 item 16): counted, then retried once on a new
                # connection so the case itself is still judged.
                fails.append(
                    f"{what}: transport error {type(exc).__name__}: {exc}"
                    + (
                        f" (the previous request answered {self.last_status})"
                        if attempt == 1
                        else ""
                    )
                )
                if attempt == 2:
                    return None
        self.last_status = r.status_code
        if r.status_code >= 500 and client is self.api:
            fails.append(f"{what}: {r.status_code} {r.text[:300]}")
        return r

    def _health_after_hang(self, fails: list[str]) -> None:
        try:
            self.api.get("/v1/health", timeout=5)
        except httpx.HTTPError:
            fails.append("/v1/health does not answer within 5 s after the hang")

    def _refused(
        self, r: httpx.Response, phase: str, case: Case, t0: float, fails: list[str]
    ) -> Outcome:
        problem = oracle.error_body_problem(r)
        if problem:
            fails.append(f"{phase}: {r.status_code}: {problem}")
        code = ""
        try:
            code = r.json()["error"]["code"]
            message = r.json()["error"]["message"]
        except Exception:  # noqa: BLE001
            message = r.text[:200]
        return Outcome(
            case, f"{r.status_code} {code}", phase, time.monotonic() - t0, fails, message
        )

    # ------------------------------------------------------------------ one case

    def run(self, case: Case) -> Outcome:
        """Publish one case and judge it; the outcome is also counted in :attr:`stats`."""
        t0 = time.monotonic()
        result = self._run(case, t0)
        if result.failures:
            result.outcome = "FAIL"
        self.stats.add(result)
        return result

    def _run(self, case: Case, t0: float) -> Outcome:
        fails: list[str] = []
        entries = case.declared if case.declared is not None else file_entries(case.files)
        body = {"kind": "adapter", "name": case.name, "files": entries, **case.body_extra}
        content = case.raw_body if case.raw_body is not None else dumps(body)
        headers = {"Content-Type": "application/json"}
        r = self._request(
            fails, "create upload", "POST", "/v1/uploads", content=content, headers=headers
        )
        if r is None or r.status_code >= 500:
            return Outcome(case, "FAIL", "create", time.monotonic() - t0, fails)
        if r.status_code != 201:
            return self._refused(r, "create", case, t0, fails)
        upload = r.json()
        by_sha = {}
        for e in entries:
            if isinstance(e.get("path"), str) and e["path"] in case.files:
                by_sha.setdefault(e.get("sha256"), case.files[e["path"]])
        for blob in upload["blobs"]:
            if blob["present"]:
                continue
            data = by_sha.get(blob["sha256"], b"")
            r = self._send(fails, upload["upload_id"], blob, data)
            if r is None or r.status_code >= 500:
                return Outcome(case, "FAIL", "send", time.monotonic() - t0, fails)
            if r.status_code != 200:
                return self._refused(r, "send", case, t0, fails)
        c0 = time.monotonic()
        r = self._request(fails, "commit", "POST", f"/v1/uploads/{upload['upload_id']}/commit")
        took = time.monotonic() - c0
        limit = self.regex_slow_s if case.family == "regex" else self.slow_s
        if took > limit:
            fails.append(
                f"commit took {took:.1f} s (limit {limit} s; a plain commit takes ~0.03 s)"
            )
        if r is None or r.status_code >= 500:
            return Outcome(case, "FAIL", "commit", time.monotonic() - t0, fails)
        if r.status_code not in (200, 201):
            return self._refused(r, "commit", case, t0, fails)
        self._check_accepted(case, r.json()["resolved"], fails)
        if case.republish_of is not None and not fails:
            again = self._republish(case, r.json()["resolved"], fails)
            if again:
                fails.append(again)
        return Outcome(case, "accepted", "commit", time.monotonic() - t0, fails)

    def _send(
        self, fails: list[str], upload_id: str, blob: dict[str, Any], data: bytes
    ) -> httpx.Response | None:
        up = blob["upload"]
        what = f"send blob {blob['sha256'][:12]}"
        if up["method"] == "api":
            return self._request(fails, what, "PUT", up["url"], content=data)
        if up["method"] == "put":
            s3 = self._request(
                fails, what + " to S3", "PUT", up["url"], content=data, headers=up["headers"]
            )
            if s3 is None:
                return None
            return self._request(fails, what + " complete", "POST", up["complete_url"], json={})
        parts = []
        size = up["part_size"]
        for part in up["parts"]:
            n = part["part_number"]
            s3 = self._request(
                fails,
                what + f" part {n}",
                "PUT",
                part["url"],
                content=data[(n - 1) * size : n * size],
            )
            if s3 is None:
                return None
            parts.append({"part_number": n, "etag": s3.headers.get("ETag", "x")})
        return self._request(
            fails, what + " complete", "POST", up["complete_url"], json={"parts": parts}
        )

    # ------------------------------------------------------------------ accepted

    def _check_accepted(self, case: Case, resolved: dict[str, Any], fails: list[str]) -> None:
        ref = f"{resolved['namespace']}/{resolved['name']}-v{resolved['version']}"
        r = self._request(fails, f"resolve {ref}", "GET", f"/v1/resolve/{ref}")
        if r is None or r.status_code != 200:
            if r is not None and r.status_code < 500:
                fails.append(
                    f"resolve {ref} of an accepted version: {r.status_code} {r.text[:200]}"
                )
            return
        view = r.json()
        if view.get("digest") != resolved.get("digest"):
            fails.append(
                f"resolve digest {view.get('digest')} != commit digest {resolved.get('digest')}"
            )
        got = {(f["path"], f["size"], f["sha256"]) for f in view["files"]}
        sent = {(e["path"], e["size"], e["sha256"]) for e in file_entries(case.files)}
        if got != sent:
            fails.append(f"resolved files differ from the files sent: {sorted(got ^ sent)[:4]}")
        pulled: dict[str, bytes] = {}
        for f in view["files"]:
            d = self._request(fails, f"pull {f['path']!r:.60}", "GET", f["url"])
            if d is None:
                continue
            if d.status_code != 200 or d.content != case.files.get(f["path"]):
                fails.append(
                    f"pull of {f['path']!r:.60}: {d.status_code}, {len(d.content)} bytes, "
                    "not the bytes sent"
                )
            pulled[f["path"]] = d.content
            self.stats.pulled_files += 1
        self._judge(case, pulled, view, fails)

    def _judge(
        self, case: Case, pulled: dict[str, bytes], view: dict[str, Any], fails: list[str]
    ) -> None:
        fails.extend(f"accepted, but {p}" for p in oracle.path_problems(list(pulled)))
        for path, data in pulled.items():
            if path == ADAPTER_CONFIG:
                continue
            problem = (
                None if path.lower().endswith(".safetensors") else oracle.container_problem(data)
            ) or oracle.kind_problem(path, data)
            if problem:
                fails.append(f"accepted {path!r:.60}, which is {problem}")
        config, weights = pulled.get(ADAPTER_CONFIG), pulled.get(ADAPTER_WEIGHTS)
        if config is None or weights is None:
            return
        problem = oracle.peft_config_problem(config)
        if problem:
            fails.append(f"accepted adapter_config.json: {problem}")
        elif self.loader is not None and view.get("base_model") == BASE_NAME and not fails:
            problem = self.loader.problem(config, weights)
            self.stats.deep_loads += 1
            if problem:
                fails.append(f"accepted for {BASE_NAME}, but {problem}")

    def _republish(self, case: Case, first: dict[str, Any], fails: list[str]) -> str | None:
        entries = file_entries(case.files)
        body = {"kind": "adapter", "name": case.name, "files": entries, **case.body_extra}
        r = self._request(
            fails,
            "re-publish",
            "POST",
            "/v1/uploads",
            content=dumps(body),
            headers={"Content-Type": "application/json"},
        )
        if r is None or r.status_code != 201:
            return f"re-publish create answered {getattr(r, 'status_code', None)}"
        up = r.json()
        if not all(b["present"] for b in up["blobs"]):
            return "re-publish: blobs of the accepted version are not offered as present"
        r = self._request(
            fails, "re-publish commit", "POST", f"/v1/uploads/{up['upload_id']}/commit"
        )
        if r is None or r.status_code != 200:
            status = getattr(r, "status_code", None)
            return f"re-publish commit answered {status} (want 200, created false)"
        again = r.json()["resolved"]
        if (again["version"], again["digest"]) != (first["version"], first["digest"]):
            made = f"v{again['version']} {again['digest']}"
            return f"re-publish made {made} instead of v{first['version']}"
        return None


def register_base(url: str, token: str, base_files: dict[str, bytes]) -> None:
    """Register the tiny Llama as base model ``tiny-llama`` (shape checks then run)."""
    from tests.support.publish import publish

    with httpx.Client(
        base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        r, _ = publish(api, BASE_NAME, base_files, kind="base_model")
        assert r.status_code in (200, 201), r.text


def read_folder(folder: Path) -> dict[str, bytes]:
    """Files of a folder as bytes, keyed by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@contextmanager
def fuzz_backend(backend: str) -> Iterator[tuple[str, str]]:
    """A fresh registry on ``backend`` (``sqlite_local`` or ``postgres_s3``); yields (url, token).

    Postgres: a throw-away database; S3: a ``moto_server`` of its own.
    """
    from registry.app import create_app
    from registry.serve import prepare
    from tests.support.fixtures_registry import make_settings
    from tests.support.fixtures_s3 import S3_TEST_ENV, S3_UNSET_ENV
    from tests.support.s3server import MotoServer
    from tests.support.servers import ServerThread

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        endpoint = None
        if backend == "postgres_s3":
            os.environ.update(S3_TEST_ENV)
            for name in S3_UNSET_ENV:
                os.environ.pop(name, None)
            endpoint = stack.enter_context(MotoServer()).endpoint_url
        settings = make_settings(backend, Path(tmp), stack, endpoint)
        ctx, token = prepare(settings)
        stack.callback(ctx.close)  # engines, and the job executor (its child process)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        yield server.url, token


def describe_failures(stats: Stats, reproduce: str, limit: int = 60) -> str:
    """Every failing case (up to ``limit``) with its problems and a reproducer command.

    ``reproduce`` is a format string with ``{index}`` (the case index).
    """
    lines = []
    for result in stats.failures[:limit]:
        c = result.case
        lines.append(f"- case {c.index} [{c.family}] {c.label[:160]}")
        lines += [f"    {problem[:400]}" for problem in result.failures[:4]]
        lines.append("    reproduce: " + reproduce.format(index=c.index))
    if len(stats.failures) > limit:
        lines.append(f"... and {len(stats.failures) - limit} more")
    return "\n".join(lines)
