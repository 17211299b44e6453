"""What the publish fuzzer checks: the real loaders' verdict on every accepted file.

* :func:`safetensors_problem`: safetensors' own (Rust) parser, ``safetensors.deserialize``.
* :func:`peft_config_problem`: PEFT's own loader, ``PeftConfig.from_pretrained`` on a
  folder holding the accepted ``adapter_config.json`` (JSON read, ``check_kwargs``,
  ``from_peft_type`` -> ``LoraConfig(**kwargs)`` and its ``__post_init__`` checks).
* :class:`PeftLoader`: ``PeftModel.from_pretrained`` of the accepted adapter onto the
  tiny Llama it claims (when the version names the registered ``tiny-llama``).
* :func:`container_problem`: pickles that reach a global (the code-running kind),
  zip/tar archives and compressed streams holding them, found by content.
* :func:`kind_problem`: a ``.json`` that is not JSON, a text file that is not UTF-8,
  a ``*.SAFETENSORS`` (any case) the real parser refuses.
* :func:`path_problems`: paths of one version that cannot all be materialised on
  macOS and Windows (case or NFC twins, ``x`` beside ``x/y``, reserved names,
  trailing dots or spaces, segments NFKC turns into ``..``).
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import importlib.machinery
import importlib.util
import io
import json
import lzma
import pickle
import tarfile
import tempfile
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_UNPACK = 16 * 2**20
MAX_DEPTH = 10
TEXT_SUFFIXES = (".md", ".txt", ".jsonl", ".yaml", ".yml", ".py", ".model")
RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]
}
WINDOWS_FORBIDDEN = set('<>:"|?*\\') | {chr(c) for c in range(32)}


def safetensors_problem(data: bytes) -> str | None:
    """Why safetensors' own parser refuses ``data``, or None when it loads."""
    import safetensors

    try:
        safetensors.deserialize(data)
    except Exception as exc:  # noqa: BLE001 - any refusal is the verdict
        return f"safetensors.deserialize refuses it: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def _needs_scipy(exc: BaseException) -> bool:
    """PEFT refused only because scipy is not installed here (LoftQ): the environment's verdict."""
    return isinstance(exc, ImportError) and "scipy" in str(exc)


