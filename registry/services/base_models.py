"""Reading base-model catalog entries."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from registry.errors import NotFound
from registry.models import (
    BaseModelFile,
    BaseModelRecord,
    BlobFault,
)
from registry.services import fsck, lineage
from registry.services.context import Context
from registry.services.pagination import Page, PageRequest, SortKey, paginate
from registry.services.repair import render
from registry.services.urls import blob_download_url


def get_base_model(session: Session, name: str) -> BaseModelRecord:
    """The base model named ``name``, else 404."""
    bm = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()
    if bm is None:
        raise NotFound(f"base model '{name}' not found: register it with `loreg base push`")
    return bm


def base_model_summary(bm: BaseModelRecord) -> dict[str, Any]:
    """The list view of a base model."""
    return {
        "name": bm.name,
        "revision": bm.revision,
        "architecture": bm.architecture,
        "model_type": bm.model_type,
        "module_count": len(bm.modules or {}),
        "digest": bm.digest,
        "size": bm.size,
        "created_at": bm.created_at.isoformat(),
    }


def base_model_lineage(session: Session, bm: BaseModelRecord) -> list[dict[str, Any]]:
    """The lineage parents of a base model (a merge result: the adapter and the base).

    The base-model catalog is public, so a parent version in a private namespace
    is listed without its ref or digest.
    """
    return lineage.parents_of(session, lineage.node_of(bm))


def base_model_view(
    session: Session, ctx: Context, bm: BaseModelRecord, base_url: str
) -> dict[str, Any]:
    """The full view: config, module shapes, lineage, files with download URLs."""
    rows = session.exec(
        select(BaseModelFile, BlobFault.problem)
        .outerjoin(BlobFault, col(BlobFault.sha256) == BaseModelFile.blob_sha256)
        .where(BaseModelFile.base_model_id == bm.id)
        .order_by(col(BaseModelFile.path))
    ).all()
    fsck.check_files_present(bm.name, [(f.path, problem) for f, problem in rows])
    files = [f for f, _ in rows]
    out = base_model_summary(bm)
    out.update(
        config=render(bm.config),
        modules=bm.modules or {},
        metadata=render(bm.meta) or {},
        lineage=base_model_lineage(session, bm),
        files=[
            {
                "path": f.path,
                "size": f.size,
                "sha256": f.blob_sha256,
                "url": blob_download_url(ctx, base_url, f.blob_sha256, f.path.rsplit("/", 1)[-1]),
            }
            for f in files
        ],
    )
    return out


def list_base_models(session: Session, page: PageRequest) -> Page[Any]:
    """A page of the registered base models by name (the base-model catalog is public)."""
    return paginate(
        session,
        select(BaseModelRecord),
        (SortKey(col(BaseModelRecord.name)),),
        page,
        scope="base-models",
        key_of=lambda bm: (bm.name,),
        render=base_model_summary,
    )
