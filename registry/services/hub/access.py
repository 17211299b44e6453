"""Who may write a Hub repo, and which revision a Hub commit may target.

Writes need the ``write`` scope on the repo's namespace. A repo the caller cannot
read answers RepoNotFound (private namespaces are not revealed); one it can read
but not write answers 403 with the scope it lacks.

Commits go to ``main`` only: each one publishes the next version of the adapter.
Aliases (``prod``) and version labels (``vN``) are read-only revisions here; an
alias is moved with ``loreg alias set``, not by a Hub commit.
"""

from __future__ import annotations

from sqlmodel import Session

from registry.auth import Principal, require_scope
from registry.errors import Unauthorized
from registry.models import Adapter, Namespace
from registry.services.hub.errors import HubBadRequest
from registry.services.hub.revisions import MAIN, get_repo

#: Revisions a Hub commit may name (``main``; the client quotes nothing else here).
COMMIT_REVISIONS = frozenset({MAIN})


def writable_repo(
    session: Session, principal: Principal, namespace: str, name: str
) -> tuple[Namespace, Adapter]:
    """The repo if the caller may write it: RepoNotFound if unreadable, 401/403 if read-only."""
    ns, adapter = get_repo(session, principal, namespace, name)
    require_write(principal, ns.name, ns.private)
    return ns, adapter


def require_write(principal: Principal, namespace: str, private: bool) -> None:
    """:func:`require_scope` ``write``, with a Hub client's hint when no token was sent."""
    try:
        require_scope(principal, namespace, private, "write")
    except Unauthorized:
        raise Unauthorized(
            f"writing to namespace '{namespace}' needs a loreg token with 'write' scope: "
            "set HF_TOKEN to it (or pass token=...)"
        ) from None


def check_commit_revision(revision: str) -> None:
    """400 unless ``revision`` is one a Hub commit may target (``main``)."""
    if revision not in COMMIT_REVISIONS:
        raise HubBadRequest(
            f"loreg takes Hub commits on 'main' only (each commit publishes the next version), "
            f"not on {revision!r}; upload without --revision, then point an alias at the new "
            "version with `loreg alias set`"
        )


def refuse_pull_request(create_pr: str | None) -> None:
    """400 for ``?create_pr=1``: loreg has no pull requests (a commit publishes at once)."""
    if create_pr not in (None, "", "0", "false"):
        raise HubBadRequest(
            "loreg does not serve pull requests: each commit to main publishes a version "
            "at once; upload without create_pr"
        )
