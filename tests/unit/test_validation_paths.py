"""Paths that some operating system cannot materialise are refused (item 15)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import InvalidPath
from registry.validation.paths import check_manifest_paths, validate_file_path


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("\uff0e\uff0e/x.json", "NFKC"),  # fullwidth dots: '..' once normalised
        ("a/\uff0e/b.txt", "NFKC"),
        ("a\uff0fb.txt", "NFKC"),  # fullwidth solidus
        ("CON", "reserved device name"),
        ("nul.txt", "reserved device name"),
        ("docs/com1.md", "reserved device name"),
        ("LPT9.json", "reserved device name"),
        ("aux .txt", "reserved device name"),
        ("notes.", "ending in '.'"),
        ("folder /a.txt", "ending in ' '"),
        ("what?.md", "Windows does not allow"),
        ('a"b.txt', "Windows does not allow"),
    ],
)
def test_unportable_segments_are_refused(path, fragment):
    with pytest.raises(InvalidPath) as info:
        validate_file_path(path)
    assert fragment in info.value.message


@pytest.mark.parametrize(
    "path",
    ["console.txt", "CONFIG.json", "com10.txt", "auxiliary/a.md", "a.b.c", ".gitignore", "é.md"],
)
def test_near_misses_are_accepted(path):
    assert validate_file_path(path) == path


@pytest.mark.parametrize(
    ("paths", "fragment"),
    [
        (["x", "x/y"], "needs a folder"),
        (["a/b/c", "a/b"], "needs a folder"),
        (["X", "x/y"], "needs a folder"),
        (["adapter_model.safetensors", "ADAPTER_MODEL.safetensors"], "differ only in case"),
        ([unicodedata.normalize("NFC", "é.md"), unicodedata.normalize("NFD", "é.md")], "normal"),
        (["Dir/a.txt", "dir/a.txt"], "differ only in case"),
    ],
)
def test_manifest_twins_and_file_folder_clashes_are_refused(paths, fragment):
    with pytest.raises(InvalidPath) as info:
        check_manifest_paths(paths)
    assert fragment in info.value.message


def test_a_normal_tree_is_accepted():
    check_manifest_paths(["README.md", "a/b.txt", "a/c/d.txt", "ab", "a.txt"])


@settings(max_examples=300)
@given(st.lists(st.from_regex(r"[aAbB]{1,2}(/[aAbB]{1,2}){0,2}", fullmatch=True), max_size=6))
def test_accepted_manifests_materialise_on_a_case_insensitive_disk(paths):
    paths = list(dict.fromkeys(paths))
    try:
        check_manifest_paths(paths)
    except InvalidPath:
        return
    files: set[str] = set()
    folders: set[str] = set()
    for path in paths:  # what a case-insensitive file system would hold
        parts = path.lower().split("/")
        assert "/".join(parts) not in files
        files.add("/".join(parts))
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    assert not files & folders
