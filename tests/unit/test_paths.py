"""File-path validation and pickle refusal (registry.validation.paths)."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import InvalidPath, PickleRefused
from registry.validation.paths import (
    MAX_PATH_BYTES,
    MAX_SEGMENT_BYTES,
    PICKLE_SUFFIXES,
    refuse_pickle,
    validate_file_path,
)

ROOT = "/srv/loreg/snapshots/abc"


def resolves_inside(path: str, root: str = ROOT) -> bool:
    joined = posixpath.normpath(posixpath.join(root, path))
    return joined.startswith(root + "/") and joined != root


@given(st.text(max_size=60))
@settings(max_examples=500)
def test_fuzz_text(path: str) -> None:
    try:
        out = validate_file_path(path)
    except InvalidPath as exc:
        assert "invalid file path" in str(exc)
        return
    assert out == path
    assert resolves_inside(out)
    assert posixpath.normpath(out) == out  # already normal: one spelling per file
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in out)


@given(
    st.lists(
        st.sampled_from(["a", "b.json", ".", "..", "", "...", ".x", "c:d", "e\\f"]),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=300)
def test_fuzz_segments(segments: list[str]) -> None:
    path = "/".join(segments)
    try:
        out = validate_file_path(path)
    except InvalidPath:
        assert any(
            s in ("", ".", "..") or ":" in s or "\\" in s or s.endswith(".") for s in segments
        )
        return
    assert resolves_inside(out)
    assert resolves_inside(out, root=os.path.join(ROOT, "deeper"))


@pytest.mark.parametrize(
    "path",
    [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer/tokenizer.json",
        ".hidden",
        "a..b",
        "résumé.md",
        "x" * MAX_SEGMENT_BYTES,
    ],
)
def test_accepted(path: str) -> None:
    assert validate_file_path(path) == path


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "'..' segment"),
        ("a/../../x", "'..' segment"),
        ("./x", "'.' segment"),
        ("a/./b", "'.' segment"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a\\b", "backslash"),
        ("C:x", "':'"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\x7fb", "control"),
        ("a\u202eb", "invisible"),
        ("a\u200bb", "invisible"),
        ("x" * (MAX_SEGMENT_BYTES + 1), "segment longer"),
        ("é" * 128, "segment longer"),  # 256 bytes in UTF-8
        ("/".join(["x" * 200] * 6), "limit is 1024"),
    ],
)
def test_refused(path: str, fragment: str) -> None:
    with pytest.raises(InvalidPath) as info:
        validate_file_path(path)
    assert fragment in str(info.value)


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidPath):
        validate_file_path(None)  # type: ignore[arg-type]


def test_total_length_limit_boundary() -> None:
    ok = "/".join(["y" * 200] * 4) + "/" + "z" * (MAX_PATH_BYTES - 4 * 201)
    assert len(ok.encode()) == MAX_PATH_BYTES
    assert validate_file_path(ok) == ok
    with pytest.raises(InvalidPath):
        validate_file_path(ok + "z")


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_pickles_are_refused(suffix: str) -> None:
    for name in (f"model{suffix}", f"sub/MODEL{suffix.upper()}", f"x{suffix}.gz"):
        with pytest.raises(PickleRefused) as info:
            refuse_pickle(name)
        assert name in str(info.value) and "safetensors" in str(info.value)


@pytest.mark.parametrize(
    "path",
    [
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "tokenizer.model",
        "binary.txt",
        "pt/config.json",
        "x.gz",
    ],
)
def test_non_pickles_pass(path: str) -> None:
    assert refuse_pickle(path) is None
