"""Typed Hub errors: the ``X-Error-Code`` values the stock client turns into exceptions.

``huggingface_hub`` types its errors by the ``X-Error-Code`` header, not by the
status (over plain ``http://`` a bare 404 is only an ``HfHubHTTPError``), so every
refusal of a Hub call that the client should recognise carries one of these codes.
"""

from __future__ import annotations

from registry.errors import Conflict, NotFound, RegistryError


class HubNotFound(NotFound):
    """Base: a 404 that names its Hub error code (``hub_code``)."""

    hub_code = ""


class RepoNotFound(HubNotFound):
    """The repo does not exist or is private to the caller (``RepositoryNotFoundError``)."""

    hub_code = "RepoNotFound"


class RevisionNotFound(HubNotFound):
    """The revision names no version, alias or commit (``RevisionNotFoundError``)."""

    hub_code = "RevisionNotFound"


class EntryNotFound(HubNotFound):
    """The path is not in the revision's tree (``RemoteEntryNotFoundError``).

    ``commit`` (the revision's commit id) goes out as ``X-Repo-Commit`` so the client
    caches the miss under ``.no_exist/<commit>/``.
    """

    hub_code = "EntryNotFound"

    def __init__(self, message: str, *, commit: str | None = None):
        super().__init__(message)
        self.commit = commit


class ParentCommitMismatch(Conflict):
    """A commit's ``parentCommit`` is not the head of its revision any more (412).

    The stock client sends it only when asked (``create_commit(parent_commit=...)``),
    to commit on top of exactly that state.
    """

    status = 412
    code = "precondition_failed"


class HubBadRequest(RegistryError):
    """A Hub call loreg does not serve as asked (another repo type, a branch, ...): 400."""

    status = 400
    code = "bad_request"
