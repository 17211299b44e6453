"""Upstream names (``hf://org/repo[@rev]``), ``--as`` targets and ``--every`` intervals."""

from __future__ import annotations

import pytest

from loreg.errors import ValidationFailedError
from loreg.hub_refs import format_upstream, parse_upstream
from loreg.mirrors import (
    export_job_request,
    format_interval,
    import_job_request,
    parse_interval,
    parse_target,
)


@pytest.mark.parametrize(
    ("text", "revision", "expected"),
    [
        ("hf://some-org/some-lora", None, ("some-org/some-lora", None)),
        ("hf://some-org/some-lora@main", None, ("some-org/some-lora", "main")),
        ("Org_1/My.Lora", "v1.0", ("Org_1/My.Lora", "v1.0")),
        ("hf://a/b@refs/pr/1", None, ("a/b", "refs/pr/1")),
        ("hf://a/b@" + "f" * 40, "f" * 40, ("a/b", "f" * 40)),
    ],
)
def test_upstreams_parse_into_repo_and_revision(text, revision, expected) -> None:
    assert parse_upstream(text, revision) == expected
    repo, rev = expected
    assert parse_upstream(format_upstream(repo, rev)) == expected


@pytest.mark.parametrize(
    ("text", "revision", "problem"),
    [
        ("hf://datasets/org/data", None, "only model repos"),
        ("hf://spaces/org/app", None, "only model repos"),
        ("hf://justone", None, "org/name"),
        ("hf://a/b/c", None, "org/name"),
        ("hf://a--b/c", None, "org/name"),
        ("https://huggingface.co/a/b", None, "hf://org/repo"),
        ("hf://a/b@main", "dev", "give one"),
        ("hf://a/b@../x", None, "revision"),
        ("hf://a/b@has space", None, "revision"),
        ("hf://a/b@", None, "revision"),
    ],
)
def test_bad_upstreams_say_what_to_write(text, revision, problem) -> None:
    with pytest.raises(ValidationFailedError, match=problem):
        parse_upstream(text, revision)


def test_targets_are_adapters_without_a_version() -> None:
    assert parse_target("acme/some-lora") == ("acme", "some-lora")
    assert parse_target("some-lora") == (None, "some-lora")
    for bad in ("acme/some-lora-v2", "acme/some-lora@prod", "Acme/x"):
        with pytest.raises(ValidationFailedError, match="--as"):
            parse_target(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400), ("2w", 1209600), ("3600", 3600)],
)
def test_intervals(text, seconds) -> None:
    assert parse_interval(text) == seconds
    assert parse_interval(format_interval(seconds)) == seconds


@pytest.mark.parametrize("bad", ["0", "6 hours", "-1h", "1.5h", "367d", "", True])
def test_bad_intervals_are_refused(bad) -> None:
    with pytest.raises(ValidationFailedError):
        parse_interval(bad)


def test_the_import_job_body() -> None:
    assert import_job_request("hf://o/r@dev", "acme/x") == {
        "type": "mirror_import",
        "inputs": [],
        "params": {"repo": "o/r", "revision": "dev"},
        "output": "x",
        "namespace": "acme",
    }


def test_the_export_job_body() -> None:
    assert export_job_request("acme/medical-v3", "hf://org/medical", private=True) == {
        "type": "mirror_export",
        "inputs": [{"ref": "acme/medical-v3"}],
        "params": {"repo": "org/medical", "private": True},
        "output": "medical",
        "namespace": "acme",
    }
    assert export_job_request("medical@prod", "hf://org/medical")["params"] == {
        "repo": "org/medical"
    }
    with pytest.raises(ValidationFailedError, match="an export commits to main"):
        export_job_request("medical-v1", "hf://org/medical@dev")
