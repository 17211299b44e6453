"""The shared words are defined once, in loreg.vocabulary (issue 10 §2).

A word list written out again elsewhere (a tuple, list or set literal, or a
``Literal[...]``, holding two or more words of one closed set) is how the copies
drifted apart before; this test finds them by walking every module's AST.
"""

from __future__ import annotations

import ast
from enum import StrEnum
from pathlib import Path

import pytest

from loreg import vocabulary

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "registry", ROOT / "workers", ROOT / "clients" / "loreg"]
VOCABULARY_FILE = ROOT / "clients" / "loreg" / "vocabulary.py"

#: Each closed set of words, by enum name.
CLOSED_SETS: dict[str, frozenset[str]] = {
    name: frozenset(member.value for member in obj)
    for name, obj in vars(vocabulary).items()
    if isinstance(obj, type) and issubclass(obj, StrEnum) and obj is not StrEnum
}


def _strings(node: ast.Tuple | ast.List | ast.Set) -> list[str]:
    return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _word_lists(tree: ast.AST):
    """Yield (line, strings) for every tuple, list or set literal (``Literal[a, b]`` included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            yield node.lineno, _strings(node)


def find_copies(paths: list[Path]) -> list[str]:
    """Every place outside the vocabulary that spells out two or more words of one set."""
    found = []
    for base in paths:
        for path in sorted(base.rglob("*.py")):
            if path == VOCABULARY_FILE:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for line, words in _word_lists(tree):
                for set_name, values in CLOSED_SETS.items():
                    hits = sorted(set(words) & values)
                    if len(hits) >= 2:
                        found.append(f"{path.relative_to(base.parent)}:{line}: {set_name} {hits}")
    return found


def test_no_word_list_is_written_out_twice():
    assert find_copies(SOURCES) == []


def test_the_finder_sees_a_copy(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import Literal\n"
        "TERMINAL = ('succeeded', 'failed')\n"
        "Kind = Literal['adapter', 'dataset']\n"
        "ONE = ('failed',)\n"
    )
    copies = find_copies([tmp_path])
    assert len(copies) == 2
    assert "m.py:2: JobStatus ['failed', 'succeeded']" in copies[0]
    assert "m.py:3: ArtifactKind ['adapter', 'dataset']" in copies[1]


@pytest.mark.parametrize(
    ("enum", "words"),
    [
        (vocabulary.JobStatus, "queued running succeeded failed cancelled"),
        (vocabulary.JobType, "combine compress merge train mirror_import mirror_export card"),
        (vocabulary.ArtifactKind, "adapter base_model dataset"),
        (vocabulary.Scope, "read write admin"),
    ],
)
def test_members_are_their_strings(enum, words):
    assert [str(m) for m in enum] == words.split()
    assert all(m == m.value for m in enum)


def test_groups_hold_members_of_their_set():
    methods = set(vocabulary.CombineMethod)
    for group in (
        vocabulary.EXACT_METHODS,
        vocabulary.DENSITY_METHODS,
        vocabulary.SIGN_METHODS,
        vocabulary.SEEDED_METHODS,
        vocabulary.FULL_RANK_METHODS,
        vocabulary.FEDERATED_METHODS,
        vocabulary.RANK_REQUIRED_METHODS,
    ):
        assert set(group) <= methods
    assert set(vocabulary.SEEDED_METHODS) <= set(vocabulary.DENSITY_METHODS)
    assert set(vocabulary.TERMINAL_STATUSES) == set(vocabulary.JobStatus) - {"queued", "running"}
    assert set(vocabulary.PRESET_SHAPES) == set(vocabulary.Preset)
    assert sorted(vocabulary.SCOPE_LEVELS.values()) == [1, 2, 3]
