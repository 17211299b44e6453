"""The allow-list of file kinds and the content check of each (registry.validation.content)."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest

from registry.errors import InvalidFileContent, UnsupportedFile
from registry.validation.content import (
    HEAD_BYTES,
    SAFETENSORS,
    SENTENCEPIECE,
    TEXT,
    check_file,
    file_kind,
    pickle_content,
    sentencepiece_problem,
)

PROTO0 = b"cos\nsystem\n(S'echo pwned'\ntR."


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = pickle.dumps({"w": 1}, protocol=2)
        info = tarfile.TarInfo("storages")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip_with_junk() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": [1.0]}))
    return b"# junk before the archive\n" + buf.getvalue()


def _sentencepiece() -> bytes:
    """A minimal ModelProto: two pieces, a trainer spec and a normalizer spec."""
    piece = lambda text: b"\x0a" + bytes([len(text) + 2]) + b"\x0a" + bytes([len(text)]) + text  # noqa: E731
    return piece(b"<unk>") + piece(b"a") + b"\x12\x02\x08\x01" + b"\x1a\x00"


def _check(path: str, data: bytes) -> None:
    """What the commit does with a non-safetensors file."""
    found = pickle_content(data[:HEAD_BYTES], complete=len(data) <= HEAD_BYTES)
    if found is not None:
        raise InvalidFileContent(f"pickle: {found}")
    check_file(file_kind(path), [data[i : i + 7] for i in range(0, len(data), 7)], path)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (PROTO0, "protocol 0/1"),
        (pickle.dumps({"a": [1, 2]}, protocol=0), "protocol 0/1"),
        (pickle.dumps({"a": [1, 2]}, protocol=1), "protocol 0/1"),
        (pickle.dumps({"a": [1, 2]}, protocol=2)[2:], "without its protocol header"),
        (pickle.dumps({"a": list(range(50))}, protocol=4)[2:], "without its protocol header"),
        (gzip.compress(PROTO0), "gzip-compressed a pickle"),
        (_tar(), "tar archive"),
    ],
    ids=["os-system", "proto0", "proto1", "proto2-stripped", "proto4-stripped", "gzip0", "tar"],
)
def test_pickles_without_magic_are_found(data, words):
    found = pickle_content(data[:HEAD_BYTES], complete=len(data) <= HEAD_BYTES)
    assert found is not None and words in found, found


@pytest.mark.parametrize(
    "path",
    ["README.md", "tokenizer.json", "training_args.json", "x.SAFETENSORS", "tokenizer.model"],
)
@pytest.mark.parametrize(
    "data",
    [
        PROTO0,
        pickle.dumps([1], protocol=2)[2:],
        gzip.compress(PROTO0),
        _tar(),
        _zip_with_junk(),
        gzip.compress(gzip.compress(gzip.compress(gzip.compress(PROTO0)))),
    ],
    ids=["proto0", "stripped", "gzip", "tar", "zip-after-junk", "gzip-x4"],
)
def test_pickle_bearing_files_are_refused_under_any_accepted_name(path, data):
    if file_kind(path) == SAFETENSORS:
        from registry.errors import InvalidSafetensors
        from registry.validation.safetensors_header import parse_safetensors_bytes

        with pytest.raises(InvalidSafetensors):
            parse_safetensors_bytes(data, path=path)
        return
    with pytest.raises(InvalidFileContent):
        _check(path, data)


@pytest.mark.parametrize(
    "path", ["notes.dat", "extra.gz", "weights.npz.txt.gz", "model.onnx", "image.png", "a.py"]
)
def test_other_kinds_are_refused_by_name(path):
    with pytest.raises(UnsupportedFile) as info:
        file_kind(path)
    assert repr(path) in info.value.message and "accepted" in info.value.message


def test_kinds_by_name():
    assert file_kind("x.SAFETENSORS") == SAFETENSORS
    assert file_kind("sub/LICENSE") == TEXT and file_kind(".gitattributes") == TEXT
    assert file_kind("spiece.model") == SENTENCEPIECE


@pytest.mark.parametrize(
    ("path", "data", "words"),
    [
        ("README.md", b"caf\xe9", "not UTF-8"),
        ("README.md", b"ok\x00binary", "control character"),
        ("vocab.json", b'{"a": 1e400}', "out of range"),
        ("vocab.json", b'{"a": "\\ud800"}', "lone surrogate"),
        ("vocab.json", b"[" * 100 + b"]" * 100, "nested deeper"),
        ("vocab.json", b'{"a": 1, "a": 2}', "duplicate key"),
        ("data.jsonl", b'{"a": 1}\n{"a": NaN}\n', "line 2"),
        ("tokenizer.model", b"\x08\x01", "is not in a sentencepiece model"),
        ("tokenizer.model", b"\x0a\x10abc", "past the end"),
        ("tokenizer.model", b"", "no vocabulary pieces"),
    ],
)
def test_content_that_lies_about_its_kind_is_refused(path, data, words):
    with pytest.raises(InvalidFileContent) as info:
        _check(path, data)
    assert words in info.value.message and repr(path) in info.value.message


def test_sentencepiece_model_is_accepted():
    assert sentencepiece_problem(_sentencepiece()) is None
    _check("tokenizer.model", _sentencepiece())


def test_what_peft_and_a_tokenizer_really_write_is_accepted(tmp_path: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tests.support.tiny import save_adapter

    save_adapter(tmp_path)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok.save_pretrained(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (tmp_path / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    (tmp_path / "tokenizer.model").write_bytes(_sentencepiece())
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 1.5}]}))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {"README.md", "adapter_config.json", "tokenizer.json", "tokenizer_config.json"} <= set(
        names
    )
    for p in tmp_path.iterdir():
        if file_kind(p.name) != SAFETENSORS:
            _check(p.name, p.read_bytes())
