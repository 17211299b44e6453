"""Property and example tests of the shared ref parser (loreg.refs)."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loreg.errors import InvalidNameError, InvalidRefError
from loreg.refs import (
    DEFAULT_NAMESPACE,
    MAX_VERSION,
    Ref,
    format_ref,
    parse_ref,
    validate_adapter_name,
    validate_alias,
    validate_name,
)

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
TRAILING_VERSION_RE = re.compile(r".*-v[0-9]+")
VERSION_LIKE_RE = re.compile(r"v?[0-9]+")
HEX = "0123456789abcdef"

# ----------------------------------------------------------------- strategies

names = st.from_regex(NAME_RE, fullmatch=True).filter(lambda s: ".." not in s)
adapter_names = names.filter(lambda s: not TRAILING_VERSION_RE.fullmatch(s))
aliases = names.filter(lambda s: s not in ("sha256", "latest") and not VERSION_LIKE_RE.fullmatch(s))
versions = st.integers(min_value=1, max_value=MAX_VERSION)
digests = st.text(alphabet=HEX, min_size=64, max_size=64).map(lambda h: f"sha256:{h}")


@st.composite
def refs(draw, namespace=names):
    """Any valid Ref with a namespace."""
    kind = draw(st.sampled_from(["latest", "version", "alias", "digest"]))
    kwargs = {}
    if kind == "version":
        kwargs["version"] = draw(versions)
    elif kind == "alias":
        kwargs["alias"] = draw(aliases)
    elif kind == "digest":
        kwargs["digest"] = draw(digests)
    return Ref(draw(namespace), draw(adapter_names), **kwargs)


# ----------------------------------------------------------------- properties


@given(refs())
def test_canonical_round_trip(ref: Ref) -> None:
    assert parse_ref(ref.canonical()) == ref
    assert parse_ref(ref.canonical(), default_namespace="other") == ref


@given(refs())
def test_without_namespace_takes_the_default(ref: Ref) -> None:
    text = ref.canonical().split("/", 1)[1]
    parsed = parse_ref(text)
    assert parsed.namespace is None
    assert parsed.with_namespace(ref.namespace) == ref
    assert parse_ref(text, default_namespace=ref.namespace) == ref


@given(names, adapter_names, versions)
def test_version_spellings_agree(ns: str, name: str, version: int) -> None:
    expected = Ref(ns, name, version=version)
    for text in (f"{ns}/{name}-v{version}", f"{ns}/{name}:v{version}", f"{ns}/{name}:{version}"):
        assert parse_ref(text) == expected
    assert expected.canonical() == f"{ns}/{name}-v{version}"
    assert expected.selector() == f"v{version}"


@given(st.text(max_size=80))
@settings(max_examples=400)
def test_fuzz_only_invalid_ref_or_success(text: str) -> None:
    try:
        ref = parse_ref(text)
    except InvalidRefError as exc:
        assert str(exc)
        return
    for part in (ref.namespace, ref.name, ref.alias):
        if part is not None:
            assert NAME_RE.fullmatch(part) and ".." not in part
    assert not TRAILING_VERSION_RE.fullmatch(ref.name)
    assert parse_ref(ref.with_namespace("x").canonical()) == ref.with_namespace("x")


@given(st.text(alphabet=string.ascii_lowercase + string.digits + "._-/:@vV", max_size=40))
@settings(max_examples=400)
def test_fuzz_ref_alphabet(text: str) -> None:
    try:
        ref = parse_ref(text, default_namespace=DEFAULT_NAMESPACE)
    except InvalidRefError:
        return
    assert ref.namespace is not None
    assert NAME_RE.fullmatch(ref.namespace) and NAME_RE.fullmatch(ref.name)
    assert parse_ref(ref.canonical()) == ref


@given(st.text(max_size=70))
@settings(max_examples=300)
def test_accepted_names_match_the_grammar(text: str) -> None:
    try:
        validate_name(text)
    except InvalidNameError:
        assert not NAME_RE.fullmatch(text) or ".." in text
    else:
        assert NAME_RE.fullmatch(text) and ".." not in text


@given(names)
def test_grammar_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name


@given(refs())
def test_selector_is_distinct_per_kind(ref: Ref) -> None:
    sel = ref.selector()
    if ref.is_latest:
        assert sel == "latest"
    elif ref.version is not None:
        assert sel == f"v{ref.version}"
    else:
        assert sel == f"@{ref.alias or ref.digest}"
        assert ref.canonical().endswith(sel)


# ----------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("medical", Ref(None, "medical")),
        ("acme/medical", Ref("acme", "medical")),
        ("medical-v3", Ref(None, "medical", version=3)),
        ("acme/medical:v12", Ref("acme", "medical", version=12)),
        ("acme/medical:7", Ref("acme", "medical", version=7)),
        ("acme/medical@prod", Ref("acme", "medical", alias="prod")),
        ("acme/medical@latest", Ref("acme", "medical")),
        ("acme/med.v2_x", Ref("acme", "med.v2_x")),
        ("acme/medical-v", Ref("acme", "medical-v")),
        ("acme/v3", Ref("acme", "v3")),
        ("0/1", Ref("0", "1")),
        (f"a/b@sha256:{'ab' * 32}", Ref("a", "b", digest=f"sha256:{'ab' * 32}")),
    ],
)
def test_examples(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Medical", "uppercase"),
        ("acme/Medical", "uppercase"),
        ("a/b/c", "at most one '/'"),
        ("/medical", "empty namespace"),
        ("acme/", "missing adapter name"),
        ("acme/-x", "starts with"),
        ("acme/.x", "starts with"),
        ("acme/a..b", "'..'"),
        ("acme/med ical", "whitespace"),
        (" medical", "whitespace"),
        ("medical\n", "whitespace"),
        ("med\x00ical", "contains"),
        ("acme/medical-v0", "out of range"),
        ("acme/medical-v03", "leading zero"),
        ("acme/medical:03", "leading zero"),
        ("acme/medical:v", "not a number"),
        ("acme/medical:", "nothing after ':'"),
        ("acme/medical@", "nothing after '@'"),
        ("acme/medical@sha256", "reserved"),
        ("acme/medical@v3", "looks like a version"),
        ("acme/medical@3", "looks like a version"),
        ("acme/medical@Prod", "uppercase"),
        ("acme/medical@sha256:abc", "64 lowercase hex"),
        (f"acme/medical@sha256:{'AB' * 32}", "64 lowercase hex"),
        ("acme/medical-v3-v4", "reads as a version"),
        ("acme/medical-v3:4", "reads as a version"),
        ("acme/" + "a" * 65, "limit is 64"),
        (f"acme/medical:{MAX_VERSION + 1}", "out of range"),
        ("x" * 1000, "limit"),
    ],
)
def test_refusals_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRefError) as info:
        parse_ref(text)
    assert fragment in str(info.value)


def test_non_string_ref_is_refused() -> None:
    with pytest.raises(InvalidRefError):
        parse_ref(None)  # type: ignore[arg-type]


def test_default_namespace_is_validated() -> None:
    assert parse_ref("medical", default_namespace="acme") == Ref("acme", "medical")
    with pytest.raises(InvalidRefError, match="default namespace"):
        parse_ref("medical", default_namespace="Bad")


def test_canonical_needs_namespace() -> None:
    with pytest.raises(ValueError, match="with_namespace"):
        Ref(None, "medical", version=2).canonical()
    assert Ref(None, "medical").with_namespace(DEFAULT_NAMESPACE).canonical() == "default/medical"
    assert Ref("acme", "x").with_namespace("other").namespace == "acme"


def test_ref_constructor_validates() -> None:
    with pytest.raises(InvalidRefError, match="at most one"):
        Ref("a", "b", version=1, alias="prod")
    with pytest.raises(InvalidRefError):
        Ref("a", "b", version=0)
    with pytest.raises(InvalidRefError):
        Ref("a", "b", version=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError):
        Ref("a", "b-v2")
    with pytest.raises(InvalidRefError):
        Ref("a", "b", digest="sha256:xyz")


def test_is_latest_and_selectors() -> None:
    assert Ref("a", "b").is_latest and Ref("a", "b").selector() == "latest"
    assert not Ref("a", "b", version=1).is_latest
    assert Ref("a", "b", alias="prod").selector() == "@prod"
    assert Ref("a", "b").canonical() == "a/b"


def test_format_ref() -> None:
    assert format_ref("acme", "medical") == "acme/medical"
    assert format_ref("acme", "medical", version=3) == "acme/medical-v3"
    assert format_ref("acme", "medical", alias="prod") == "acme/medical@prod"
    digest = "sha256:" + "0" * 64
    assert format_ref("acme", "medical", digest=digest) == f"acme/medical@{digest}"
    with pytest.raises(InvalidNameError):
        format_ref("Acme", "medical")


@pytest.mark.parametrize("name", ["medical-v1", "x-v0", "a-v123"])
def test_adapter_names_may_not_end_in_a_version(name: str) -> None:
    validate_name(name)  # fine as a plain name (e.g. a namespace) ...
    with pytest.raises(InvalidNameError, match="adapter name"):
        validate_adapter_name(name)


@pytest.mark.parametrize("alias", ["sha256", "latest", "v1", "12", "v007"])
def test_reserved_and_version_like_aliases(alias: str) -> None:
    with pytest.raises(InvalidNameError, match="alias"):
        validate_alias(alias)


def test_name_error_mentions_kind() -> None:
    with pytest.raises(InvalidNameError, match="invalid namespace"):
        validate_name("A", "namespace")
