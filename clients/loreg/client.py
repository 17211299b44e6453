"""``loreg.Registry``: the Python SDK of the registry (push, pull, resolve, load, ...).

Configuration comes from arguments or the ``LOREG_*`` environment variables
(:mod:`loreg.constants`). Pulls go through the local cache (:mod:`loreg.cache`):
a warm pull is one resolve request, and zero in offline mode.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loreg import constants, notices
from loreg._httpx import httpx
from loreg.admin import moment, preset_request, token_expiry
from loreg.cache import (
    BARE_NAMESPACE,
    BASE_MODEL_NAMESPACE,
    Cache,
    VerifyReport,
    check_sha256,
    digest_hex,
    disk_full_error,
    is_disk_full,
    safe_relpath,
    server_key,
    strip_urls,
)
from loreg.errors import (
    LoregError,
    NotFoundError,
    OfflineCacheMissError,
    ServerError,
    ValidationFailedError,
)
from loreg.http import ApiClient, default_timeout, quote_path
from loreg.jobs import job_request, wait_for_job
from loreg.loading import adapter_name_for, load_adapter, unload_adapter, use_adapter
from loreg.manifest import sha256_file
from loreg.mirrors import export_job_request, import_job_request, mirror_request
from loreg.progress import Progress
from loreg.refs import (
    DEFAULT_NAMESPACE,
    Ref,
    parse_ref,
    validate_adapter_name,
    validate_alias,
    validate_name,
)
from loreg.vocabulary import (
    AdapterSort,
    ArtifactKind,
    LineageDirection,
    LineageMedia,
    Relation,
    Scope,
)

if TYPE_CHECKING:
    # Imported where a download or an upload starts: a warm pull needs neither the
    # transfer machinery nor its thread pool (see "SDK start" in docs/design.md).
    from loreg.transfer import Transfers

ADAPTER_REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
_HASH_WORKERS = 4


@dataclass
class PushResult:
    """What a push did: the version it produced and which files were actually sent."""

    ref: str
    namespace: str
    name: str
    version: int
    digest: str
    created: bool
    uploaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    resolved: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the full resolve answer)."""
        out = asdict(self)
        out.pop("resolved")
        return out

    @classmethod
    def from_commit(
        cls, answer: Mapping[str, Any], uploaded: list[str], reused: list[str], sent_bytes: int
    ) -> PushResult:
        """The result of a commit answer (``resolved``, ``created``) and the transfer counts."""
        resolved = answer["resolved"]
        return cls(
            ref=resolved["ref"],
            namespace=resolved["namespace"],
            name=resolved["name"],
            version=int(resolved["version"]),
            digest=resolved["digest"],
            created=bool(answer.get("created")),
            uploaded=uploaded,
            reused=reused,
            bytes_uploaded=sent_bytes,
            resolved=resolved,
        )


@dataclass(frozen=True)
class LocalFile:
    """A file of a folder being pushed."""

    path: str
    source: Path
    size: int
    sha256: str = ""


def pickle_refusal_message(path: str) -> str:
    """The message for a pickle file (the registry's ``pickle_refused`` wording)."""
    shown = repr(path) if len(repr(path)) <= 120 else repr(path)[:117] + "..."
    return (
        f"file {shown} is a pickle format, which can run code when loaded; "
        "convert it to safetensors (e.g. save_pretrained(..., safe_serialization=True) "
        "or safetensors.torch.save_file) and upload that instead"
    )


def collect_files(folder: str | os.PathLike[str]) -> list[LocalFile]:
    """Every regular file under ``folder`` (hidden files and folders skipped), sorted by path.

    Symlinked files are followed (a pulled snapshot can be pushed again).
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValidationFailedError(f"{root} is not a folder: pass the folder holding the files")
    found: list[LocalFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if filename.startswith("."):
                continue
            source = Path(dirpath) / filename
            if not source.is_file():
                continue
            rel = source.relative_to(root).as_posix()
            found.append(LocalFile(rel, source, source.stat().st_size))
    found.sort(key=lambda f: f.path)
    if not found:
        raise ValidationFailedError(f"{root} holds no files to push")
    for f in found:
        if constants.is_pickle_path(f.path):
            raise ValidationFailedError(pickle_refusal_message(f.path), code="pickle_refused")
    return found


def hash_files(files: Sequence[LocalFile]) -> list[LocalFile]:
    """The same files with their sha256 filled in (hashed in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(_HASH_WORKERS, max(1, len(files)))) as pool:
        digests = list(pool.map(lambda f: sha256_file(f.source), files))
    return [LocalFile(f.path, f.source, f.size, d) for f, d in zip(files, digests, strict=True)]


def ref_text(ref: Ref) -> str:
    """The ref as the API path expects it (``ns/name-v3``, ``name@prod``, ...)."""
    prefix = f"{ref.namespace}/" if ref.namespace else ""
    selector = ref.selector()
    if selector == "latest":
        suffix = ""
    elif selector.startswith("@"):
        suffix = selector
    else:
        suffix = f"-{selector}"
    return f"{prefix}{ref.name}{suffix}"


def normalize_grants(grants: Iterable[Any]) -> list[dict[str, str]]:
    """Grants as ``[{"namespace", "scope"}]`` from tuples, ``"ns:scope"`` strings or dicts."""
    out = []
    for grant in grants:
        if isinstance(grant, Mapping):
            namespace, scope = grant.get("namespace"), grant.get("scope")
        elif isinstance(grant, str):
            namespace, _, scope = grant.rpartition(":")
        else:
            namespace, scope = grant
        if not namespace or scope not in tuple(Scope):
            raise ValidationFailedError(
                f"invalid grant {grant!r}: expected a namespace (or '*') and a scope in "
                f"{', '.join(Scope)}, e.g. ('acme', 'write') or 'acme:write'"
            )
        if namespace != "*":
            validate_name(namespace, "namespace")
        out.append({"namespace": namespace, "scope": scope})
    if not out:
        raise ValidationFailedError("a token needs at least one grant, e.g. ('acme', 'read')")
    return out


