"""An in-memory fake of the registry HTTP contract (docs/http-api.md) for client unit tests.

``FakeRegistry`` is an ``httpx.MockTransport`` handler: it serves the API at
``http://registry.test`` and a fake S3 at ``http://s3.test`` (presigned PUT,
multipart, GET), records every request, and can inject failures.
``tests/unit/test_client_fakes.py`` checks the fake itself against the contract, so
the client tests that rely on it stand on something checked.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

from loreg.client import Registry
from loreg.manifest import manifest_digest
from loreg.refs import DEFAULT_NAMESPACE, parse_ref

API = "http://registry.test"
S3 = "http://s3.test"


def error(status: int, code: str, message: str) -> httpx.Response:
    """An error answer in the contract's shape."""
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    url: str
    headers: dict[str, str]

    @property
    def authorized(self) -> bool:
        return "authorization" in self.headers


@dataclass
class FakeRegistry:
    """The registry and its object store, in memory.

    ``upload_method``: how missing blobs are to be sent (``api``, ``put`` or
    ``multipart``); ``download_via``: ``api`` (relative signed URLs) or ``s3``
    (absolute presigned URLs). ``hooks`` maps ``(method, path-regex)`` to a
    callable that may return a Response to short-circuit (failure injection).
    """

    upload_method: str = "api"
    download_via: str = "api"
    part_size: int = 1024
    default_namespace: str = DEFAULT_NAMESPACE
    blobs: dict[str, bytes] = field(default_factory=dict)
    versions: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    aliases: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    #: ``GET .../versions/{n}/card`` answers by (namespace, name, number); pending if absent
    cards: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    #: ``POST /v1/admin/cards/backfill`` answers, in turn (then submitted 0, remaining 0)
    backfills: list[dict[str, int]] = field(default_factory=list)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    staged: dict[tuple[str, str], bytes] = field(default_factory=dict)
    parts: dict[tuple[str, str, int], bytes] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    hooks: list[tuple[str, str, Callable[[httpx.Request], httpx.Response | None]]] = field(
        default_factory=list
    )
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------ plumbing
    def transport(self) -> httpx.MockTransport:
        """An httpx transport serving this fake."""
        return httpx.MockTransport(self)

    def hook(
        self, method: str, pattern: str, fn: Callable[[httpx.Request], httpx.Response | None]
    ) -> None:
        """Intercept requests whose path matches ``pattern`` (regex search)."""
        self.hooks.append((method, pattern, fn))

    def requests(self, method: str | None = None, contains: str = "") -> list[Seen]:
        """Recorded requests, filtered by method and URL substring."""
        return [
            s for s in self.seen if (method is None or s.method == method) and contains in s.url
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(Seen(request.method, str(request.url), dict(request.headers)))
        path = unquote(request.url.path)
        for method, pattern, fn in self.hooks:
            if method == request.method and re.search(pattern, str(request.url)):
                answer = fn(request)
                if answer is not None:
                    return answer
        request.read()
        if request.url.host == "s3.test":
            return self._s3(request, path)
        return self._api(request, path)

    # ------------------------------------------------------------------ s3
    def _s3(self, request: httpx.Request, path: str) -> httpx.Response:
        parts = path.strip("/").split("/")
        if request.method == "GET" and parts[0] == "blobs":
            return self._blob(parts[1])
        if request.method == "PUT" and parts[0] == "put":
            self.staged[(parts[1], parts[2])] = request.content
            return httpx.Response(200, headers={"ETag": '"whole"'})
        if request.method == "PUT" and parts[0] == "mp":
            body = request.content
            self.parts[(parts[1], parts[2], int(parts[3]))] = body
            return httpx.Response(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
        return error(404, "not_found", f"no such S3 route {path}")

    def _blob(self, sha: str) -> httpx.Response:
        if sha not in self.blobs:
            return error(404, "not_found", f"blob {sha} not found")
        return httpx.Response(200, content=self.blobs[sha])

    # ----------------------------------------------------------------- api
    def _api(self, request: httpx.Request, path: str) -> httpx.Response:
        method = request.method
        is_json = request.headers.get("content-type", "").startswith("application/json")
        body = json.loads(request.content) if request.content and is_json else None
        if method == "GET" and path == "/v1/whoami":
            token = request.headers.get("authorization")
            return httpx.Response(
                200,
                json={
                    "authenticated": bool(token),
                    "token_name": "tester" if token else None,
                    "default_namespace": self.default_namespace,
                    "grants": [{"namespace": "*", "scope": "admin"}] if token else [],
                },
            )
        if method == "GET" and path.startswith("/v1/resolve/"):
            return self._resolve(path[len("/v1/resolve/") :])
        if method == "GET" and path.startswith("/v1/blobs/"):
            if "signature" not in request.url.params:
                return error(401, "unauthorized", "unsigned blob URL")
            return self._blob(path.rsplit("/", 1)[1])
        if method == "POST" and path == "/v1/uploads":
            return self._start_upload(body)
        match = re.fullmatch(r"/v1/uploads/([^/]+)/blobs/([0-9a-f]{64})(/complete)?", path)
        if match and method in ("PUT", "POST"):
            return self._finish_blob(match.group(1), match.group(2), request, body)
        match = re.fullmatch(r"/v1/uploads/([^/]+)/commit", path)
        if match and method == "POST":
            return self._commit(match.group(1))
        if method == "GET" and path == "/v1/adapters":
            wanted = request.url.params.get("namespace")
            items = [self._summary(ns, n) for ns, n in self.versions if wanted in (None, ns)]
            return httpx.Response(200, json=_page(items, request))
        match = re.fullmatch(r"/v1/adapters/([^/]+)/([^/]+)(/versions)?", path)
        if match and method == "GET":
            key = (match.group(1), match.group(2))
            if key not in self.versions:
                return error(404, "not_found", f"adapter {key[0]}/{key[1]} not found")
            newest_first = [
                {"version": v["version"], "digest": v["digest"], "size": v["size"]}
                for v in reversed(self.versions[key])
            ]
            if match.group(3):
                return httpx.Response(200, json=_page(newest_first, request))
            recent = {
                "items": newest_first[:20],
                "next_cursor": "20" if newest_first[20:] else None,
            }
            return httpx.Response(200, json={**self._summary(*key), "recent_versions": recent})
        match = re.fullmatch(r"/v1/adapters/([^/]+)/([^/]+)/versions/(\d+)/card", path)
        if match and method == "GET":
            key3 = (match.group(1), match.group(2), int(match.group(3)))
            pending = {"card_status": "pending", "card": None, "readme": None, "error": None}
            return httpx.Response(200, json=self.cards.get(key3, pending))
        if method == "POST" and path == "/v1/admin/cards/backfill":
            answer = self.backfills.pop(0) if self.backfills else {"submitted": 0, "remaining": 0}
            return httpx.Response(200, json=answer)
        match = re.fullmatch(r"/v1/adapters/([^/]+)/([^/]+)/aliases/([^/]+)", path)
        if match:
            return self._alias(method, (match.group(1), match.group(2)), match.group(3), body)
        if method == "POST" and path == "/v1/tokens":
            return httpx.Response(201, json={"id": 1, "token": "lrg_secret", **body})
        if method == "POST" and path == "/v1/admin/gc":
            return httpx.Response(200, json={"deleted_blobs": 0, "freed_bytes": 0})
        return error(404, "not_found", f"no route {method} {path}")

    def _summary(self, namespace: str, name: str) -> dict[str, Any]:
        versions = self.versions[(namespace, name)]
        return {
            "namespace": namespace,
            "name": name,
            "description": versions[-1]["description"],
            "base_model": versions[-1]["base_model"],
            "latest_version": versions[-1]["version"],
            "versions": len(versions),
            "aliases": dict(self.aliases.get((namespace, name), {})),
            "updated_at": "2024-01-01T00:00:00Z",
        }

    def _resolve(self, text: str) -> httpx.Response:
        try:
            ref = parse_ref(text, default_namespace=self.default_namespace)
        except ValueError as exc:
            return error(422, "invalid_ref", str(exc))
        versions = self.versions.get((ref.namespace, ref.name))
        if not versions:
            return error(404, "not_found", f"adapter {ref.namespace}/{ref.name} not found")
        if ref.version is not None:
            found = [v for v in versions if v["version"] == ref.version]
        elif ref.alias is not None:
            number = self.aliases.get((ref.namespace, ref.name), {}).get(ref.alias)
            found = [v for v in versions if v["version"] == number]
        elif ref.digest is not None:
            found = [v for v in versions if v["digest"] == ref.digest]
        else:
            found = versions[-1:]
        if not found:
            return error(404, "not_found", f"{text} not found")
        return httpx.Response(200, json=self.resolved(found[0]))

    def resolved(self, version: dict[str, Any]) -> dict[str, Any]:
        """The resolve answer of a stored version, with download URLs."""
        files = []
        for f in version["files"]:
            if self.download_via == "s3":
                url = f"{S3}/blobs/{f['sha256']}?X-Amz-Signature=abc"
            else:
                url = f"/v1/blobs/{f['sha256']}?expires=9999999999&signature=abc"
            files.append({**f, "url": url})
        key = (version["namespace"], version["name"])
        aliases = [a for a, n in self.aliases.get(key, {}).items() if n == version["version"]]
        return {
            "ref": f"{version['namespace']}/{version['name']}-v{version['version']}",
            **{k: version[k] for k in ("namespace", "name", "version", "digest", "config")},
            "files": files,
            "base_model": version["base_model"],
            "base_model_registered": False,
            "aliases": aliases,
            "description": version["description"],
            "metadata": {},
            "lineage": version["lineage"],
            "summary": {"r": version["config"].get("r")},
            "size": version["size"],
            "created_at": "2024-01-01T00:00:00Z",
            "created_by": "tester",
        }

    def _start_upload(self, body: dict[str, Any]) -> httpx.Response:
        for f in body["files"]:
            if f["path"].endswith((".bin", ".pt", ".pkl")):
                return error(422, "pickle_refused", f"{f['path']} is a pickle file")
        upload_id = f"u{next(self._ids)}"
        self.uploads[upload_id] = body
        blobs = []
        for sha, size in sorted({(f["sha256"], f["size"]) for f in body["files"]}):
            entry: dict[str, Any] = {"sha256": sha, "size": size, "present": sha in self.blobs}
            if not entry["present"]:
                entry["upload"] = self._instructions(upload_id, sha, size)
            blobs.append(entry)
        return httpx.Response(
            201, json={"upload_id": upload_id, "expires_at": "2099-01-01", "blobs": blobs}
        )

    def _instructions(self, upload_id: str, sha: str, size: int) -> dict[str, Any]:
        complete = f"/v1/uploads/{upload_id}/blobs/{sha}/complete"
        if self.upload_method == "api":
            return {"method": "api", "url": f"/v1/uploads/{upload_id}/blobs/{sha}"}
        if self.upload_method == "put":
            return {
                "method": "put",
                "url": f"{S3}/put/{upload_id}/{sha}?X-Amz-Signature=abc",
                "headers": {"x-amz-checksum-sha256": "x"},
                "complete_url": complete,
            }
        count = max(1, -(-size // self.part_size))
        return {
            "method": "multipart",
            "part_size": self.part_size,
            "parts": [
                {"part_number": n, "url": f"{S3}/mp/{upload_id}/{sha}/{n}?X-Amz-Signature=abc"}
                for n in range(1, count + 1)
            ],
            "complete_url": complete,
        }

    def _finish_blob(
        self, upload_id: str, sha: str, request: httpx.Request, body: Any
    ) -> httpx.Response:
        if upload_id not in self.uploads:
            return error(410, "upload_expired", f"upload {upload_id} expired")
        if request.method == "PUT":
            if "authorization" not in request.headers:
                return error(401, "unauthorized", "token required")
            data = request.content
        elif body and "parts" in body:
            numbers = [p["part_number"] for p in body["parts"]]
            if numbers != sorted(numbers) or any(
                (upload_id, sha, n) not in self.parts for n in numbers
            ):
                return error(409, "missing_blob", "parts missing")
            data = b"".join(self.parts[(upload_id, sha, n)] for n in numbers)
        else:
            data = self.staged.get((upload_id, sha), b"")
        if hashlib.sha256(data).hexdigest() != sha:
            return error(422, "blob_mismatch", f"bytes do not match {sha}")
        self.blobs[sha] = data
        return httpx.Response(200, json={"sha256": sha, "size": len(data), "present": True})

    def _commit(self, upload_id: str) -> httpx.Response:
        body = self.uploads.get(upload_id)
        if body is None:
            return error(410, "upload_expired", f"upload {upload_id} expired")
        missing = [f["path"] for f in body["files"] if f["sha256"] not in self.blobs]
        if missing:
            return error(409, "missing_blob", f"blobs never uploaded: {', '.join(missing)}")
        files = [{k: f[k] for k in ("path", "size", "sha256")} for f in body["files"]]
        config_file = next(f for f in files if f["path"] == "adapter_config.json")
        config = json.loads(self.blobs[config_file["sha256"]])
        digest = manifest_digest([(f["path"], f["sha256"], f["size"]) for f in files], config)
        namespace = body.get("namespace") or self.default_namespace
        versions = self.versions.setdefault((namespace, body["name"]), [])
        for existing in versions:
            if existing["digest"] == digest:
                return httpx.Response(
                    200, json={"created": False, "resolved": self.resolved(existing)}
                )
        version = {
            "namespace": namespace,
            "name": body["name"],
            "version": len(versions) + 1,
            "digest": digest,
            "config": config,
            "files": sorted(files, key=lambda f: f["path"]),
            "base_model": body.get("base_model"),
            "description": body.get("description"),
            "lineage": [
                {"relation": p["relation"], "parent": {"kind": "adapter", "ref": p["ref"]}}
                for p in body.get("parents", [])
            ],
            "size": sum(f["size"] for f in files),
        }
        versions.append(version)
        del self.uploads[upload_id]
        return httpx.Response(201, json={"created": True, "resolved": self.resolved(version)})

    def _alias(self, method: str, key: tuple[str, str], alias: str, body: Any) -> httpx.Response:
        if key not in self.versions:
            return error(404, "not_found", f"adapter {key[0]}/{key[1]} not found")
        table = self.aliases.setdefault(key, {})
        previous = table.get(alias)
        if method == "PUT":
            table[alias] = body["version"]
            return httpx.Response(
                200, json={"alias": alias, "version": body["version"], "previous": previous}
            )
        if previous is None:
            return error(404, "not_found", f"alias {alias} not found")
        del table[alias]
        return httpx.Response(200, json={"alias": alias, "version": None, "previous": previous})


def make_adapter_dir(root: Path, *, seed: int = 0, weight_bytes: int = 4096) -> Path:
    """A folder shaped like a PEFT adapter (the fake does not parse the tensors)."""
    root.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 2, "target_modules": ["q_proj", "v_proj"], "seed": seed}
    (root / "adapter_config.json").write_text(json.dumps(config))
    (root / "adapter_model.safetensors").write_bytes(random.Random(seed).randbytes(weight_bytes))
    (root / "README.md").write_text(f"adapter {seed}\n")
    return root


def make_registry(fake: FakeRegistry, cache_dir: Path, **kwargs: Any) -> Registry:
    """A Registry whose network is the fake (token set, progress off)."""
    kwargs.setdefault("token", "secret-token")
    return Registry(API, cache_dir=cache_dir, progress=False, transport=fake.transport(), **kwargs)


def _page(items: list[Any], request: httpx.Request) -> dict[str, Any]:
    """A page of ``items`` as the registry answers it (the fake's cursor: an offset)."""
    limit = int(request.url.params.get("limit", 50))
    start = int(request.url.params.get("cursor") or 0)
    more = len(items) > start + limit
    return {
        "items": items[start : start + limit],
        "next_cursor": str(start + limit) if more else None,
    }
