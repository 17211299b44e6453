"""What a trusted server-side publisher hands the publish service: files, lineage, the spec.

These are plain data types. :func:`registry.services.publish.publish_server_side`
takes a :class:`PublishSpec`; its lineage is a list of :class:`ParentLink`, each
naming a parent already resolved to a row id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from loreg.vocabulary import ArtifactKind, JobRelation, Relation
from registry.models import LineageEdge

#: The keys of a lineage edge as an upload session's spec keeps it (:meth:`ParentLink.to_spec`).
_SPEC_KEYS = frozenset(
    {"relation", "parent_version_id", "parent_base_model_id", "parent_upstream_id", "params"}
)


def parse_relation(text: str) -> Relation | JobRelation:
    """The relation named ``text``: one a client may declare, or one only jobs record."""
    try:
        return Relation(text)
    except ValueError:
        pass
    try:
        return JobRelation(text)
    except ValueError:
        known = ", ".join([*Relation, *JobRelation])
        raise ValueError(f"unknown lineage relation {text!r} (known: {known})") from None


@dataclass(frozen=True)
class ParentLink:
    """One lineage edge to write: ``relation`` to a parent already resolved to its row id.

    Exactly one of ``version_id`` (an adapter or dataset version), ``base_model_id``
    and ``upstream_id`` (an :class:`~registry.models.UpstreamCommit`, the parent of a
    mirrored version) is set. The caller vouches that it may read the parent:
    nothing resolves or checks it again.
    """

    relation: Relation | JobRelation
    version_id: int | None = None
    base_model_id: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    upstream_id: int | None = None

    def __post_init__(self) -> None:
        """Coerce ``relation`` to its enum (a plain string is accepted); refuse an edge
        with no parent or two."""
        ids = (self.version_id, self.base_model_id, self.upstream_id)
        given = [i for i in ids if i is not None]
        if len(given) != 1:
            raise ValueError(
                "a lineage parent is a version, a base model or an upstream commit: "
                "give exactly one id"
            )
        object.__setattr__(self, "relation", parse_relation(self.relation))

    @classmethod
    def from_spec(cls, data: Mapping[str, Any]) -> ParentLink:
        """A link from its JSON form (``relation``, ``parent_version_id``,
        ``parent_base_model_id`` or ``parent_upstream_id``, ``params``), as
        :meth:`to_spec` writes it."""
        unknown = set(data) - _SPEC_KEYS
        if unknown:
            raise ValueError(f"unknown lineage edge fields: {', '.join(sorted(unknown))}")
        return cls(
            relation=parse_relation(data["relation"]),
            version_id=data.get("parent_version_id"),
            base_model_id=data.get("parent_base_model_id"),
            upstream_id=data.get("parent_upstream_id"),
            params=dict(data.get("params") or {}),
        )

    def to_spec(self) -> dict[str, Any]:
        """The JSON form an upload session keeps until its commit writes the edge."""
        spec: dict[str, Any] = {
            "relation": self.relation.value,
            "parent_version_id": self.version_id,
            "parent_base_model_id": self.base_model_id,
            "params": self.params,
        }
        if self.upstream_id is not None:
            spec["parent_upstream_id"] = self.upstream_id
        return spec

    def edge(
        self, *, child_version_id: int | None = None, child_base_model_id: int | None = None
    ) -> LineageEdge:
        """The ``lineage_edges`` row from the given child to this parent."""
        return LineageEdge(
            child_version_id=child_version_id,
            child_base_model_id=child_base_model_id,
            relation=self.relation.value,
            parent_version_id=self.version_id,
            parent_base_model_id=self.base_model_id,
            parent_upstream_id=self.upstream_id,
            params=self.params,
        )


@dataclass(frozen=True)
class StoredBlob:
    """A blob the store already holds, named by its sha256 (64 lowercase hex) and size.

    Publishing it sends no bytes, so the caller must be allowed to reuse it
    (:func:`registry.services.publish.held_by`: a version it can read holds it, or
    it uploaded the bytes itself); otherwise the publish is refused with
    :class:`registry.errors.MissingBlob`.
    """

    sha256: str
    size: int


@dataclass(frozen=True)
class PublishFile:
    """One file to publish: its path in the version and its bytes.

    ``source`` is a local file (read twice: hashed, then stored if the store lacks
    it), a binary stream (read once, from where it stands, into a temporary file)
    or a :class:`StoredBlob` already in the store (nothing is read).
    """

    path: str
    source: Path | BinaryIO | StoredBlob


def folder_files(folder: Path) -> list[PublishFile]:
    """Every file under ``folder``, by path relative to it (``/``-separated, sorted)."""
    return [
        PublishFile(path.relative_to(folder).as_posix(), path)
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
    ]


@dataclass(frozen=True, kw_only=True)
class PublishSpec:
    """What a trusted server-side publisher registers (the fields of an HTTP upload and more).

    ``namespace`` is ignored for a base model (a global catalog). ``job_id`` is an
    idempotency key: a second publish with the same one returns what the first
    registered. ``lineage`` is written as given, before the edge the content
    implies (an adapter is ``trained_from`` its base model when that is registered).
    """

    kind: ArtifactKind
    name: str
    files: Sequence[PublishFile]
    namespace: str | None = None
    base_model: str | None = None
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None
    job_id: str | None = None
    lineage: Sequence[ParentLink] = ()
