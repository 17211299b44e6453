"""Reading every page of a paginated list in tests (``{"items", "next_cursor"}``)."""

from __future__ import annotations

import httpx


def all_items(api: httpx.Client, path: str, **params) -> list[dict]:
    """Every item of the list at ``path``, following ``next_cursor`` to the last page."""
    items: list[dict] = []
    query = dict(params)
    while True:
        r = api.get(path, params=query)
        assert r.status_code == 200, r.text
        items.extend(r.json()["items"])
        if r.json()["next_cursor"] is None:
            return items
        query["cursor"] = r.json()["next_cursor"]
