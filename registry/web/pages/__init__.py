"""The page routes; :data:`router` holds them all (none is in the OpenAPI schema)."""

from __future__ import annotations

from fastapi import APIRouter

from registry.web.pages import account, browse, catalog_pages, jobs, versions

router = APIRouter(include_in_schema=False)
for _module in (browse, versions, catalog_pages, jobs, account):
    router.include_router(_module.router)

__all__ = ["router"]
