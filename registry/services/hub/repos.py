"""Hub repo-level write calls: create a repo, validate a model card, create a branch.

A Hub model repo is a loreg adapter. ``create_repo`` creates the adapter row with
no version yet (a later commit publishes v1), so ``repo_info`` answers at once and
a second ``create_repo`` is a 409. Privacy belongs to the namespace in loreg, not
to the repo: a repo is as private as its namespace, and asking for the other
visibility is refused rather than silently ignored. ``hf upload`` sends no
visibility unless ``--private`` is given, so its default call always works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from loreg.errors import InvalidRefError
from loreg.refs import validate_adapter_name
from loreg.vocabulary import ArtifactKind
from registry.auth import Principal
from registry.errors import InvalidName
from registry.models import Adapter, Namespace
from registry.services import audit, catalog
from registry.services.hub.access import require_write, writable_repo
from registry.services.hub.errors import HubBadRequest

#: The repo types the Hub client names; loreg serves models only.
MODEL = "model"
_VISIBILITIES = {"public": False, "private": True}


@dataclass(frozen=True)
class CreatedRepo:
    """The outcome of ``create_repo``: the repo's URL and whether it already existed."""

    url: str
    existed: bool


def repo_url(base_url: str, namespace: str, name: str) -> str:
    """The repo's URL as the client parses it (``RepoUrl``: under its endpoint)."""
    return f"{base_url.rstrip('/')}/hf/{namespace}/{name}"


def _wanted_private(body: dict[str, Any]) -> bool | None:
    """The privacy the request asks for (``visibility`` or the older ``private``), if any."""
    visibility = body.get("visibility")
    if visibility is not None:
        if visibility not in _VISIBILITIES:
            raise HubBadRequest(
                f"visibility {visibility!r} is not served: loreg repos are 'public' or 'private'"
            )
        return _VISIBILITIES[visibility]
    private = body.get("private")
    if private is not None and not isinstance(private, bool):
        raise HubBadRequest("'private' must be true or false")
    return private


def _checked_body(body: dict[str, Any], principal: Principal) -> tuple[str, str, bool | None]:
    """``(namespace, name, private)`` of a ``create_repo`` body, or a 4xx naming the problem."""
    repo_type = body.get("type") or MODEL
    if repo_type != MODEL:
        raise HubBadRequest(
            f"loreg hosts model repos (LoRA adapters) only, not {repo_type!r} repos"
        )
    name, org = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not (org is None or isinstance(org, str)):
        raise HubBadRequest("'name' (and 'organization', if given) must be strings")
    try:
        validate_adapter_name(name)
    except InvalidRefError as exc:
        raise InvalidName(str(exc)) from exc
    namespace = catalog.checked_name(org or principal.default_namespace, "namespace")
    return namespace, name, _wanted_private(body)


def _namespace(
    session: Session, principal: Principal, name: str, private: bool | None
) -> Namespace:
    """The namespace to create the repo in, if the caller may write there.

    A namespace that does not exist yet is created public (as a first publish does);
    a private one must be created first by an admin (``loreg namespace create --private``).
    """
    ns = catalog.get_namespace(session, name)
    if ns is None:
        if private:
            raise HubBadRequest(
                f"namespace '{name}' does not exist; loreg keeps privacy per namespace, so "
                f"an admin creates it private first (`loreg namespace create {name} --private`)"
            )
        require_write(principal, name, False)
        ns = Namespace(name=name, private=False)
        session.add(ns)
        session.flush()
        audit.record(
            session,
            principal,
            "namespace.create",
            namespace=name,
            before=None,
            after={"name": name, "private": False},
        )
        return ns
    require_write(principal, ns.name, ns.private)
    return ns


def create_repo(
    session: Session, principal: Principal, body: dict[str, Any], base_url: str
) -> CreatedRepo:
    """``POST /api/repos/create``: the adapter row, created with no version (in ``session``).

    An existing repo is not an error here: ``existed`` is True (the route answers 409
    with the URL, which ``create_repo(exist_ok=True)`` reads). The requested
    visibility is checked only for a new repo, as on the Hub.
    """
    namespace, name, private = _checked_body(body, principal)
    ns = _namespace(session, principal, namespace, private)
    url = repo_url(base_url, ns.name, name)
    existing = session.exec(
        select(Adapter).where(Adapter.namespace_id == ns.id, Adapter.name == name)
    ).first()
    if existing is not None:
        if existing.kind != ArtifactKind.ADAPTER:
            raise HubBadRequest(
                f"'{ns.name}/{name}' is a loreg {existing.kind}, not a model repo: "
                "choose another name"
            )
        return CreatedRepo(url, existed=True)
    if private is not None and private != ns.private:
        state = "private" if ns.private else "public"
        raise HubBadRequest(
            f"namespace '{ns.name}' is {state} and loreg keeps privacy per namespace, so its "
            f"repos are {state} too: leave out --private/visibility, or use a "
            f"{'public' if ns.private else 'private'} namespace"
        )
    assert ns.id is not None, "a namespace read or flushed has an id"
    adapter = Adapter(namespace_id=ns.id, name=name, kind=ArtifactKind.ADAPTER.value)
    session.add(adapter)
    try:
        session.flush()
    except sa.exc.IntegrityError:  # created concurrently by another request
        session.rollback()
        return CreatedRepo(url, existed=True)
    audit.record(
        session,
        principal,
        "adapter.create",
        namespace=ns.name,
        target=name,
        before=None,
        after={"name": name, "kind": ArtifactKind.ADAPTER.value},
    )
    return CreatedRepo(url, existed=False)


def validate_yaml(body: dict[str, Any]) -> list[dict[str, str]]:
    """``POST /api/validate-yaml``: problems of a model card's front matter (none = valid).

    loreg stores the card as a text file and reads none of its metadata, so only the
    structure is checked: a front matter opened by ``---`` must be closed by ``---``.
    """
    content = body.get("content")
    if not isinstance(content, str):
        return [{"message": "'content' must be the text of README.md"}]
    lines = content.splitlines()
    if not lines or lines[0].strip() != "---":
        return []
    if not any(line.strip() == "---" for line in lines[1:]):
        return [
            {
                "message": "README.md starts a YAML front matter with '---' "
                "but never closes it with a '---' line"
            }
        ]
    return []


def create_branch(
    session: Session, principal: Principal, namespace: str, name: str, branch: str
) -> None:
    """``POST /api/models/{repo}/branch/{branch}``: refused (400) with what to do instead.

    loreg versions are a line, not a branch graph: ``main`` is the newest version and
    other names are aliases, moved with ``loreg alias set``. The repo is still checked
    first, so an unreadable one answers RepoNotFound and a read-only token 403.
    """
    writable_repo(session, principal, namespace, name)
    raise HubBadRequest(
        f"loreg repos have one branch, 'main' (each commit publishes the next version); "
        f"branch {branch!r} cannot be created. Upload to main (no --revision) and point an "
        "alias at the version with `loreg alias set`"
    )
