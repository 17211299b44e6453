"""The one parser for adapter references, shared by the registry and the client.

Grammar::

    ref       = [namespace "/"] name [selector]
    selector  = "-v" N | ":v" N | ":" N | "@" alias | "@sha256:" 64*lowercase-hex
    N         = a version number >= 1 without leading zeros

A bare ``name`` means the latest version; ``medical-v3``, ``medical:v3`` and
``medical:3`` all mean version 3 of ``medical`` (the canonical spelling is
``-v3``). ``name@latest`` is accepted as another spelling of the latest
version, so ``latest`` cannot be an alias name.

Names (namespace, adapter, alias) are lowercase ``[a-z0-9][a-z0-9._-]{0,63}``
without ``..``; an adapter name may not end in ``-v<digits>`` (it would read as
a version) and an alias may not be ``sha256``, ``latest`` or look like a version
(``v3``, ``3``). Standard library only: the client core imports this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TypedDict

from loreg.errors import InvalidNameError, InvalidRefError

DEFAULT_NAMESPACE = "default"

#: Longest name (namespace, adapter or alias).
MAX_NAME_LENGTH = 64
#: Largest version number (fits a signed 32-bit database column).
MAX_VERSION = 2**31 - 1
#: Longest ref string worth parsing: namespace/name@sha256:<64 hex> plus slack.
MAX_REF_LENGTH = 2 * MAX_NAME_LENGTH + 1 + len("@sha256:") + 64 + 16

NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_NAME = re.compile(NAME_PATTERN)
_NAME_CHAR = re.compile(r"[a-z0-9._-]")
_TRAILING_VERSION = re.compile(r"^(.+)-v([0-9]+)$")
_VERSION_LIKE = re.compile(r"v?[0-9]+")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]+")

_LATEST = "latest"
_RESERVED_ALIASES = frozenset({"sha256", _LATEST})


def _name_problem(name: object) -> str | None:
    """Why ``name`` breaks the base name grammar, or None when it is fine."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    for ch in name:
        if not _NAME_CHAR.fullmatch(ch):
            if ch.isupper():
                return f"contains uppercase {ch!r}; names are lowercase"
            return f"contains {ch!r}; use only lowercase letters, digits, '.', '_' and '-'"
    if not name[0].isalnum():
        return f"starts with {name[0]!r}; it must start with a lowercase letter or digit"
    if ".." in name:
        return "contains '..'"
    return None


def validate_name(name: str, kind: str = "name") -> str:
    """Check a namespace/adapter/alias name against the name grammar; return it.

    Raises :class:`InvalidNameError` naming ``kind`` (e.g. ``"adapter name"``) and
    the problem.
    """
    problem = _name_problem(name)
    if problem is not None:
        raise InvalidNameError(
            f"invalid {kind} {name!r}: it {problem} (allowed: {NAME_PATTERN}, without '..')"
        )
    return name


def validate_adapter_name(name: str) -> str:
    """Check an adapter name: the name grammar, and no trailing ``-v<digits>``."""
    validate_name(name, "adapter name")
    match = _TRAILING_VERSION.match(name)
    if match:
        raise InvalidNameError(
            f"invalid adapter name {name!r}: a trailing '-v{match.group(2)}' reads as a "
            f"version ({match.group(1)!r} version {match.group(2)}); pick another name"
        )
    return name


def validate_alias(alias: str) -> str:
    """Check an alias name: the name grammar, not reserved, not version-like."""
    validate_name(alias, "alias")
    if alias in _RESERVED_ALIASES:
        raise InvalidNameError(f"invalid alias {alias!r}: the name is reserved")
    if _VERSION_LIKE.fullmatch(alias):
        raise InvalidNameError(
            f"invalid alias {alias!r}: it looks like a version number; "
            "use a word such as 'prod' or 'staging'"
        )
    return alias


def _validate_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidRefError(
            f"invalid digest {digest!r}: expected 'sha256:' followed by 64 lowercase hex digits"
        )
    return digest


def _validate_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidRefError(f"invalid version {version!r}: must be an integer")
    if not 1 <= version <= MAX_VERSION:
        raise InvalidRefError(f"invalid version {version}: must be between 1 and {MAX_VERSION}")
    return version


