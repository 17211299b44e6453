"""Content-aware publish cases for the fuzzer (stdlib only, seeded, reproducible).

Each case is drawn from its own ``random.Random(f"{seed}:{index}")``, so case N of
seed S is rebuilt exactly by ``bench/fuzz_publish.py --seed S --case N``, whatever
ran before it. A seeded generator (not hypothesis) because the bench runs tens of
thousands of cases against live servers: no shrinking or example database to
replay, a reproducer is two integers, and the suite and the bench draw the same
cases.

Families (``FAMILIES``): ``valid`` (the PEFT adapter with harmless variations, so
the accept path and the pull check run), ``header`` (safetensors header lies),
``config`` (LoraConfig fields with odd values, regexes, nesting), ``names``
(adapter name, namespace, base model, description, request metadata), ``paths``
(file paths that cannot be materialised everywhere), ``containers`` (pickles and
archives under innocent names), ``mutation`` (byte-level mutation of the valid
files) and ``regex`` (backtracking patterns, with names kept short enough that
even exponential matching ends within seconds: the fuzzer must not freeze the
process it shares with an in-process server).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import random
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_NAME = "tiny-llama"
PREFIX = "base_model.model."


class Raw:
    """A JSON fragment written verbatim (``1e400``, ``NaN``, a 1000-deep list...)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


def dumps(obj: Any, *, ensure_ascii: bool = True, indent: int | None = None) -> str:
    """``json.dumps`` that writes :class:`Raw` values verbatim (lone surrogates escaped)."""
    raws: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(obj), ensure_ascii=ensure_ascii, indent=indent)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw, 1)
    return text


def encode_text(text: str) -> bytes:
    """UTF-8 that lets lone surrogates through as their 3-byte (WTF-8) forms."""
    return text.encode("utf-8", "surrogatepass")


@dataclass
class Tensor:
    """One tensor of a safetensors file: dtype, shape and raw bytes."""

    dtype: str
    shape: list[int]
    data: bytes


@dataclass
class ValidAdapter:
    """A PEFT-saved adapter split into parts the generators can recombine."""

    config: dict[str, Any]
    tensors: dict[str, Tensor]
    metadata: dict[str, str]
    files: dict[str, bytes]

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> ValidAdapter:
        """Split ``adapter_config.json`` + ``adapter_model.safetensors`` bytes."""
        raw = files[ADAPTER_WEIGHTS]
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        data = raw[8 + n :]
        metadata = header.pop("__metadata__", {})
        tensors = {
            name: Tensor(
                e["dtype"], list(e["shape"]), data[e["data_offsets"][0] : e["data_offsets"][1]]
            )
            for name, e in header.items()
        }
        return cls(json.loads(files[ADAPTER_CONFIG]), tensors, metadata, dict(files))


