"""Which version a Hub revision string selects, and in what order the forms are tried.

``parse_revision`` reads no database, so the precedence is checked here without a
server; the integration tests (tests/integration/test_hub_read.py) check the lookups.
"""

from __future__ import annotations

import pytest

from registry.services.hub.revisions import (
    AliasName,
    Commit,
    Digest,
    Latest,
    Number,
    parse_revision,
)

HEX40 = "0123456789abcdef" * 2 + "01234567"
HEX64 = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("revision", "selects"),
    [
        ("main", Latest()),
        ("latest", Latest()),
        ("refs/heads/main", Latest()),
        ("v1", Number(1)),
        ("v42", Number(42)),
        ("v2147483647", Number(2147483647)),
        ("refs/tags/v3", Number(3)),
        (HEX40, Commit(HEX40)),
        (HEX64, Digest(f"sha256:{HEX64}")),
        (f"sha256:{HEX64}", Digest(f"sha256:{HEX64}")),
        ("prod", AliasName("prod")),
        ("refs/heads/prod", AliasName("prod")),
        ("release-2.0_rc", AliasName("release-2.0_rc")),
        # a 64-hex prefix of 40 digits is a commit id, a 41-63 digit one is an alias name
        (HEX64[:41], AliasName(HEX64[:41])),
    ],
)
def test_revision_forms(revision, selects):
    assert parse_revision(revision) == selects


def test_main_is_the_newest_version_before_any_alias_named_main():
    # an alias may be called "main" (the alias grammar allows it); the branch wins
    assert parse_revision("main") == Latest()
    assert parse_revision("refs/heads/main") == Latest()


def test_a_commit_shaped_string_is_never_an_alias():
    # the client caches a 40-hex revision's files forever: it must not name a movable alias
    assert parse_revision(HEX40) == Commit(HEX40)


@pytest.mark.parametrize(
    "revision",
    [
        "",
        "v0",  # versions start at 1
        "v01",  # not the canonical tag name v1
        "v2147483648",  # past the largest version number
        "refs/tags/prod",  # tags are version labels only
        "refs/tags/",
        "refs/heads/",
        "refs/pr/1",
        "HEAD",  # uppercase: no alias can be called so
        HEX40.upper(),
        f"sha256:{HEX40}",  # a digest is 64 digits
        "a/b",
        "prod ",
        "x" * 65,  # longer than any name
        "..",
    ],
)
def test_strings_no_version_can_match(revision):
    assert parse_revision(revision) is None
