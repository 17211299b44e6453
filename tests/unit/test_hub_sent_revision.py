"""A revision with ``/`` arrives percent-encoded in one path segment; routes re-split it.

Starlette matches the decoded path, so ``tree/refs%2Fheads%2Fprod/docs`` is routed as
revision ``refs`` and path ``heads/prod/docs``; ``sent_revision`` reads the raw path.
"""

from __future__ import annotations

import pytest
from starlette.requests import Request

from registry.api.routes.hub_read import sent_revision

TREE, RESOLVE = 6, 4


def _request(raw_path: str) -> Request:
    return Request({"type": "http", "method": "GET", "raw_path": raw_path.encode(), "path": ""})


@pytest.mark.parametrize(
    ("raw", "offset", "routed", "sent"),
    [
        # the encoded slash: one revision
        (
            "/hf/api/models/ns/a/tree/refs%2Fheads%2Fprod/docs%2Fdeep",
            TREE,
            ("refs", "heads/prod/docs/deep"),
            ("refs/heads/prod", "docs/deep"),
        ),
        (
            "/hf/api/models/ns/a/tree/refs%2Ftags%2Fv1",
            TREE,
            ("refs", "tags/v1"),
            ("refs/tags/v1", ""),
        ),
        (
            "/hf/ns/a/resolve/refs%2fheads%2fmain/x%20y.json",
            RESOLVE,
            ("refs", "heads/main/x y.json"),
            ("refs/heads/main", "x y.json"),
        ),
        # a plain slash: an alias called "refs" and a folder "heads" stay as routed
        (
            "/hf/api/models/ns/a/tree/refs/heads/prod",
            TREE,
            ("refs", "heads/prod"),
            ("refs", "heads/prod"),
        ),
        ("/hf/ns/a/resolve/main/a/b.json", RESOLVE, ("main", "a/b.json"), ("main", "a/b.json")),
        # an adapter or namespace called "hf" or "resolve" does not shift the count
        (
            "/hf/hf/resolve/resolve/refs%2Fheads%2Fx/f.json",
            RESOLVE,
            ("refs", "heads/x/f.json"),
            ("refs/heads/x", "f.json"),
        ),
    ],
)
def test_sent_revision(raw, offset, routed, sent):
    assert sent_revision(_request(raw), offset, *routed) == sent


def test_without_a_raw_path_the_routing_stands():
    request = Request({"type": "http", "method": "GET", "path": "/hf/ns/a/resolve/x/y"})
    assert sent_revision(request, RESOLVE, "x", "y") == ("x", "y")
