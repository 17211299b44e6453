"""The ``Warning`` header of a yanked version or deprecated adapter (loreg.notices).

The server formats and the SDK parses with the same code: any text (quotes,
backslashes, newlines, non-ASCII) round-trips through an ASCII header value, other
agents' warnings and unknown kinds are ignored, and each kind is emitted as its own
``LoregWarning`` subclass.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loreg import notices
from loreg.vocabulary import WarningKind


@given(st.sampled_from(list(WarningKind)), st.text(max_size=200))
def test_any_message_round_trips_through_an_ascii_header(kind: WarningKind, message: str) -> None:
    notice = notices.Notice(kind, message)
    value = notice.header_value()
    assert value.isascii() and "\n" not in value and "\r" not in value
    assert value.startswith(f'299 loreg "{kind.value}: ')
    assert notices.parse_header(value) == notice


@pytest.mark.parametrize(
    "value",
    [
        '299 - "yanked: x"',  # another agent
        '199 loreg "yanked: x"',  # another code
        '299 loreg "stale: x"',  # a kind this client does not know
        '299 loreg "no kind here"',
        '299 loreg "unterminated',
        '299 loreg "bad \\escape"',
        "",
    ],
)
def test_other_warnings_are_ignored(value: str) -> None:
    assert notices.parse_header(value) is None
    assert notices.parse_headers([value, notices.yanked("a/b-v1", None).header_value()]) == [
        notices.yanked("a/b-v1", None)
    ]


def test_messages_name_the_version_the_reason_and_the_successor() -> None:
    assert notices.yanked("default/m-v3", "broken").message == (
        "default/m-v3 was yanked: broken; a bare name (latest) no longer selects it, "
        "pin another version"
    )
    assert "was yanked;" in notices.yanked("default/m-v3", None).message
    assert notices.deprecated("default/m", "old", "default/n").message == (
        "default/m is deprecated: old (use default/n instead)"
    )
    assert notices.deprecated("default/m", "old", None).message == "default/m is deprecated: old"


def test_emit_warns_with_one_class_per_kind() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        notices.emit([notices.yanked("a/b-v1", "r"), notices.deprecated("a/b", "m", None)])
    assert [w.category for w in caught] == [
        notices.YankedVersionWarning,
        notices.DeprecatedAdapterWarning,
    ]
    assert all(issubclass(w.category, notices.LoregWarning) for w in caught)
    assert str(caught[0].message) == notices.yanked("a/b-v1", "r").message