def safetensors_bytes(
    tensors: dict[str, Tensor], metadata: dict[str, Any] | None = None, *, header_extra: Any = None
) -> bytes:
    """A well-formed safetensors file (offsets tiling the data area in order)."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = bytearray()
    for name, t in tensors.items():
        header[name] = {
            "dtype": t.dtype,
            "shape": t.shape,
            "data_offsets": [len(data), len(data) + len(t.data)],
        }
        data += t.data
    if header_extra:
        header.update(header_extra)
    return raw_safetensors(encode_text(dumps(header)), bytes(data))


def raw_safetensors(header: bytes, data: bytes, *, length: int | None = None) -> bytes:
    """``<u64 length><header><data>``; ``length`` lies about the header length if given."""
    n = len(header) if length is None else length
    return struct.pack("<Q", n % 2**64) + header + data


@dataclass
class Case:
    """One publish attempt: what is sent and what was done to it."""

    index: int
    family: str
    label: str
    name: str
    files: dict[str, bytes]
    body_extra: dict[str, Any] = field(default_factory=dict)
    #: Replace the whole upload body (raw JSON text), for request-level lies.
    raw_body: str | None = None
    #: The declared manifest differs from the bytes sent (size/sha lies).
    declared: list[dict[str, Any]] | None = None
    #: Re-publish this case index's files again (idempotent re-push).
    republish_of: int | None = None


# --------------------------------------------------------------------------- odd values

ODD_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\udbff\udfff",  # a valid pair, as two escapes
    "\u202e\u200b",
    "\ufeff",
    "𝒜ǅß\u0301",
    "..",
    "CON",
    "(a+)+b",
    "[",
    "\\",
    "%s%n",
    "'; DROP TABLE versions; --",
    "\n\r\t",
]


def deep(rng: random.Random) -> Raw:
    """A deeply nested JSON value (list or object), around PEFT/pydantic/json limits."""
    depth = rng.choice([8, 64, 200, 253, 254, 255, 256, 257, 300, 400, 600, 1000, 2000, 5000])
    if rng.random() < 0.5:
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


def odd_string(rng: random.Random) -> str:
    """A string with NUL, lone surrogates, bidi marks, huge length or regex syntax."""
    roll = rng.random()
    if roll < 0.15:
        return rng.choice("aé𝒜\x00") * rng.choice([256, 1000, 4097, 100_000])
    s = rng.choice(ODD_STRINGS)
    if rng.random() < 0.3:
        s = "q_proj" + s
    return s


def odd_value(rng: random.Random) -> Any:
    """Any JSON-ish value that a config field or metadata entry should not surprise us with."""
    roll = rng.randrange(12)
    if roll == 0:
        return Raw(
            rng.choice(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1e-400", "-0.0"])
        )
    if roll == 1:
        return rng.choice([10**19, 2**63, 2**64, -(2**63) - 1, 10**400, 10**4000])
    if roll == 2:
        return rng.choice([-1, 0, 1, 0.5, -0.0, 3.0, True, False, None])
    if roll == 3:
        return deep(rng)
    if roll == 4:
        return [odd_string(rng) for _ in range(rng.randint(0, 3))]
    if roll == 5:
        return {odd_string(rng): odd_string(rng)}
    if roll == 6:
        return [rng.randint(-5, 5)] * rng.choice([1, 1000, 100_000])
    return odd_string(rng)


# --------------------------------------------------------------------------- families


def _adapter_files(
    v: ValidAdapter, config: Any = None, weights: bytes | None = None
) -> dict[str, bytes]:
    files = dict(v.files)
    if config is not None:
        files[ADAPTER_CONFIG] = (
            config if isinstance(config, bytes) else encode_text(dumps(config, indent=2))
        )
    if weights is not None:
        files[ADAPTER_WEIGHTS] = weights
    return files


def _unique_metadata(rng: random.Random) -> dict[str, str]:
    return {"format": "pt", "fuzz": f"{rng.getrandbits(64):016x}"}


def gen_valid(rng: random.Random, v: ValidAdapter) -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """The adapter with harmless variations: reordered config, extra text files, new bytes."""
    labels = []
    config = dict(v.config)
    if rng.random() < 0.5:
        config["target_modules"] = list(reversed(config["target_modules"]))
        labels.append("targets reversed")
    meta = _unique_metadata(rng) if rng.random() < 0.7 else dict(v.metadata)
    tensors = dict(v.tensors)
    if rng.random() < 0.3:  # new weight bytes (same shapes)
        name = rng.choice(list(tensors))
        t = tensors[name]
        data = bytearray(t.data)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(7)  # never the top bit of a byte
        tensors[name] = Tensor(t.dtype, t.shape, bytes(data))
        labels.append(f"bit flipped in {name}")
    files = _adapter_files(v, config, safetensors_bytes(tensors, meta))
    if rng.random() < 0.3:
        files["README.md"] = encode_text(f"# adapter\n\n{rng.random()} é 𝒜\n")
        labels.append("README.md")
    if rng.random() < 0.2:
        files["tokenizer_config.json"] = encode_text(
            dumps({"model_max_length": 64, "x": rng.random()})
        )
        labels.append("tokenizer_config.json")
    extra: dict[str, Any] = {}
    if rng.random() < 0.5:
        extra["base_model"] = BASE_NAME
    if rng.random() < 0.3:
        extra["description"] = f"fuzz adapter é {rng.random()}"
        extra["metadata"] = {"run": rng.randrange(1000), "tags": ["a", "b"]}
    return "valid: " + (", ".join(labels) or "as saved"), files, extra


DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "F8_E4M3", "C64", "I64", "U64"]


def gen_header(rng: random.Random, v: ValidAdapter) -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """The safetensors header lies: dtypes, shapes, offsets, names, metadata, lengths."""
    names = list(v.tensors)
    tensors = dict(v.tensors)
    meta: dict[str, Any] | None = dict(v.metadata)
    target = rng.choice(names)
    kind = rng.randrange(14)
    t = tensors[target]

    def entry_bytes(header: dict[str, Any], data: bytes | None = None) -> bytes:
        full = b"".join(x.data for x in tensors.values()) if data is None else data
        return raw_safetensors(encode_text(dumps(header)), full)

    def header_of() -> dict[str, Any]:
        h: dict[str, Any] = {"__metadata__": meta} if meta is not None else {}
        off = 0
        for n, x in tensors.items():
            h[n] = {
                "dtype": x.dtype,
                "shape": list(x.shape),
                "data_offsets": [off, off + len(x.data)],
            }
            off += len(x.data)
        return h

    if kind == 0:  # dtype lie
        dtype = rng.choice([*DTYPES, "f32", "float32", "", "F32\x00", "\ud800", 7, None, ["F32"]])
        h = header_of()
        h[target]["dtype"] = dtype
        return f"header: {target} dtype {dtype!r}", _adapter_files(v, weights=entry_bytes(h)), {}
    if kind == 1:  # shape lie
        shape = rng.choice(
            [
                [t.shape[1], t.shape[0]],
                [t.shape[0] * t.shape[1]],
                [t.shape[0], t.shape[1], 1],
                [-t.shape[0], -t.shape[1]],
                [t.shape[0], 0],
                [2**32, 2**32],
                [2**63, 2],
                [2**64 + 1],
                [float(t.shape[0]), t.shape[1]],
                [True, t.shape[1]],
                "4,64",
                [],
                [[t.shape[0]], t.shape[1]],
                [t.shape[0], Raw("1e400")],
            ]
        )
        h = header_of()
        h[target]["shape"] = shape
        return f"header: {target} shape {shape!r}", _adapter_files(v, weights=entry_bytes(h)), {}
    if kind == 2:  # offsets lie
        size = sum(len(x.data) for x in tensors.values())
        h = header_of()
        s, e = h[target]["data_offsets"]
        offsets = rng.choice(
            [
                [e, s],
                [s + 1, e + 1],
                [s - 4 if s >= 4 else 0, e - 4 if s >= 4 else e],
                [0, size],
                [s, size + 4],
                [s, e, e],
                [s],
                [-1, e],
                [s, 2**64],
                [s, Raw("1e400")],
                [str(s), e],
                {"start": s, "end": e},
            ]
        )
        h[target]["data_offsets"] = offsets
        return (
            f"header: {target} offsets {offsets!r}",
            _adapter_files(v, weights=entry_bytes(h)),
            {},
        )
    if kind == 3:  # tensor names
        new = rng.choice(
            [
                target + "\ud800",
                target.replace("lora_A", "lora_\udfffA"),
                target + "\x00",
                "",
                "\ud800",
                target + " ",
                target.upper(),
                PREFIX + "a" * rng.choice([200, 1025, 5000]) + ".lora_A.weight",
                target.replace("base_model.model.", "base_model.model.\u202e"),
                "__metadata__x",
            ]
        )
        tensors = {(new if n == target else n): x for n, x in tensors.items()}
        return (
            f"header: tensor renamed {new[:60]!r}",
            _adapter_files(v, weights=entry_bytes(header_of())),
            {},
        )
    if kind == 4:  # metadata
        meta = rng.choice(
            [
                {"format": "pt", "x": "\ud800"},
                {"format": "pt", "\udfff": "y"},
                {"format": "pt", "x": "a\x00b"},
                {"format": 1},
                {"format": "pt", "x": None},
                {"format": "pt", "x": {"nested": "v"}},
                {"format": "pt", "x": "v" * rng.choice([1000, 100_000, 1_000_000])},
                {"format": "loreg-int8"},
                {"format": "pt", "x": deep(rng)},
                [],
                "pt",
                None,
            ]
        )
        h = header_of()
        if meta is None:
            h["__metadata__"] = None
        return f"header: metadata {str(meta)[:60]}", _adapter_files(v, weights=entry_bytes(h)), {}
    if kind == 5:  # header length lies
        header = encode_text(dumps(header_of()))
        data = b"".join(x.data for x in tensors.values())
        length = rng.choice(
            [
                0,
                1,
                7,
                len(header) - 1,
                len(header) + 1,
                len(header) + len(data),
                2**63,
                2**64 - 1,
                16 * 2**20 + 1,
            ]
        )
        return (
            f"header: length {length} (real {len(header)})",
            _adapter_files(v, weights=raw_safetensors(header, data, length=length)),
            {},
        )
    if kind == 6:  # padding and trailing junk
        header = encode_text(dumps(header_of()))
        pad = rng.choice([b" " * 7, b"\x00" * 3, b"\n", b"  }", b"\t", b"\xff", b" " * 1000])
        data = b"".join(x.data for x in tensors.values())
        return (
            f"header: padded with {pad[:8]!r}",
            _adapter_files(v, weights=raw_safetensors(header + pad, data)),
            {},
        )
    if kind == 7:  # not an object / not JSON / not UTF-8
        header = rng.choice(
            [
                b"[]",
                b"null",
                b'"x"',
                b"{",
                b"\xef\xbb\xbf{}",
                b"\xed\xa0\x80",
                b'{"a":NaN}',
                b"{}" + b"\x00",
                b"\xff\xfe{}",
                b"{}",
            ]
        )
        data = b"" if header == b"{}" else b"".join(x.data for x in tensors.values())
        return (
            f"header: body {header!r}",
            _adapter_files(v, weights=raw_safetensors(header, data)),
            {},
        )
    if kind == 8:  # duplicate keys (raw text)
        h = header_of()
        text = dumps(h)
        dup = json.dumps(target) + ": " + json.dumps(h[target])
        text = text[:-1] + ", " + dup + "}"
        data = b"".join(x.data for x in tensors.values())
        return (
            f"header: duplicate key {target}",
            _adapter_files(v, weights=raw_safetensors(encode_text(text), data)),
            {},
        )
    if kind == 9:  # deeply nested
        h = header_of()
        h["__metadata__"] = {"format": "pt"}
        h[target]["extra"] = deep(rng)
        return "header: nested extra key", _adapter_files(v, weights=entry_bytes(h)), {}
    if kind == 10:  # truncated or extended data area
        full = safetensors_bytes(tensors, meta)
        cut = rng.choice([len(full) - 1, len(full) - 4, 9, 8, 4, 0])
        tail = rng.choice([b"", b"\x00" * 4])
        data = full[:cut] if not tail else full + tail
        return (
            f"header: file {'truncated to ' + str(cut) if not tail else 'extended'}",
            _adapter_files(v, weights=data),
            {},
        )
    if kind == 11:  # empty or zero-size tensors
        zero = Tensor(t.dtype, [0, t.shape[1]], b"")
        tensors[target] = zero
        return (
            f"header: {target} emptied",
            _adapter_files(v, weights=safetensors_bytes(tensors, meta)),
            {},
        )
    if kind == 12:  # dtype consistent but not a float
        dtype = rng.choice(["I8", "U8", "BOOL", "I32", "C64", "F8_E5M2"])
        size = {"I8": 1, "U8": 1, "BOOL": 1, "I32": 4, "C64": 8, "F8_E5M2": 1}[dtype]
        n = t.shape[0] * t.shape[1]
        tensors[target] = Tensor(dtype, t.shape, bytes(n * size))
        return (
            f"header: {target} as {dtype}",
            _adapter_files(v, weights=safetensors_bytes(tensors, meta)),
            {},
        )
    # odd order of offsets: data area written in reverse tensor order (valid per spec)
    h: dict[str, Any] = {"__metadata__": meta}
    off = 0
    chunks = []
    for n, x in reversed(list(tensors.items())):
        h[n] = {"dtype": x.dtype, "shape": x.shape, "data_offsets": [off, off + len(x.data)]}
        off += len(x.data)
        chunks.append(x.data)
    return (
        "header: data in reverse order",
        _adapter_files(v, weights=raw_safetensors(encode_text(dumps(h)), b"".join(chunks))),
        {},
    )


CONFIG_FIELDS = [
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "exclude_modules",
    "rank_pattern",
    "alpha_pattern",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
    "bias",
    "use_rslora",
    "use_dora",
    "lora_bias",
    "fan_in_fan_out",
    "init_lora_weights",
    "task_type",
    "peft_type",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "trainable_token_indices",
    "megatron_config",
    "loftq_config",
    "eva_config",
    "corda_config",
    "runtime_config",
    "auto_mapping",
    "layer_replication",
    "target_parameters",
    "unknown_field",
]


def gen_config(rng: random.Random, v: ValidAdapter) -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """adapter_config.json with odd field values, missing fields, or not JSON at all."""
    config: dict[str, Any] = dict(v.config)
    roll = rng.random()
    if roll < 0.08:
        raw = rng.choice(
            [
                b"",
                b"[]",
                b"\xef\xbb\xbf" + json.dumps(config).encode(),
                b"\xed\xa0\x80",
                json.dumps(config).encode() + b"\x00",
                json.dumps(config).encode()[:-5],
                b'{"peft_type": "LORA", "peft_type": "LORA"}',
                encode_text(dumps(config)).replace(b'"LORA"', b'"LO\\u0000RA"'),
                b"\x80\x04K\x01.",
                b"{" * 100_000,
            ]
        )
        return f"config: raw {raw[:30]!r}", _adapter_files(v, raw), {}
    labels = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        key = rng.choice(CONFIG_FIELDS)
        if rng.random() < 0.1:
            config.pop(key, None)
            labels.append(f"-{key}")
            continue
        value = _field_value(rng, key, v)
        config[key] = value
        labels.append(f"{key}={value!r:.60}")
    extra: dict[str, Any] = {"base_model": BASE_NAME} if rng.random() < 0.5 else {}
    return "config: " + ", ".join(labels), _adapter_files(v, config), extra


def _field_value(rng: random.Random, key: str, v: ValidAdapter) -> Any:
    targets = v.config["target_modules"]
    typed = {
        "r": [4, 8, 0, -4, 4.0, 2**31, 10**30, "4", True],
        "lora_alpha": [8, 0, -8, 8.5, 1e308, "8", True],
        "lora_dropout": [0.0, 0.999, 1.0, -0.1, "0", None],
        "target_modules": [
            targets,
            list(targets) * 100,
            ["q_proj"],
            ["k_proj"],
            "all-linear",
            ".*",
            ".*(q_proj|v_proj)",
            r".*\.(q_proj|v_proj)",
            "q_proj|v_proj",
            "(",
            "(?P<x>",
            "a{1000000}",
            "(?i)Q_PROJ",
            ".*" * 3000,
            [],
            "",
            ["q_proj", None],
            {"q_proj": 1},
        ],
        "exclude_modules": ["q_proj", ["v_proj"], "(", ".*", [], None, "x" * 5000],
        "rank_pattern": [{"q_proj": 8}, {"(": 4}, {"q_proj": 0}, {"": 4}, {".*": 4}, {"\ud800": 4}],
        "alpha_pattern": [{"q_proj": 0}, {"(": 4}, {"v_proj": 16.0}, {"x": "y"}],
        "modules_to_save": [["lm_head"], ["\x00"], "lm_head", [], None],
        "layers_to_transform": [[0], [1], 0, [-1], [0, 1], [10**30], "0"],
        "layers_pattern": ["layers", ["layers"], "", None, ["\ud800"]],
        "bias": ["none", "all", "lora_only", "some", None],
        "peft_type": ["LORA", "lora", "ADALORA", "PROMPT_TUNING", "IA3", "", None, "LORA\x00"],
        "task_type": ["CAUSAL_LM", "SEQ_CLS", "NOT_A_TASK", None, 5],
        "init_lora_weights": [True, False, "gaussian", "pissa", "loftq", "olora", "nope", 3],
        "base_model_name_or_path": [
            BASE_NAME,
            None,
            "x" * 100_000,
            "a\x00b",
            "\ud800",
            "../../etc",
        ],
        "use_dora": [True, False, "true"],
        "trainable_token_indices": [[0, 1], {"embed_tokens": [0]}, [-1], "x"],
        "layer_replication": [[[0, 1]], None, []],
        "target_parameters": [["q_proj.weight"], None, []],
        "megatron_config": [{"a": 1}, None],
        "runtime_config": [{"ephemeral_gpu_offload": True}],
    }
    options = typed.get(key)
    if options is not None and rng.random() < 0.6:
        return rng.choice(options)
    return odd_value(rng)


def gen_regex(rng: random.Random, v: ValidAdapter) -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """Backtracking patterns in target_modules / rank_pattern / exclude_modules.

    The module name is 20..27 ``a``s: exponential matching costs up to ~6 s here,
    enough to show in the latency oracle (``FuzzRunner.regex_slow_s``) without
    freezing for hours the process the fuzzer may share with the server.
    """
    n = rng.randint(20, 27)
    module = "a" * n
    evil = rng.choice(["(a+)+b", "(a|aa)+b", "(a*)*b", "(?:a+){2,}b", "(.*a){12}b"])
    t = next(iter(v.tensors.values()))
    rank = t.shape[0]
    k = t.shape[1]
    tensors = {
        f"{PREFIX}{module}.lora_A.weight": Tensor("F32", [rank, k], bytes(4 * rank * k)),
        f"{PREFIX}{module}.lora_B.weight": Tensor("F32", [k, rank], bytes(4 * rank * k)),
    }
    config = dict(v.config)
    where = rng.choice(["target_modules", "rank_pattern", "exclude_modules"])
    if where == "target_modules":
        config["target_modules"] = evil
    elif where == "rank_pattern":
        config["rank_pattern"] = {evil: rank}
    else:
        config["exclude_modules"] = evil
        config["target_modules"] = [module]
    return (
        f"regex: {where}={evil!r} on a {n}-character module name",
        _adapter_files(v, config, safetensors_bytes(tensors, {"format": "pt"})),
        {},
    )


ADAPTER_NAMES = [
    "Medical",
    "a" * 65,
    "-leading",
    "medical-v3",
    "x-v0",
    "ok.name_1",
    "..",
    ".hidden",
    "a/b",
    "a\x00b",
    "\ud800",
    "café",
    "ａｂｃ",
    "con",
    "nul",
    "a" * 64,
    " ",
    "",
    "name\n",
    "medical@prod",
    "medical:v1",
]


def gen_names(rng: random.Random, v: ValidAdapter, index: int) -> tuple[str, str, dict[str, Any]]:
    """Adapter name, namespace, base model, description, request metadata and parents."""
    name = f"fzn-{index}"
    extra: dict[str, Any] = {}
    field_name = rng.choice(
        ["name", "namespace", "base_model", "description", "metadata", "parents", "kind"]
    )
    if field_name == "name":
        name = rng.choice(ADAPTER_NAMES) if rng.random() < 0.7 else odd_string(rng)
        value: Any = name
    elif field_name == "namespace":
        value = rng.choice(
            ["default", "Team", "a" * 65, "n\x00s", "\ud800", "ns-" + str(index), "*", ""]
        )
        extra["namespace"] = value
    elif field_name == "base_model":
        value = rng.choice(
            [BASE_NAME, "x" * 256, "x" * 257, "a\x00b", "\ud800", "org/model", "../up", ""]
        )
        extra["base_model"] = value
    elif field_name == "description":
        value = odd_string(rng) if rng.random() < 0.8 else "d" * 4097
        extra["description"] = value
    elif field_name == "metadata":
        value = {odd_string(rng)[:50]: odd_value(rng) for _ in range(rng.randint(1, 3))}
        if rng.random() < 0.3:
            value = {"deep": deep(rng)}
        extra["metadata"] = value
    elif field_name == "parents":
        value = [
            {
                "ref": rng.choice(["nope-v1", "\x00", "\ud800", "fzn-0"]),
                "relation": "continued_from",
                "params": {"w": odd_value(rng)},
            }
        ]
        extra["parents"] = value
    else:
        value = rng.choice(["dataset", "base_model", "ADAPTER", "", None])
        extra["kind"] = value
    return f"names: {field_name}={value!r:.80}", name, extra


WINDOWS_RESERVED = [
    "CON",
    "con.txt",
    "NUL",
    "nul.json",
    "COM1",
    "lpt9.md",
    "AUX",
    "PRN.log",
    "CONIN$",
]


def gen_paths(rng: random.Random, v: ValidAdapter) -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """Extra files whose paths clash or cannot be materialised on every system."""
    text = encode_text(f"text {rng.random()}\n")
    files = dict(v.files)
    kind = rng.randrange(10)
    if kind == 0:
        files["x"] = text
        files["x/y"] = text + b"2"
        label = "x and x/y"
    elif kind == 1:
        files[ADAPTER_WEIGHTS.upper()] = v.files[ADAPTER_WEIGHTS]
        label = "case twin of the weights"
    elif kind == 2:
        files["README.md"], files["readme.md"] = text, text + b"2"
        label = "README.md + readme.md"
    elif kind == 3:
        files["caf\u00e9.txt"], files["cafe\u0301.txt"] = text, text + b"2"
        label = "NFC/NFD twins"
    elif kind == 4:
        p = rng.choice(
            ["\uff0e\uff0e/x.txt", "a/\uff0e\uff0e/b.txt", "\u2024\u2024/x", "\uff0e/x.txt"]
        )
        files[p] = text
        label = f"fullwidth dots {p!r}"
    elif kind == 5:
        p = rng.choice(WINDOWS_RESERVED)
        files[rng.choice(["", "docs/"]) + p] = b"{}" if p.endswith(".json") else text
        label = f"windows reserved {p}"
    elif kind == 6:
        p = rng.choice(
            ["notes.", "notes ", "dir./a.txt", "dir /a.txt", " lead.txt", "a.txt.", "..."]
        )
        files[p] = text
        label = f"trailing dot/space {p!r}"
    elif kind == 7:
        p = rng.choice(
            [
                "../x",
                "a/../../x",
                "/etc/passwd",
                "C:\\x",
                "a\\b",
                "a//b",
                "./a",
                "a/",
                "\x00",
                "a\tb",
                "\u202ea.txt",
                "x" * 256,
                ("d/" * 400) + "f",
            ]
        )
        files[p] = text
        label = f"bad path {p[:40]!r}"
    elif kind == 8:
        p = rng.choice(
            ["\ud800.txt", "a\udfff/b", "e\u0301\u0301.txt", "ǅ.txt", "İ.txt", "ß.txt", "SS.txt"]
        )
        files[p] = text
        if p == "ß.txt":
            files["SS.txt"] = text + b"2"
        label = f"odd unicode path {p!r}"
    else:
        p = rng.choice(
            [
                "a/b/c/d/e/f/g/h/i/j/k/l.txt",
                "sub/adapter_config.json",
                "sub/adapter_model.safetensors",
            ]
        )
        files[p] = (
            v.files[ADAPTER_CONFIG]
            if p.endswith(".json")
            else (v.files[ADAPTER_WEIGHTS] if p.endswith("safetensors") else text)
        )
        label = f"nested {p}"
    return f"paths: {label}", files, {}


def _pickle_payloads(rng: random.Random) -> tuple[str, bytes]:
    proto = rng.randrange(6)

    class Payload:
        def __reduce__(self):  # what an attacker pickles; never loaded here
            import os

            return (os.system, ("echo pwned",))

    data = pickle.dumps(Payload(), protocol=proto)
    roll = rng.random()
    if roll < 0.2 and proto >= 2:
        return f"pickle protocol {proto}, PROTO header stripped", data[2:]
    if roll < 0.3:
        return "pickle protocol 0 by hand", b"cos\nsystem\n(S'echo pwned'\ntR."
    if roll < 0.4 and proto >= 4:
        return f"pickle protocol {proto}, PROTO+FRAME stripped", data[11:]
    return f"pickle protocol {proto}", data


def _container(rng: random.Random) -> tuple[str, bytes]:
    label, payload = _pickle_payloads(rng)
    kind = rng.randrange(9)
    if kind == 0:
        return label, payload
    if kind == 1:
        for _ in range(rng.randint(1, 6)):
            payload = gzip.compress(payload)
        return f"gzip^n of {label}", payload
    if kind == 2:
        return f"bz2 of {label}", bz2.compress(payload)
    if kind == 3:
        return f"xz of {label}", lzma.compress(payload)
    if kind == 4:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("archive/data.pkl")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        data = buf.getvalue()
        if rng.random() < 0.5:
            return f"tar.gz of {label}", gzip.compress(data)
        return f"tar of {label}", data
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    data = buf.getvalue()
    if kind == 5:
        return f"zip of {label}", data
    if kind == 6:
        junk = rng.choice([b"junk", b"\x00" * 512, b"# readme\n" * 10, b"{}"])
        return f"zip with junk {junk[:6]!r} before, of {label}", junk + data
    if kind == 7:
        return f"xz(gzip) of {label}", lzma.compress(gzip.compress(payload))
    return (
        f"numpy-like of {label}",
        b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
        + b" " * 40
        + b"\n"
        + payload,
    )


INNOCENT_NAMES = [
    "README.md",
    "tokenizer.json",
    "training_args.json",
    "notes.txt",
    "x.SAFETENSORS",
    "extra.safetensors",
    "weights.Safetensors",
    "data.dat",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "model.npz",
    "archive",
]


def gen_containers(
    rng: random.Random, v: ValidAdapter
) -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """Pickles (protocols 0-5, stripped), compressed and archived, under innocent names."""
    label, data = _container(rng)
    files = dict(v.files)
    where = rng.random()
    if where < 0.1:
        files[ADAPTER_WEIGHTS] = data
        path = ADAPTER_WEIGHTS
    elif where < 0.15:
        files[ADAPTER_CONFIG] = data
        path = ADAPTER_CONFIG
    else:
        path = rng.choice(INNOCENT_NAMES)
        files[path] = data
    return f"containers: {label} as {path}", files, {}


def gen_mutation(
    rng: random.Random, v: ValidAdapter
) -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """Byte-level mutation (flip, insert, delete, splice) of one of the valid files."""
    path = rng.choice([ADAPTER_WEIGHTS, ADAPTER_WEIGHTS, ADAPTER_CONFIG])
    data = bytearray(v.files[path])
    (n,) = struct.unpack("<Q", v.files[ADAPTER_WEIGHTS][:8])
    limit = 8 + n if path == ADAPTER_WEIGHTS and rng.random() < 0.8 else len(data)
    ops = []
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(min(limit, len(data))) if data else 0
        if op == 0:
            data[pos] ^= 1 << rng.randrange(8)
            ops.append(f"flip@{pos}")
        elif op == 1:
            ins = bytes([rng.choice(b'"{}[],:\\\x00\xff\xed0 ')])
            data[pos:pos] = ins
            ops.append(f"insert {ins!r}@{pos}")
        elif op == 2:
            del data[pos : pos + rng.randint(1, 8)]
            ops.append(f"delete@{pos}")
        elif op == 3:
            data[pos] = rng.choice(b'"\\u0')
            ops.append(f"set@{pos}")
        else:
            src = rng.randrange(len(data)) if data else 0
            chunk = data[src : src + rng.randint(1, 16)]
            data[pos:pos] = chunk
            ops.append(f"splice@{pos}")
    files = dict(v.files)
    files[path] = bytes(data)
    return (
        f"mutation: {path} {' '.join(ops)}",
        files,
        {"base_model": BASE_NAME} if rng.random() < 0.5 else {},
    )


def gen_manifest(
    rng: random.Random, v: ValidAdapter
) -> tuple[str, list[dict[str, Any]] | None, dict[str, Any]]:
    """Declared manifests that lie about sizes or hashes (the blobs sent are the real ones)."""
    import hashlib

    entries = [
        {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for p, b in v.files.items()
    ]
    target = rng.choice(entries)
    kind = rng.randrange(6)
    if kind == 0:
        target["size"] += rng.choice([1, -1, 2**40])
        label = "size +-"
    elif kind == 1:
        target["sha256"] = "0" * 64
        label = "sha256 zero"
    elif kind == 2:
        target["sha256"] = target["sha256"].upper()
        label = "sha256 upper"
    elif kind == 3:
        target["size"] = rng.choice([-1, 2**63, 2**64, 1.5, "10", True])
        label = f"size {target['size']!r}"
    elif kind == 4:
        entries.append(dict(target))
        label = "file listed twice"
    else:
        other = entries[0] if entries[1] is target else entries[1]
        target["sha256"] = other["sha256"]
        label = "two paths, one sha, sizes differ"
    return f"manifest: {target['path']} {label}", entries, {}


FAMILIES = {
    "valid": 0.14,
    "header": 0.18,
    "config": 0.22,
    "names": 0.08,
    "paths": 0.10,
    "containers": 0.12,
    "mutation": 0.09,
    "manifest": 0.04,
    "regex": 0.03,
}


def make_case(seed: int, index: int, valid: ValidAdapter, family: str | None = None) -> Case:
    """Case ``index`` of run ``seed`` (independent of every other case)."""
    rng = random.Random(f"{seed}:{index}")
    fam = family or rng.choices(list(FAMILIES), weights=list(FAMILIES.values()))[0]
    name = f"fz{seed % 100000}-{index}"
    if fam == "names":
        label, name, extra = gen_names(rng, valid, index)
        return Case(index, fam, label, name, dict(valid.files), body_extra=extra)
    if fam == "manifest":
        label, declared, extra = gen_manifest(rng, valid)
        return Case(index, fam, label, name, dict(valid.files), body_extra=extra, declared=declared)
    gen = {
        "valid": gen_valid,
        "header": gen_header,
        "config": gen_config,
        "paths": gen_paths,
        "containers": gen_containers,
        "mutation": gen_mutation,
        "regex": gen_regex,
    }[fam]
    label, files, extra = gen(rng, valid)
    case = Case(index, fam, label, name, files, body_extra=extra)
    if fam == "valid" and index > 0 and rng.random() < 0.15:
        case.republish_of = index  # send it twice: the second must answer the same version
    return case