@dataclass(frozen=True)
class Ref:
    """A parsed reference to one adapter version (or to the latest one).

    At most one of ``version``, ``alias`` and ``digest`` is set; none means the
    latest version. ``namespace`` None means the caller's default namespace.
    """

    namespace: str | None
    name: str
    version: int | None = None
    alias: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.namespace is not None:
            validate_name(self.namespace, "namespace")
        validate_adapter_name(self.name)
        chosen = [x for x in (self.version, self.alias, self.digest) if x is not None]
        if len(chosen) > 1:
            raise InvalidRefError(
                "a ref selects by at most one of version, alias and digest; "
                f"got version={self.version!r}, alias={self.alias!r}, digest={self.digest!r}"
            )
        if self.version is not None:
            _validate_version(self.version)
        if self.alias is not None:
            validate_alias(self.alias)
        if self.digest is not None:
            _validate_digest(self.digest)

    def with_namespace(self, default: str) -> Ref:
        """This ref with ``namespace`` filled in from ``default`` when it is None."""
        if self.namespace is not None:
            return self
        return replace(self, namespace=default)

    @property
    def is_latest(self) -> bool:
        """True when the ref selects the latest version (no version, alias or digest)."""
        return self.version is None and self.alias is None and self.digest is None

    def selector(self) -> str:
        """``latest``, ``v3``, ``@prod`` or ``@sha256:<hex>`` (a cache key)."""
        if self.version is not None:
            return f"v{self.version}"
        if self.alias is not None:
            return f"@{self.alias}"
        if self.digest is not None:
            return f"@{self.digest}"
        return _LATEST

    def canonical(self) -> str:
        """The one canonical spelling, e.g. ``acme/medical-v3``; needs a namespace."""
        if self.namespace is None:
            raise ValueError(
                f"ref {self.name!r} has no namespace; call with_namespace() before canonical()"
            )
        base = f"{self.namespace}/{self.name}"
        if self.version is not None:
            return f"{base}-v{self.version}"
        if self.alias is not None:
            return f"{base}@{self.alias}"
        if self.digest is not None:
            return f"{base}@{self.digest}"
        return base

    def __str__(self) -> str:
        if self.namespace is None:
            selector = "" if self.is_latest else self.selector()
            if self.version is not None:
                selector = f"-{selector}"
            return f"{self.name}{selector}"
        return self.canonical()


def format_ref(
    namespace: str,
    name: str,
    version: int | None = None,
    alias: str | None = None,
    digest: str | None = None,
) -> str:
    """The canonical ref string for the given parts (validated)."""
    return Ref(namespace, name, version=version, alias=alias, digest=digest).canonical()


def _parse_version_number(digits: str, text: str) -> int:
    if not _DIGITS.fullmatch(digits):
        raise InvalidRefError(
            f"invalid ref {text!r}: version {digits!r} is not a number (write e.g. 'name-v3')"
        )
    if len(digits) > 1 and digits[0] == "0":
        raise InvalidRefError(
            f"invalid ref {text!r}: version {digits!r} has a leading zero; write {int(digits)}"
        )
    value = int(digits)
    if not 1 <= value <= MAX_VERSION:
        raise InvalidRefError(
            f"invalid ref {text!r}: version {value} is out of range (1..{MAX_VERSION})"
        )
    return value


class _Selector(TypedDict, total=False):
    """The selector part of a ref, as :class:`Ref` keyword arguments (at most one)."""

    version: int
    alias: str
    digest: str


def _split_selector(rest: str, text: str) -> tuple[str, _Selector]:
    """Split ``name<selector>`` into the name and Ref keyword arguments."""
    if "@" in rest:
        name, _, sel = rest.partition("@")
        if not sel:
            raise InvalidRefError(f"invalid ref {text!r}: nothing after '@'")
        if sel.startswith("sha256:"):
            if not _DIGEST.fullmatch(sel):
                raise InvalidRefError(
                    f"invalid ref {text!r}: a digest is 'sha256:' followed by "
                    "64 lowercase hex digits"
                )
            return name, {"digest": sel}
        if sel == _LATEST:
            return name, {}
        try:
            validate_alias(sel)
        except InvalidNameError as exc:
            raise InvalidRefError(f"invalid ref {text!r}: {exc}") from None
        return name, {"alias": sel}
    if ":" in rest:
        name, _, sel = rest.partition(":")
        if not sel:
            raise InvalidRefError(f"invalid ref {text!r}: nothing after ':'")
        digits = sel[1:] if sel.startswith("v") else sel
        return name, {"version": _parse_version_number(digits, text)}
    match = _TRAILING_VERSION.match(rest)
    if match:
        return match.group(1), {"version": _parse_version_number(match.group(2), text)}
    return rest, {}


def parse_ref(text: str, default_namespace: str | None = None) -> Ref:
    """Parse ``[namespace/]name[-vN|:vN|:N|@alias|@sha256:<hex>]`` into a :class:`Ref`.

    ``default_namespace`` fills in a missing namespace (else it stays None).
    Raises :class:`InvalidRefError` with a message naming the problem.
    """
    if not isinstance(text, str):
        raise InvalidRefError(f"a ref must be a string, got {type(text).__name__}")
    if not text:
        raise InvalidRefError("empty ref: expected '[namespace/]name[-vN|@alias]'")
    if len(text) > MAX_REF_LENGTH:
        raise InvalidRefError(f"ref is {len(text)} characters long; the limit is {MAX_REF_LENGTH}")
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise InvalidRefError(f"invalid ref {text!r}: it contains whitespace")
    if text.count("/") > 1:
        raise InvalidRefError(f"invalid ref {text!r}: at most one '/' (between namespace and name)")
    namespace, slash, rest = text.rpartition("/")
    if slash and not namespace:
        raise InvalidRefError(f"invalid ref {text!r}: empty namespace before '/'")
    if not rest:
        raise InvalidRefError(f"invalid ref {text!r}: missing adapter name")
    name, selector = _split_selector(rest, text)
    if not name:
        raise InvalidRefError(f"invalid ref {text!r}: missing adapter name")
    try:
        if slash:
            validate_name(namespace, "namespace")
        elif default_namespace is not None:
            namespace = validate_name(default_namespace, "default namespace")
        validate_adapter_name(name)
        return Ref(namespace or None, name, **selector)
    except InvalidRefError as exc:
        raise InvalidRefError(f"invalid ref {text!r}: {exc}") from None