@contextlib.contextmanager
def _scipy_claimed_present() -> Iterator[None]:
    """Make ``importlib.util.find_spec("scipy")`` answer, so PEFT's later LoftQ checks run."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "scipy":
            return importlib.machinery.ModuleSpec("scipy", None)
        return real(name, *args, **kwargs)

    importlib.util.find_spec = find_spec
    try:
        yield
    finally:
        importlib.util.find_spec = real


def peft_config_problem(data: bytes) -> str | None:
    """Why PEFT's ``PeftConfig.from_pretrained`` refuses this adapter_config.json, or None.

    ``init_lora_weights: "loftq"`` needs scipy, an optional dependency: where it is
    missing the config is judged as if it were installed (PEFT's other checks still run).
    """
    from peft import LoraConfig, PeftConfig

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "adapter_config.json").write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    config = PeftConfig.from_pretrained(tmp)
                except ImportError as exc:
                    if not _needs_scipy(exc):
                        raise
                    with _scipy_claimed_present():
                        config = PeftConfig.from_pretrained(tmp)
        except Exception as exc:  # noqa: BLE001
            return f"PeftConfig.from_pretrained refuses it: {type(exc).__name__}: {str(exc)[:200]}"
    if not isinstance(config, LoraConfig):
        return f"PEFT loads it as {type(config).__name__}, not LoraConfig"
    return None


class PeftLoader:
    """``PeftModel.from_pretrained`` onto a fresh copy of the tiny Llama (torch, peft)."""

    def __init__(self) -> None:
        from tests.support.tiny import tiny_llama

        self.base = tiny_llama(0)

    def problem(self, config: bytes, weights: bytes) -> str | None:
        """Why PEFT cannot load this adapter onto the tiny Llama, or None."""
        from peft import PeftModel

        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "adapter_config.json").write_bytes(config)
            Path(tmp, "adapter_model.safetensors").write_bytes(weights)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    PeftModel.from_pretrained(copy.deepcopy(self.base), tmp)
            except Exception as exc:  # noqa: BLE001
                if _needs_scipy(exc):
                    return None  # LoftQ without scipy installed here: not the adapter's fault
                return f"PeftModel.from_pretrained fails: {type(exc).__name__}: {str(exc)[:200]}"
        return None


class _Reached(Exception):
    """The unpickler asked for a global or a persistent id: this pickle can run code."""


class _Probe(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise _Reached(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Reached(f"persistent id {pid!r:.40}")


def _pickle_global(data: bytes) -> str | None:
    try:
        _Probe(io.BytesIO(data)).load()
    except _Reached as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - not a pickle (or a broken one)
        return None
    return None


def _decompress(data: bytes) -> tuple[str, bytes] | None:
    try:
        if data.startswith(b"\x1f\x8b"):
            return "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, MAX_UNPACK)
        if data.startswith(b"BZh"):
            return "bz2", bz2.BZ2Decompressor().decompress(data, MAX_UNPACK)
        if data.startswith(b"\xfd7zXZ\x00"):
            return "xz", lzma.LZMADecompressor().decompress(data, MAX_UNPACK)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
        return None
    return None


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            return tar.next() is not None
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return False


def container_problem(data: bytes, depth: int = 0) -> str | None:
    """A pickle reaching a global, or an archive/compressed stream found in ``data``."""
    found = _pickle_global(data)
    if found is not None:
        return f"a pickle that loads the global {found}"
    if zipfile.is_zipfile(io.BytesIO(data)):
        return "a zip archive (torch.save / npz format)"
    if _is_tar(data):
        return "a tar archive (torch's legacy format)"
    if depth < MAX_DEPTH:
        inner = _decompress(data)
        if inner is not None:
            found = container_problem(inner[1], depth + 1)
            if found is not None:
                return f"{inner[0]} of {found}"
    return None


def kind_problem(path: str, data: bytes) -> str | None:
    """What the file's name claims and its bytes are not."""
    lower = path.lower()
    if lower.endswith(".safetensors"):
        return safetensors_problem(data)
    if lower.endswith(".json"):
        try:
            json.loads(data.decode("utf-8"), parse_constant=lambda c: 1 / 0)
        except Exception as exc:  # noqa: BLE001
            return f"named .json but not strict JSON ({type(exc).__name__})"
    elif lower.endswith(TEXT_SUFFIXES):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "named as a text file but not UTF-8"
    return None


def _segment_problem(segment: str) -> str | None:
    try:
        segment.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate"
    if unicodedata.normalize("NFKC", segment) in (".", ".."):
        return "becomes '.' or '..' under NFKC"
    if segment.endswith((".", " ")):
        return "ends with a dot or space (Windows drops it)"
    if segment.split(".", 1)[0].upper().rstrip(" ") in RESERVED:
        return "is a reserved device name on Windows"
    bad = sorted(set(segment) & WINDOWS_FORBIDDEN)
    if bad:
        return f"contains {bad!r}, forbidden in Windows file names"
    return None


def path_problems(paths: list[str]) -> list[str]:
    """Why the paths of one version cannot all be written to a macOS or Windows folder."""
    problems = []
    folded: dict[str, str] = {}
    for path in paths:
        for segment in path.split("/"):
            why = _segment_problem(segment)
            if why:
                problems.append(f"path {path!r:.80} segment {segment!r:.40} {why}")
        try:
            key = unicodedata.normalize("NFC", path).casefold()
        except Exception:  # noqa: BLE001
            continue
        if key in folded:
            problems.append(
                f"paths {folded[key]!r:.80} and {path!r:.80} are the same file on macOS/Windows"
            )
        folded[key] = path
    for key, path in folded.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in folded:
                problems.append(f"{folded[prefix]!r:.80} is a file and a folder of {path!r:.80}")
    return problems


def error_body_problem(response: Any) -> str | None:
    """A 4xx answer must be ``{"error": {"code": str, "message": str (non-empty)}}``."""
    try:
        body = response.json()
    except Exception:  # noqa: BLE001
        return f"error body is not JSON: {response.text[:120]!r}"
    err = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(err, dict)
        and isinstance(err.get("code"), str)
        and isinstance(err.get("message"), str)
        and err["message"]
    ):
        return f"error body is not {{'error': {{code, message}}}}: {response.text[:200]!r}"
    return None
