"""Hub repos and revisions mapped onto loreg adapters and versions.

A Hub repo ``ns/name`` is the adapter ``ns/name``. A revision is one of:

* ``main`` (or ``latest``): the newest version not yanked (``loreg yank``);
* ``vN``: version N;
* an alias name (``prod``);
* a commit id: the first 40 hex digits of the version digest (the client treats only
  40-hex revisions as commit hashes, so only those hit its cache without a request);
* the full digest, as 64 hex digits or ``sha256:<hex>``;
* the full ref names :func:`refs` lists: ``refs/heads/main``, ``refs/heads/<alias>``,
  ``refs/tags/vN``.

The first that matches wins (:func:`parse_revision`): ``main`` always means the
newest version, even if an alias of that name exists, and a 40-hex string is always
a commit id, never an alias (the client caches a commit id's files forever, so it
must never name something that moves).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from sqlmodel import Session, col, select

from loreg.errors import InvalidRefError
from loreg.refs import MAX_VERSION, validate_alias, validate_name
from registry.auth import Principal
from registry.errors import NotFound
from registry.models import Adapter, Alias, Namespace, Version
from registry.services import catalog
from registry.services.hub.errors import RepoNotFound, RevisionNotFound

#: The branch every Hub client asks for by default.
MAIN = "main"
_LATEST = frozenset({MAIN, "latest"})
_NUMBER = re.compile(r"v([1-9][0-9]{0,9})")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_FULL_DIGEST = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_BRANCH_REF = "refs/heads/"
_TAG_REF = "refs/tags/"
COMMIT_ID_LENGTH = 40


@dataclass(frozen=True)
class Latest:
    """``main`` / ``latest``: the newest version."""


@dataclass(frozen=True)
class Number:
    """``vN``: the version numbered ``number``."""

    number: int


@dataclass(frozen=True)
class Commit:
    """A 40-hex commit id: the version whose digest starts with it."""

    prefix: str


@dataclass(frozen=True)
class Digest:
    """A full digest (``sha256:<64 hex>``)."""

    digest: str


@dataclass(frozen=True)
class AliasName:
    """An alias of the adapter."""

    name: str


#: What a revision string selects.
Selector: TypeAlias = Latest | Number | Commit | Digest | AliasName


def parse_revision(revision: str) -> Selector | None:
    """What ``revision`` selects, by the precedence of the module docstring; None for nothing.

    No database is read: None means no version can match (RevisionNotFound).
    """
    if revision.startswith(_BRANCH_REF):
        branch = revision.removeprefix(_BRANCH_REF)
        return Latest() if branch == MAIN else _alias(branch)
    if revision.startswith(_TAG_REF):
        tag = _NUMBER.fullmatch(revision.removeprefix(_TAG_REF))
        return _number(tag.group(1)) if tag else None
    if revision in _LATEST:
        return Latest()
    if match := _NUMBER.fullmatch(revision):
        return _number(match.group(1))
    if _COMMIT.fullmatch(revision):
        return Commit(revision)
    if match := _FULL_DIGEST.fullmatch(revision):
        return Digest(f"sha256:{match.group(1)}")
    return _alias(revision)


def _number(digits: str) -> Number | None:
    number = int(digits)
    return Number(number) if number <= MAX_VERSION else None


def _alias(name: str) -> AliasName | None:
    """An alias selector if ``name`` could be an alias (catalog.set_alias's rules), else None."""
    try:
        validate_alias(name)
    except InvalidRefError:
        return None
    return AliasName(name)


def commit_id(version: Version) -> str:
    """The version's Hub commit id: the first 40 hex digits of its digest."""
    return version.digest.removeprefix("sha256:")[:COMMIT_ID_LENGTH]


@dataclass(frozen=True)
class HubRevision:
    """A resolved revision: the namespace, adapter and version rows and the commit id."""

    namespace: Namespace
    adapter: Adapter
    version: Version

    @property
    def commit(self) -> str:
        """The version's 40-hex commit id."""
        return commit_id(self.version)

    @property
    def repo_id(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace.name}/{self.adapter.name}"


def repo_not_found(namespace: str, name: str) -> RepoNotFound:
    """The one answer for a repo that is missing, malformed or private to the caller."""
    return RepoNotFound(
        f"repository '{namespace}/{name}' not found: check the name, and that your token "
        "(HF_TOKEN) may read its namespace"
    )


def get_repo(
    session: Session, principal: Principal, namespace: str, name: str
) -> tuple[Namespace, Adapter]:
    """The adapter a Hub repo id names, if the caller may read it; else RepoNotFound."""
    try:
        validate_name(namespace, "namespace")
        validate_name(name, "adapter name")
        ns, adapter = catalog.get_adapter(session, principal, namespace, name)
    except (InvalidRefError, NotFound) as exc:
        raise repo_not_found(namespace, name) from exc
    if adapter.kind != "adapter":
        raise repo_not_found(namespace, name)
    return ns, adapter


def latest_version(session: Session, adapter: Adapter) -> Version | None:
    """The adapter's newest version not yanked (``main``), None when it has none."""
    return session.exec(
        select(Version)
        .where(Version.adapter_id == adapter.id, col(Version.yanked_at).is_(None))
        .order_by(col(Version.number).desc())
        .limit(1)
    ).first()


def _has_versions(session: Session, adapter: Adapter) -> bool:
    found = session.exec(select(Version.id).where(Version.adapter_id == adapter.id)).first()
    return found is not None


def find_version(session: Session, adapter: Adapter, revision: str) -> Version:
    """The version a revision names on ``adapter``; RevisionNotFound otherwise."""
    version = _lookup(session, adapter, revision)
    if version is None and not _has_versions(session, adapter):
        raise RevisionNotFound(
            f"revision '{revision}' not found: the repository has no version yet "
            "(push one with loreg push or hf upload first)"
        )
    if version is None and isinstance(parse_revision(revision), Latest):
        raise RevisionNotFound(
            f"revision '{revision}' not found: every version is yanked; "
            "use vN or a commit id, or unyank one with loreg unyank"
        )
    if version is None:
        raise RevisionNotFound(
            f"revision '{revision}' not found: use main, vN, an alias, "
            "or a commit id from list_repo_refs / list_repo_commits"
        )
    return version


def _lookup(session: Session, adapter: Adapter, revision: str) -> Version | None:
    query = select(Version).where(Version.adapter_id == adapter.id)
    match parse_revision(revision):
        case Latest():
            return latest_version(session, adapter)
        case Number(number):
            return session.exec(query.where(Version.number == number)).first()
        case Commit(prefix):
            starts = col(Version.digest).startswith(f"sha256:{prefix}")
            return session.exec(query.where(starts)).first()
        case Digest(digest):
            return session.exec(query.where(Version.digest == digest)).first()
        case AliasName(name):
            alias = session.exec(
                select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == name)
            ).first()
            return None if alias is None else session.get(Version, alias.version_id)
    return None


def resolve_revision(
    session: Session, principal: Principal, namespace: str, name: str, revision: str
) -> HubRevision:
    """The readable repo and the version ``revision`` names (RepoNotFound/RevisionNotFound)."""
    ns, adapter = get_repo(session, principal, namespace, name)
    return HubRevision(ns, adapter, find_version(session, adapter, revision))
