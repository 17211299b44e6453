"""The upstream Hub as mirror jobs see it: the stock ``huggingface_hub`` client, nothing else.

Every call names the endpoint (``LOREG_HUB_URL``) and the token (``LOREG_HUB_TOKEN``,
or ``False``: no token at all, so a token stored on the worker's machine for
huggingface.co is never sent to another upstream). Files land in the client's
own cache under the worker's data dir (``<data_dir>/hf-cache``), stable across
attempts: a retried job downloads only the files an earlier attempt did not
finish (huggingface_hub 2.x restarts a partly downloaded file: its temporary
file is per process).

Offline mode is honoured, not overridden: huggingface_hub reads ``HF_HUB_OFFLINE``
once at import (``constants.HF_HUB_OFFLINE``) and refuses every request while it
is set. A worker that should mirror must run without it; :func:`check_online`
fails the job with that advice instead of a confusing connection error. (Setting
the module constant for one job would leak into every other thread of the
process.)

Errors become the runner's: a missing repo or revision, or a refused token, fails
the job with a message that says what to check (:class:`JobInputError`); 5xx,
429 and network errors are transient (:class:`TransientJobError`, retried).

Export (loreg -> upstream, the ``mirror_export`` job) uses :meth:`Upstream.publish`
on the same settings: one commit per exported version, none when the upstream's
``main`` already holds exactly these files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loreg.hub_refs import format_upstream
from workers.errors import JobInputError
from workers.runner import TransientJobError

TOKEN_HINT = "set LOREG_HUB_TOKEN to a token that can read it"


@dataclass(frozen=True)
class UpstreamSnapshot:
    """A repo at one commit: what the revision resolved to, and the files it holds."""

    repo_id: str
    revision: str | None
    commit: str
    files: tuple[str, ...]


def check_online() -> None:
    """Raise JobInputError when huggingface_hub's offline mode is on in this process."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise JobInputError(
            "HF_HUB_OFFLINE is set in this worker's environment, so the Hugging Face client "
            "refuses to reach the upstream hub: run the worker without HF_HUB_OFFLINE "
            "(and TRANSFORMERS_OFFLINE) to mirror"
        )