def _lineage_query(direction: str, depth: int | None) -> dict[str, Any]:
    """The query of ``GET /v1/lineage/...``: ``direction`` checked here, ``depth`` if set."""
    query: dict[str, Any] = {"direction": LineageDirection(direction).value}
    if depth is not None:
        query["depth"] = depth
    return query


class Registry:
    """Client of a loreg registry, with a local cache.

    Arguments default to the environment: ``url`` ``LOREG_URL``, ``token``
    ``LOREG_TOKEN``, ``cache_dir`` ``LOREG_CACHE_DIR``, ``offline``
    ``LOREG_OFFLINE``, ``progress`` (None: on when stderr is a TTY and
    ``LOREG_NO_PROGRESS`` is unset), ``timeout`` ``LOREG_TIMEOUT`` (seconds per
    API request). ``transport`` replaces the network (``httpx.MockTransport``
    in tests). Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        progress: bool | None = None,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = (url or constants.registry_url()).rstrip("/")
        self.token = token if token is not None else constants.registry_token()
        self.cache = Cache(cache_dir if cache_dir is not None else constants.default_cache_dir())
        self.offline = constants.offline_mode() if offline is None else offline
        self.progress = progress
        self.upload_concurrency = constants.upload_concurrency()
        self.download_concurrency = constants.download_concurrency()
        self._server = server_key(self.url)
        self._api = ApiClient(self.url, self.token, timeout=timeout, transport=transport)
        self._transfer_timeout = default_timeout(constants.transfer_timeout())
        self._transfer_retries = constants.transfer_retries()
        self._transport = transport
        self._transfers_made: Transfers | None = None
        self._transfers_lock = threading.Lock()
        self._default_namespace: str | None = None

    @property
    def _transfers(self) -> Transfers:
        """The blob transfers, made on first use (a warm pull never needs them)."""
        with self._transfers_lock:
            if self._transfers_made is None:
                from loreg.transfer import Transfers

                self._transfers_made = Transfers(
                    self._api,
                    timeout=self._transfer_timeout,
                    retries=self._transfer_retries,
                    transport=self._transport,
                )
            return self._transfers_made

    # -------------------------------------------------------------- basics
    def close(self) -> None:
        """Close the HTTP connections."""
        if self._transfers_made is not None:
            self._transfers_made.close()
        self._api.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        root = str(self.cache.root)
        return f"Registry(url={self.url!r}, cache_dir={root!r}, offline={self.offline})"

    @property
    def api(self) -> ApiClient:
        """The JSON API client (for endpoints the SDK does not wrap)."""
        self._require_online("this call")
        return self._api

    def _require_online(self, what: str) -> None:
        if self.offline:
            raise LoregError(
                f"{what} needs the registry, but offline mode is on (LOREG_OFFLINE=1): "
                "unset LOREG_OFFLINE or pass offline=False"
            )

    def _progress(self, total: int, description: str) -> Progress:
        return Progress(total, description, enabled=self.progress)

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``: server version, storage and database kinds."""
        return self.api.get("/v1/health")

    def whoami(self) -> dict[str, Any]:
        """The caller: ``authenticated``, ``token_name``, ``default_namespace``, ``grants``."""
        return self.api.get("/v1/whoami")

    def default_namespace(self) -> str:
        """The namespace bare names mean for this token (asked once, then remembered)."""
        if self._default_namespace is None:
            if self.offline:
                return DEFAULT_NAMESPACE
            self._default_namespace = self.whoami().get("default_namespace") or DEFAULT_NAMESPACE
        return self._default_namespace

    # ------------------------------------------------------------- resolve
    def resolve(self, ref: str | Ref) -> dict[str, Any]:
        """Resolve a ref to its version manifest (``ref``, ``digest``, ``files``, ``config``, ...).

        Online the answer carries short-lived download URLs; offline it comes from
        the cache (the last answer stored by :meth:`pull`, without URLs; a bare
        name never pulled as "latest" means the newest version pulled).
        """
        parsed = _parse(ref)
        if self.offline:
            return self._resolve_offline(parsed)
        path = "/v1/resolve/" + quote_path(ref_text(parsed), safe="/@:")
        resolved, headers = self._api.get_with_headers(path)
        _check_manifest(resolved)
        found = notices.parse_headers(headers.get_list(notices.HEADER))
        if found:
            resolved["warnings"] = [n.to_dict() for n in found]
            notices.emit(found)
        return resolved

    def _resolve_offline(self, ref: Ref) -> dict[str, Any]:
        selector = ref.selector()
        manifest = None
        if selector.startswith("@sha256:"):
            manifest = self.cache.read_manifest(selector[1:])
            if manifest is not None and not _same_adapter(manifest, ref):
                manifest = None
        else:
            namespaces = [ref.namespace] if ref.namespace else [BARE_NAMESPACE, DEFAULT_NAMESPACE]
            for namespace in namespaces:
                digest = self.cache.read_ref(self._server, namespace, ref.name, selector)
                if digest is None and ref.is_latest:
                    # Never resolved as "latest": use the newest version pulled before.
                    known = self.cache.cached_versions(self._server, namespace, ref.name)
                    if known:
                        digest = self.cache.read_ref(
                            self._server, namespace, ref.name, f"v{known[-1]}"
                        )
                if digest is not None:
                    manifest = self.cache.read_manifest(digest)
                    break
        if manifest is None:
            raise OfflineCacheMissError(
                f"{ref_text(ref)} is not in the local cache at {self.cache.root} and offline "
                "mode is on (LOREG_OFFLINE=1): pull it once with the registry reachable, "
                "or unset LOREG_OFFLINE"
            )
        return manifest

    def _remember(self, ref: Ref, resolved: Mapping[str, Any]) -> None:
        """Store the manifest and the ref entries that lead to it (for offline mode).

        The answer's ``warnings`` (yanked, deprecated) are not stored: they may change.
        """
        self.cache.write_manifest({k: v for k, v in resolved.items() if k != "warnings"})
        namespace, name, digest = resolved["namespace"], resolved["name"], resolved["digest"]
        selector = ref.selector()
        self.cache.write_ref(self._server, namespace, name, f"v{resolved['version']}", digest)
        if not selector.startswith("@sha256:"):
            self.cache.write_ref(self._server, namespace, name, selector, digest)
            if not ref.namespace:
                self.cache.write_ref(self._server, BARE_NAMESPACE, name, selector, digest)

    # ---------------------------------------------------------------- pull
    def pull(self, ref: str | Ref) -> Path:
        """Download a version into the cache (if needed) and return its snapshot folder.

        A warm pull costs one resolve request; offline, none. Every file is
        sha256-verified before it becomes visible.
        """
        return self._pull(ref)[1]

    def _pull(self, ref: str | Ref) -> tuple[dict[str, Any], Path]:
        parsed = _parse(ref)
        resolved = self.resolve(parsed)
        path = self._materialize(resolved, f"pull {resolved['ref']}", what=resolved["ref"])
        if not self.offline:
            with self._disk_full_errors():
                self._remember(parsed, resolved)
        return resolved, path

    def _materialize(self, resolved: Mapping[str, Any], description: str, *, what: str) -> Path:
        """Make sure every blob and the snapshot of ``resolved`` are in the cache.

        A warm pull stats each file once (its fingerprint was recorded when it was
        verified); a file whose fingerprint changed is hashed again, and dropped
        and downloaded again when its bytes are wrong. Offline, a missing or
        corrupt file is a cache miss.
        """
        digest, files = resolved["digest"], resolved["files"]
        if self.cache.snapshot_ready(digest, files):
            return self.cache.snapshot_path(digest)
        from loreg.transfer import BlobTarget

        with self._disk_full_errors():
            self.cache.clean_temp()
            wanted = [f for f in files if not self.cache.check_blob(f["sha256"], int(f["size"]))]
            if wanted and self.offline:
                raise OfflineCacheMissError(
                    f"the files of {what} are missing from the cache at {self.cache.root} "
                    "(or were corrupt and dropped) and offline mode is on: pull it again online"
                )
            owner = f"{what} ({digest})"
            targets = [
                BlobTarget(f["sha256"], int(f["size"]), _file_url(f), f["path"], owner)
                for f in wanted
            ]
            total = sum(t.size for t in {t.sha256: t for t in targets}.values())
            with self._progress(total, description) as bar:
                self._transfers.download(
                    targets, self.cache, concurrency=self.download_concurrency, progress=bar
                )
            return self.cache.build_snapshot(digest, files)

    @contextlib.contextmanager
    def _disk_full_errors(self) -> Iterator[None]:
        """Turn a full disk while writing the cache into a one-line :class:`DiskFullError`."""
        try:
            yield
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(self.cache.root, None) from exc
            raise

    def verify_cache(self) -> VerifyReport:
        """Hash every blob in the local cache; drop corrupt ones (the next pull re-fetches)."""
        return self.cache.verify()

    # ---------------------------------------------------------------- push
    def push(
        self,
        folder: str | os.PathLike[str],
        name: str,
        *,
        namespace: str | None = None,
        base_model: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        parents: Sequence[str | Mapping[str, Any]] | None = None,
    ) -> PushResult:
        """Publish the adapter in ``folder`` as the next version of ``[namespace/]name``.

        Only blobs the registry lacks are sent; the version appears at once on
        commit, or not at all. Byte-identical content returns the existing version
        with ``created=False``. Hidden files and folders are skipped; pickle files
        are refused. ``parents`` are refs (relation ``continued_from``) or dicts
        ``{"ref", "relation", "params"}``.
        """
        self._require_online("push")
        validate_adapter_name(name)
        if namespace is not None:
            validate_name(namespace, "namespace")
        files = collect_files(folder)
        present = {f.path for f in files}
        missing = [p for p in ADAPTER_REQUIRED_FILES if p not in present]
        if missing:
            raise ValidationFailedError(
                f"{folder} is not a PEFT adapter folder: it lacks {', '.join(missing)} "
                "(save it with PeftModel.save_pretrained)",
                code="invalid_manifest",
            )
        body: dict[str, Any] = {"kind": ArtifactKind.ADAPTER, "name": name}
        if namespace is not None:
            body["namespace"] = namespace
        if base_model is not None:
            body["base_model"] = base_model
        if description is not None:
            body["description"] = description
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if parents:
            body["parents"] = [_parent(p) for p in parents]
        answer, uploaded, reused, sent_bytes = self._publish(files, body, f"push {name}")
        resolved = answer["resolved"]
        return PushResult(
            ref=resolved["ref"],
            namespace=resolved["namespace"],
            name=resolved["name"],
            version=int(resolved["version"]),
            digest=resolved["digest"],
            created=bool(answer.get("created")),
            uploaded=uploaded,
            reused=reused,
            bytes_uploaded=sent_bytes,
            resolved=resolved,
        )

    def _publish(
        self, files: list[LocalFile], body: dict[str, Any], description: str
    ) -> tuple[dict[str, Any], list[str], list[str], int]:
        """Two-phase publish: declare, send the missing blobs, commit."""
        hashed = hash_files(files)
        body["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in hashed]
        session = self._api.post("/v1/uploads", body)
        upload_id = session.get("upload_id") if isinstance(session, dict) else None
        if not upload_id or not isinstance(session.get("blobs"), list):
            raise ServerError("the registry's upload answer lacks upload_id or blobs")
        sources = {f.sha256: f.source for f in hashed}
        sizes = {f.sha256: f.size for f in hashed}
        wanted = [b for b in session["blobs"] if not b.get("present")]
        total = sum(sizes.get(b.get("sha256"), 0) for b in wanted)
        with self._progress(total, description) as bar:
            sent = set(
                self._transfers.upload(
                    wanted, sources, concurrency=self.upload_concurrency, progress=bar
                )
            )
        answer = self._api.post(f"/v1/uploads/{quote_path(str(upload_id))}/commit", {})
        if not isinstance(answer, dict) or "resolved" not in answer:
            raise ServerError("the registry's commit answer lacks 'resolved'")
        uploaded = [f.path for f in hashed if f.sha256 in sent]
        reused = [f.path for f in hashed if f.sha256 not in sent]
        return answer, uploaded, reused, sum(sizes[s] for s in sent)

    # ------------------------------------------------------------- catalog
    def list(
        self,
        namespace: str | None = None,
        *,
        sort: str | AdapterSort | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Adapters visible to the caller, optionally only those of ``namespace``.

        An iterator that fetches a page (``page_size`` adapters, the server's default
        when None) only when the previous one is used up; ``sort`` is ``name`` (by
        namespace, then name; the default) or ``updated`` (newest update first).
        Wrap it in ``list(...)`` for everything, or ``itertools.islice`` for a few.
        """
        params: dict[str, Any] = {}
        if namespace is not None:
            validate_name(namespace, "namespace")
            params["namespace"] = namespace
        if sort is not None:
            if sort not in set(AdapterSort):
                raise ValidationFailedError(
                    f"invalid sort {sort!r}: use one of {', '.join(AdapterSort)}"
                )
            params["sort"] = str(sort)
        return self.api.pages("/v1/adapters", params=params, limit=page_size)

    def versions(
        self, name_or_ref: str | Ref, *, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The versions of the adapter ``[namespace/]name`` (a ref's selector is
        ignored), newest first, fetched a page at a time as the caller iterates."""
        parsed = _parse(name_or_ref)
        namespace = parsed.namespace or self.default_namespace()
        path = f"/v1/adapters/{quote_path(namespace)}/{quote_path(parsed.name)}/versions"
        return self.api.pages(path, limit=page_size)

    def namespaces(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """The namespaces visible to the caller, by name, fetched a page at a time."""
        return self.api.pages("/v1/namespaces", limit=page_size)

    def show(self, ref: str | Ref) -> dict[str, Any]:
        """A version's details plus its adapter's (``adapter``: summary, aliases, ...).

        Keys: everything :meth:`resolve` returns (files without URLs, config,
        digest, base model, lineage, ...) and ``adapter`` (None offline): the adapter's
        summary (``versions`` is the count) with ``recent_versions``, a page of its
        newest versions; :meth:`versions` iterates over all of them.
        """
        resolved = strip_urls(self.resolve(ref))
        detail = card = None
        if not self.offline:
            namespace, name = quote_path(resolved["namespace"]), quote_path(resolved["name"])
            detail = self._api.get(f"/v1/adapters/{namespace}/{name}")
            try:
                card = self._api.get(_card_path(resolved))
            except NotFoundError:  # a registry from before cards
                card = None
        return {**resolved, "adapter": detail, "card": card}

    def card(self, ref: str | Ref) -> dict[str, Any]:
        """A version's computed card: ``{card_status, card, readme, error, ...}``.

        ``card_status`` is ``pending`` until the registry's card job has read the
        weights, then ``ready`` (``card``: per module rank, alpha, scaling, norm,
        singular values, effective rank, energy; totals) or ``failed`` (``error``).
        """
        self._require_online("card")
        return self._api.get(_card_path(self.resolve(ref)))

    def recompute_card(self, ref: str | Ref) -> dict[str, Any]:
        """Compute a version's card again (write scope; retries a failed card): pending."""
        self._require_online("card")
        return self._api.post(_card_path(self.resolve(ref)), {})

    def set_alias(self, ref: str | Ref, alias: str) -> dict[str, Any]:
        """Point ``alias`` at the version ``ref`` resolves to.

        Returns ``{namespace, name, alias, version, previous}``.
        """
        validate_alias(alias)
        self._require_online("alias")
        resolved = self.resolve(ref)
        answer = self._api.put(
            _alias_path(resolved["namespace"], resolved["name"], alias),
            {"version": int(resolved["version"])},
        )
        return {"namespace": resolved["namespace"], "name": resolved["name"], **answer}

    def remove_alias(self, name_or_ref: str | Ref, alias: str) -> dict[str, Any]:
        """Delete ``alias`` from the adapter ``[namespace/]name``.

        Returns ``{namespace, name, alias, version: None, previous}``.
        """
        validate_alias(alias)
        self._require_online("alias removal")
        parsed = _parse(name_or_ref)
        namespace = parsed.namespace or self.default_namespace()
        answer = self._api.delete(_alias_path(namespace, parsed.name, alias))
        return {"namespace": namespace, "name": parsed.name, **answer}

    # ------------------------------------------------------------ datasets
    def push_dataset(
        self,
        file_or_folder: str | os.PathLike[str],
        name: str,
        namespace: str | None = None,
        description: str | None = None,
    ) -> PushResult:
        """Publish a chat JSONL dataset (a ``.jsonl`` file, or a folder holding some).

        Records are ``{"system": ..., "conversation": [{"human": ..., "assistant": ...}]}``;
        the registry validates every line on commit. Datasets are versioned like
        adapters (``[namespace/]name-vN``) and used by train jobs (``params.dataset``).
        """
        self._require_online("dataset push")
        validate_adapter_name(name)
        if namespace is not None:
            validate_name(namespace, "namespace")
        source = Path(file_or_folder).expanduser()
        if not source.exists():
            raise ValidationFailedError(f"{source} does not exist: pass a .jsonl file or a folder")
        if source.is_file():
            files = [LocalFile(source.name, source, source.stat().st_size)]
        else:
            files = collect_files(source)
        if not any(f.path.endswith(".jsonl") for f in files):
            raise ValidationFailedError(
                f"{source} holds no .jsonl file: a dataset is chat JSONL, one "
                '{"system": ..., "conversation": [{"human": ..., "assistant": ...}]} per line',
                code="invalid_manifest",
            )
        body: dict[str, Any] = {"kind": ArtifactKind.DATASET, "name": name}
        if namespace is not None:
            body["namespace"] = namespace
        if description is not None:
            body["description"] = description
        answer, uploaded, reused, sent_bytes = self._publish(files, body, f"push dataset {name}")
        return PushResult.from_commit(answer, uploaded, reused, sent_bytes)

    # --------------------------------------------------------- base models
    def push_base_model(
        self, folder: str | os.PathLike[str], name: str, revision: str | None = None
    ) -> dict[str, Any]:
        """Register a base model from a folder (``config.json`` + ``*.safetensors``).

        Returns the base-model object plus ``created``, ``uploaded``, ``reused``
        and ``bytes_uploaded``.
        """
        self._require_online("base model push")
        files = collect_files(folder)
        paths = [f.path for f in files]
        if "config.json" not in paths or not any(p.endswith(".safetensors") for p in paths):
            raise ValidationFailedError(
                f"{folder} is not a base-model folder: it needs config.json and at least one "
                "*.safetensors file (save_pretrained(..., safe_serialization=True))",
                code="invalid_manifest",
            )
        body: dict[str, Any] = {"kind": ArtifactKind.BASE_MODEL, "name": name}
        if revision is not None:
            body["revision"] = revision
        answer, uploaded, reused, sent_bytes = self._publish(files, body, f"push base {name}")
        return {
            **answer["resolved"],
            "created": bool(answer.get("created")),
            "uploaded": uploaded,
            "reused": reused,
            "bytes_uploaded": sent_bytes,
        }

    def pull_base_model(self, name: str) -> Path:
        """Download a registered base model's files into the cache; returns the folder."""
        key = ("latest",)
        if self.offline:
            digest = self.cache.read_ref(self._server, BASE_MODEL_NAMESPACE, name, *key)
            manifest = self.cache.read_manifest(digest) if digest else None
            if manifest is None:
                raise OfflineCacheMissError(
                    f"base model {name} is not in the local cache at {self.cache.root} and "
                    "offline mode is on: pull it once online, or unset LOREG_OFFLINE"
                )
            return self._materialize(manifest, f"pull base {name}", what=f"base model {name}")
        detail = self._api.get(f"/v1/base-models/{quote_path(name, safe='/')}")
        _check_manifest(detail)
        path = self._materialize(detail, f"pull base {name}", what=f"base model {name}")
        with self._disk_full_errors():
            self.cache.write_manifest(detail)
            self.cache.write_ref(self._server, BASE_MODEL_NAMESPACE, name, *key, detail["digest"])
        return path

    def lineage(
        self,
        ref: str | Ref,
        *,
        base_model: bool = False,
        direction: str = "up",
        depth: int | None = None,
    ) -> dict[str, Any]:
        """The lineage graph of a version (or, with ``base_model``, of a base model).

        ``direction`` is ``up`` (parents, back to datasets and base models), ``down``
        (what was derived from it) or ``both``; ``depth`` bounds the edges from ``ref``
        (the server's maximum when None). Returns ``{root, direction, depth, nodes,
        edges: [{child, relation, parent, params, direction, depth}], truncated,
        depth_limited}``, nearest edges first.
        """
        self._require_online("lineage")
        return self._api.get(
            self._lineage_path(ref, base_model), params=_lineage_query(direction, depth)
        )

    def search(
        self,
        q: str | None = None,
        *,
        namespace: str | None = None,
        base_model: str | None = None,
        task_type: str | None = None,
        tags: Iterable[str] | None = None,
        rank_min: int | None = None,
        rank_max: int | None = None,
        peft_type: str | None = None,
        kind: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        has_alias: bool | None = None,
        yanked: bool | None = None,
        sort: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Adapters matching a text query ``q`` and filters (``GET /v1/search``), as a
        lazy iterator: a page of ``page_size`` (server default 50) is fetched when the
        previous one is used up, so stopping early costs no further requests.

        ``tags``: all must be present. ``sort``: ``relevance`` (default with ``q``),
        ``created`` (newest first; default without) or ``name``. Each item: namespace,
        name, ref, description, base_model, task_type, peft_type, rank, tags, version,
        has_alias, yanked, created_at, score, ...
        """
        self._require_online("search")
        dates = {"created_after": created_after, "created_before": created_before}
        params: dict[str, Any] = {
            "q": q,
            "namespace": namespace,
            "base_model": base_model,
            "task_type": task_type,
            "tags": ",".join(tags) if tags else None,
            "rank_min": rank_min,
            "rank_max": rank_max,
            "peft_type": peft_type,
            "kind": kind,
            **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in dates.items()},
            "has_alias": None if has_alias is None else str(has_alias).lower(),
            "yanked": None if yanked is None else str(yanked).lower(),
            "sort": sort,
        }
        return self.api.pages("/v1/search", params=params, limit=page_size)

    def lineage_svg(
        self,
        ref: str | Ref,
        *,
        base_model: bool = False,
        direction: str = "up",
        depth: int | None = None,
    ) -> str:
        """The same lineage graph drawn by the server as an SVG document (text)."""
        self._require_online("lineage")
        query = {**_lineage_query(direction, depth), "format": LineageMedia.SVG.value}
        return self._api.request("GET", self._lineage_path(ref, base_model), params=query).text

    def _lineage_path(self, ref: str | Ref, base_model: bool) -> str:
        if base_model:
            return f"/v1/lineage/base-models/{quote_path(str(ref), safe='/')}"
        return "/v1/lineage/versions/" + quote_path(ref_text(_parse(ref)), safe="/@:")

    def list_base_models(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Registered base models (name, revision, architecture, module count, size), by
        name, fetched a page at a time as the caller iterates."""
        return self.api.pages("/v1/base-models", limit=page_size)

    # ------------------------------------------------------ tokens, admin
    def create_token(
        self,
        name: str,
        grants: Iterable[tuple[str, str] | Mapping[str, str] | str],
        default_namespace: str | None = None,
        expires: str | int | float | datetime | None = None,
    ) -> dict[str, Any]:
        """Create an API token (admin); the answer's ``token`` is shown only this once.

        ``expires``: a lifetime (``"30d"``, ``"12h"``, seconds) or a datetime; None: never.
        """
        body: dict[str, Any] = {"name": name, "grants": normalize_grants(grants)}
        if default_namespace is not None:
            validate_name(default_namespace, "namespace")
            body["default_namespace"] = default_namespace
        body.update(token_expiry(expires))
        return self.api.post("/v1/tokens", body)

    def tokens(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Tokens newest first (an admin of ``*`` sees all, others only their own),
        fetched a page at a time as you iterate; no secrets, only ``prefix``."""
        return self.api.pages("/v1/tokens", limit=page_size)

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        """Revoke a token (admin of ``*``, or the token itself): refused at once by every
        server process. Revoking a revoked token answers it again."""
        return self.api.delete(f"/v1/tokens/{int(token_id)}")

    def audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        namespace: str | None = None,
        target: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Audit rows newest first (admins), lazily a page at a time.

        ``since`` (inclusive) and ``until`` (exclusive) take a datetime, an ISO-8601
        text or a duration ago (``"2h"``); each row has ``detail.before``/``after``.
        """
        params = {
            "actor": actor,
            "action": action,
            "namespace": namespace,
            "target": target,
            "since": moment(since) if since is not None else None,
            "until": moment(until) if until is not None else None,
        }
        return self.api.pages("/v1/audit", params=params, limit=page_size)

    def presets(
        self, namespace: str | None = None, *, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Training presets: the built-ins, then ``namespace``'s own (default: the token's
        default namespace), lazily a page at a time."""
        return self.api.pages("/v1/presets", params={"namespace": namespace}, limit=page_size)

    def preset(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One preset (the namespace's own, else a built-in): ``params``, ``builtin``, ..."""
        query = {"namespace": namespace} if namespace else None
        return self.api.get(f"/v1/presets/{quote_path(name)}", params=query)

    def save_preset(
        self,
        name: str,
        params: Mapping[str, Any],
        namespace: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create or replace a namespace's preset (write scope): ``r`` and ``lora_alpha``
        required, plus any of target_modules, steps, epochs, lr, seed, max_length,
        batch_size, eval_fraction. A train job naming it gets a copy of these params."""
        path = f"/v1/presets/{quote_path(name)}"
        if namespace:
            path += f"?namespace={quote_path(namespace)}"
        return self.api.put(path, preset_request(params, description))

    def delete_preset(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """Delete a namespace's preset (write scope); returns what it held."""
        path = f"/v1/presets/{quote_path(name)}"
        if namespace:
            path += f"?namespace={quote_path(namespace)}"
        return self.api.delete(path)

    def gc(self) -> dict[str, Any]:
        """Garbage-collect blobs no version references (admin): ``POST /v1/admin/gc``."""
        return self.api.post("/v1/admin/gc", {})

    # ---------------------------------------------------------- lifecycle
    def _exact_version(self, ref: str | Ref, what: str) -> tuple[str, str, int]:
        """``(namespace, name, number)`` of a ref naming one version (``name-vN``, an alias
        or a digest); a bare name is refused rather than taken as "the latest"."""
        self._require_online(what)
        parsed = _parse(ref)
        if parsed.is_latest:
            raise ValidationFailedError(
                f"{what} needs one version: write {parsed.name}-vN (or @alias, @sha256:...), "
                "not a bare name"
            )
        if parsed.version is not None:
            return parsed.namespace or self.default_namespace(), parsed.name, parsed.version
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", notices.LoregWarning)
            resolved = self.resolve(parsed)
        return resolved["namespace"], resolved["name"], int(resolved["version"])

    def _adapter_path(self, name: str | Ref) -> str:
        parsed = _parse(name)
        namespace = parsed.namespace or self.default_namespace()
        return f"/v1/adapters/{quote_path(namespace)}/{quote_path(parsed.name)}"

    def yank(self, ref: str | Ref, reason: str | None = None) -> dict[str, Any]:
        """Yank a version: latest and ``main`` skip it, exact refs still pull it (with a
        :class:`~loreg.notices.YankedVersionWarning`). Returns ``{ref, yanked, latest_version}``."""
        namespace, name, number = self._exact_version(ref, "yank")
        path = f"{self._adapter_path(f'{namespace}/{name}')}/versions/{number}/yank"
        return self._api.post(path, {"reason": reason})

    def unyank(self, ref: str | Ref) -> dict[str, Any]:
        """Undo :meth:`yank`. Returns ``{ref, yanked: None, latest_version}``."""
        namespace, name, number = self._exact_version(ref, "unyank")
        return self._api.post(
            f"{self._adapter_path(f'{namespace}/{name}')}/versions/{number}/unyank", {}
        )

    def deprecate(
        self, name: str | Ref, message: str, successor: str | None = None
    ) -> dict[str, Any]:
        """Mark the adapter ``[namespace/]name`` deprecated, optionally naming its successor
        (a ref the server checks). Returns ``{namespace, name, deprecation}``."""
        self._require_online("deprecate")
        body = {"message": message, "successor": successor}
        return self._api.put(f"{self._adapter_path(name)}/deprecation", body)

    def undeprecate(self, name: str | Ref) -> dict[str, Any]:
        """Clear the adapter's deprecation. Returns ``{namespace, name, deprecation: None}``."""
        self._require_online("undeprecate")
        return self._api.delete(f"{self._adapter_path(name)}/deprecation")

    def delete(self, ref: str | Ref) -> dict[str, Any]:
        """Delete one version (admin). Refused (ConflictError, ``details["dependents"]``)
        while another version or base model was made from it."""
        namespace, name, number = self._exact_version(ref, "delete")
        return self._api.delete(f"{self._adapter_path(f'{namespace}/{name}')}/versions/{number}")

    def delete_adapter(self, name: str | Ref) -> dict[str, Any]:
        """Delete an adapter with all its versions (admin); refused like :meth:`delete`."""
        self._require_online("delete")
        parsed = _parse(name)
        if not parsed.is_latest:
            raise ValidationFailedError(
                f"delete_adapter takes an adapter name ([namespace/]name), not {name!r}"
            )
        return self._api.delete(self._adapter_path(parsed))

    def backfill_cards(self, *, limit: int = 500, retry_failed: bool = False) -> dict[str, Any]:
        """One batch of the card back-fill (admin): ``{submitted, remaining}``.

        Versions without a card (published before cards existed; with
        ``retry_failed`` also failed ones) get a card job; call until ``remaining`` is 0.
        """
        flag = "true" if retry_failed else "false"
        return self.api.post(f"/v1/admin/cards/backfill?limit={int(limit)}&retry_failed={flag}")

    # --------------------------------------------------------------- jobs
    def submit_job(
        self,
        type: str,  # noqa: A002 - the API's field name
        inputs: Iterable[str | tuple[str, float] | Mapping[str, Any]],
        params: Mapping[str, Any] | None,
        output: str,
        namespace: str | None = None,
        queue: str | None = None,
    ) -> dict[str, Any]:
        """Submit a job (``POST /v1/jobs``); returns its view (``id``, ``status`` queued, ...).

        ``inputs`` are refs (weight 1), ``(ref, weight)`` pairs or ``{"ref", "weight"}``.
        The registry validates inputs and params at once (4xx naming the problem).
        """
        body = job_request(type, inputs, params, output, namespace=namespace, queue=queue)
        return self.api.post("/v1/jobs", body)

    def job(self, job_id: str) -> dict[str, Any]:
        """A job's view: ``status``, ``progress``, ``error``, ``attempts``, ``result``, ..."""
        return self.api.get(f"/v1/jobs/{quote_path(job_id)}")

    def jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,  # noqa: A002 - the API's field name
        namespace: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Jobs visible to the caller, newest first, optionally filtered; fetched a page
        (``page_size`` jobs) at a time as the caller iterates."""
        params = {"status": status, "type": type, "namespace": namespace}
        return self.api.pages("/v1/jobs", params=params, limit=page_size)

    def job_logs(self, job_id: str) -> str:
        """The tail of a job's log (text)."""
        return self.api.get(f"/v1/jobs/{quote_path(job_id)}/logs").get("log") or ""

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job, or ask a running one to stop; returns its view."""
        return self.api.post(f"/v1/jobs/{quote_path(job_id)}/cancel", {})

    def wait_job(
        self, job_id: str, timeout: float | None = None, poll: float = 1.0
    ) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; returns its final view.

        Raises :class:`loreg.jobs.JobTimeoutError` after ``timeout`` seconds.
        """
        return wait_for_job(lambda: self.job(job_id), timeout=timeout, poll=poll)

    # ------------------------------------------------------------- mirrors
    def mirror_import(
        self, upstream: str, target: str, *, revision: str | None = None
    ) -> dict[str, Any]:
        """Import ``hf://org/repo[@revision]`` from the server's upstream Hub as a new
        version of ``target`` (``[namespace/]name``): a ``mirror_import`` job.

        Returns the job's view; :meth:`wait_job` waits for it. The job publishes
        nothing (result ``skipped``) when that upstream commit is already mirrored.
        """
        return self.api.post("/v1/jobs", import_job_request(upstream, target, revision))

    def mirror_export(
        self, ref: str, upstream: str, *, private: bool | None = None
    ) -> dict[str, Any]:
        """Publish version ``ref`` to ``hf://org/repo`` on the server's upstream Hub: one
        commit on ``main`` (a ``mirror_export`` job; none when upstream already holds it).

        ``private`` sets the visibility of the upstream repo if the job creates it.
        Returns the job's view; :meth:`wait_job` waits for it.
        """
        return self.api.post("/v1/jobs", export_job_request(ref, upstream, private=private))

    def add_mirror(
        self,
        upstream: str,
        target: str,
        *,
        revision: str | None = None,
        every: str | int | None = None,
    ) -> dict[str, Any]:
        """Keep ``target`` in sync with ``upstream`` (``every``: ``6h``, seconds; None: only
        when :meth:`sync_mirrors` asks). Returns the mirror's view (``id``, ...)."""
        return self.api.post(
            "/v1/mirrors", mirror_request(upstream, target, revision=revision, every=every)
        )

    def mirrors(self, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """Mirrors visible to the caller, with their last sync (status, commit, time)."""
        return self.api.get("/v1/mirrors", params={"namespace": namespace} if namespace else None)

    def remove_mirror(self, mirror_id: int) -> dict[str, Any]:
        """Stop mirroring (versions already mirrored stay); returns the removed mirror."""
        return self.api.delete(f"/v1/mirrors/{int(mirror_id)}")

    def sync_mirrors(self, mirror_id: int | None = None) -> builtins.list[dict[str, Any]]:
        """Submit sync jobs: for one mirror now, or (None) for every due scheduled mirror.

        Returns ``[{"mirror", "submitted", "job"}]`` (``submitted`` False: a sync job of
        that mirror is still queued or running, and ``job`` is that one).
        """
        if mirror_id is None:
            return self.api.post("/v1/mirrors/sync", {})
        return [self.api.post(f"/v1/mirrors/{int(mirror_id)}/sync", {})]

    # ------------------------------------------------------------- models
    def adapter_name(self, ref: str | Ref) -> str:
        """The adapter name :meth:`load` uses for a ref (resolves it unless fully pinned)."""
        parsed = _parse(ref)
        if parsed.namespace and parsed.version is not None:
            return adapter_name_for(parsed.namespace, parsed.name, parsed.version)
        resolved = self.resolve(parsed)
        return adapter_name_for(resolved["namespace"], resolved["name"], resolved["version"])

    def load(
        self,
        model: Any,
        ref: str | Ref,
        adapter_name: str | None = None,
        is_trainable: bool = False,
    ) -> Any:
        """Pull ``ref`` and load it onto ``model`` as the active adapter; returns the PeftModel.

        The default adapter name is per version (``default__medical__v1``). Call
        again with other refs to stack several adapters on one base; switch with
        :meth:`use`, drop with :meth:`unload`. An explicit ``adapter_name`` that is
        already loaded is replaced by this ref's weights.
        """
        resolved, path = self._pull(ref)
        name = adapter_name or adapter_name_for(
            resolved["namespace"], resolved["name"], resolved["version"]
        )
        return load_adapter(
            model, path, name, is_trainable=is_trainable, replace=adapter_name is not None
        )

    def use(self, model: Any, ref_or_adapter_name: str) -> Any:
        """Activate an already loaded adapter, given its adapter name or its ref."""
        return use_adapter(model, self._loaded_name(model, ref_or_adapter_name))

    def unload(self, model: Any, ref_or_adapter_name: str) -> Any:
        """Delete a loaded adapter, given its adapter name or its ref; returns the model to use.

        That is the same PeftModel, or the plain base model once the last adapter is gone.
        """
        return unload_adapter(model, self._loaded_name(model, ref_or_adapter_name))

    def _loaded_name(self, model: Any, ref_or_adapter_name: str) -> str:
        config = getattr(model, "peft_config", None)
        if isinstance(config, dict) and ref_or_adapter_name in config:
            return ref_or_adapter_name
        return self.adapter_name(ref_or_adapter_name)


def _parse(ref: str | Ref) -> Ref:
    return ref if isinstance(ref, Ref) else parse_ref(ref)


def _same_adapter(manifest: Mapping[str, Any], ref: Ref) -> bool:
    if manifest.get("name") != ref.name:
        return False
    return ref.namespace is None or manifest.get("namespace") == ref.namespace


def _card_path(resolved: Mapping[str, Any]) -> str:
    """``/v1/adapters/{ns}/{name}/versions/{n}/card`` of a resolved version."""
    namespace, name = quote_path(resolved["namespace"]), quote_path(resolved["name"])
    return f"/v1/adapters/{namespace}/{name}/versions/{int(resolved['version'])}/card"


def _alias_path(namespace: str, name: str, alias: str) -> str:
    return f"/v1/adapters/{quote_path(namespace)}/{quote_path(name)}/aliases/{quote_path(alias)}"


def _parent(parent: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(parent, Mapping):
        if "ref" not in parent:
            raise ValidationFailedError(f"parent {parent!r} lacks 'ref'")
        return {"relation": Relation.CONTINUED_FROM, "params": {}, **parent}
    parse_ref(parent)
    return {"ref": parent, "relation": Relation.CONTINUED_FROM, "params": {}}


def _file_url(entry: Mapping[str, Any]) -> str:
    url = entry.get("url")
    if not isinstance(url, str) or not url:
        raise ServerError(f"the registry sent no download URL for {entry.get('path')!r}")
    return url


def _check_manifest(resolved: Any) -> None:
    """Reject a resolve/base-model answer the cache could not safely use."""
    if not isinstance(resolved, dict) or not isinstance(resolved.get("files"), list):
        raise ServerError("the registry's answer lacks a file list: is LOREG_URL a loreg registry?")
    digest_hex(resolved.get("digest"))
    seen = set()
    for entry in resolved["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
            raise ServerError(f"the registry sent a malformed file entry {entry!r}")
        check_sha256(entry.get("sha256"))
        rel = safe_relpath(entry.get("path"))
        if rel in seen:
            raise ServerError(f"the registry listed {rel} twice")
        seen.add(rel)