class Upstream:
    """One upstream hub (URL, token) and the cache folder its files are downloaded to."""

    def __init__(self, hub_url: str, token: str | None, cache_dir: Path):
        self.hub_url = hub_url
        self.token: str | bool = token or False
        self.cache_dir = cache_dir

    def resolve(self, repo_id: str, revision: str | None) -> UpstreamSnapshot:
        """The commit ``revision`` names now (``HfApi.repo_info(...).sha``) and its files."""
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.hub_url, token=self.token)
        what = format_upstream(repo_id, revision)
        with self._errors(what, revision):
            info = api.repo_info(repo_id, revision=revision, repo_type="model")
        if not info.sha:
            raise JobInputError(f"upstream {what} at {self.hub_url} has no commit yet")
        files = tuple(sorted(s.rfilename for s in info.siblings or ()))
        return UpstreamSnapshot(repo_id, revision, info.sha, files)

    def publish(
        self, repo_id: str, folder: Path, message: str, *, private: bool | None = None
    ) -> tuple[str, bool]:
        """Make ``main`` of ``repo_id`` hold exactly the files of ``folder``: one commit.

        Creates the repo if missing. Returns (the upstream commit, whether it was
        skipped because ``main`` already held these files). ``.gitattributes`` upstream
        is never deleted (the Hub needs it).
        """
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

        api = HfApi(endpoint=self.hub_url, token=self.token)
        what = format_upstream(repo_id)
        with self._errors(what, None):
            api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
            remote = self._remote_files(api, repo_id)
        local = {
            p.relative_to(folder).as_posix(): _file_ids(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        changed = [path for path, ids in local.items() if remote.get(path) not in ids]
        stale = [p for p in remote if p not in local and p != ".gitattributes"]
        if not changed and not stale:
            with self._errors(what, None):
                sha = api.repo_info(repo_id, repo_type="model").sha
            return sha or "", True
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path))
            for path in changed
        ]
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        with self._errors(what, None):
            info = api.create_commit(
                repo_id, operations=operations, commit_message=message, repo_type="model"
            )
        return info.oid, False

    def _remote_files(self, api: Any, repo_id: str) -> dict[str, str]:
        """``main``'s files upstream: path -> sha256 (LFS) or git blob hash; {} if empty."""
        from huggingface_hub import errors as hf

        try:
            entries = list(api.list_repo_tree(repo_id, recursive=True, repo_type="model"))
        except (hf.RevisionNotFoundError, hf.RemoteEntryNotFoundError):
            return {}  # a repo with no commit yet
        out = {}
        for entry in entries:
            if hasattr(entry, "size"):  # a file (folders have no size)
                out[entry.path] = entry.lfs.sha256 if entry.lfs else entry.blob_id
        return out

    def download(self, snapshot: UpstreamSnapshot, path: str) -> Path:
        """One file of the snapshot, from the cache or the hub (at the pinned commit)."""
        from huggingface_hub import hf_hub_download

        what = format_upstream(snapshot.repo_id, snapshot.commit)
        with self._errors(what, snapshot.commit):
            local = hf_hub_download(
                snapshot.repo_id,
                path,
                revision=snapshot.commit,
                repo_type="model",
                cache_dir=self.cache_dir,
                endpoint=self.hub_url,
                token=self.token,
            )
        return Path(local)

    @contextmanager
    def _errors(self, what: str, revision: str | None) -> Iterator[None]:
        """The Hugging Face client's errors as the runner's (see the module docstring)."""
        from huggingface_hub import errors as hf

        try:
            yield
        except hf.OfflineModeIsEnabled:
            check_online()
            raise
        except hf.GatedRepoError:
            raise JobInputError(
                f"upstream {what} at {self.hub_url} is gated: accept its terms on the hub "
                f"and {TOKEN_HINT}"
            ) from None
        except hf.RepositoryNotFoundError:
            raise JobInputError(
                f"upstream {what} not found at {self.hub_url}: check the repo name; if it is "
                f"private, {TOKEN_HINT}"
            ) from None
        except hf.RevisionNotFoundError:
            raise JobInputError(
                f"revision {revision!r} not found in upstream {what} at {self.hub_url}"
            ) from None
        except hf.RemoteEntryNotFoundError as exc:
            raise JobInputError(
                f"upstream {what} at {self.hub_url} no longer serves a file it lists: {exc}"
            ) from None
        except hf.HfHubHTTPError as exc:
            raise _http_error(exc, what, self.hub_url) from exc
        except Exception as exc:
            if _is_network_error(exc):
                raise TransientJobError(
                    f"upstream {self.hub_url} unreachable ({type(exc).__name__}: {exc})"
                ) from exc
            raise


def _file_ids(path: Path) -> tuple[str, str]:
    """A file's sha256 and its git blob hash: how the Hub names LFS and regular files."""
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\x00" % path.stat().st_size, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            git.update(chunk)
    return sha256.hexdigest(), git.hexdigest()


def _http_error(exc: Any, what: str, hub_url: str) -> Exception:
    status = getattr(getattr(exc, "response", None), "status_code", 0) or 0
    if status >= 500 or status == 429:
        return TransientJobError(f"upstream {hub_url} answered {status} for {what}; retrying")
    if status in (401, 403):
        return JobInputError(
            f"upstream {hub_url} refused access to {what} ({status}): {TOKEN_HINT}"
        )
    return JobInputError(f"upstream {hub_url} answered {status} for {what}: {exc}")


def _is_network_error(exc: BaseException) -> bool:
    """Connection refused, reset, timed out: the HTTP client's transport errors."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    try:
        import httpx2
    except ImportError:  # pragma: no cover - huggingface_hub depends on it
        return False
    return isinstance(exc, httpx2.TransportError)
