"""User regular expressions (PEFT ``target_modules`` & co.) matched in bounded time.

PEFT matches a string ``target_modules`` / ``exclude_modules`` with
``re.fullmatch(pattern, module)`` and ``rank_pattern`` / ``alpha_pattern`` keys
with ``re.match(rf"(.*\\.)?({key})$", module)``. Those patterns come from an
uploaded config and the names from an uploaded safetensors header, so a
backtracking match such as ``(a+)+b`` against ``"a" * 34`` can run for hours.

Matching here uses the third-party ``regex`` module, not ``re``:

* it takes a ``timeout`` and raises ``TimeoutError`` when a match runs past
  it, so a catastrophic pattern costs at most the budget left;
* it releases the GIL while matching, so other requests (served by other
  threads of the same process) keep answering meanwhile;
* it reads ``re``'s syntax, including look-arounds that real configs use
  (``^(?!.*vision_tower).*q_proj$``), which RE2 (``google-re2``) refuses, so
  no config PEFT itself loads is refused for its syntax.

A pattern must also compile with ``re`` (what PEFT uses when the adapter is
loaded) and is at most :data:`MAX_PATTERN_LENGTH` characters long. All
matching of one commit shares one :class:`MatchBudget`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import regex

from registry.errors import InvalidConfig

#: Longest pattern accepted (real ones are well under 200 characters).
MAX_PATTERN_LENGTH = 1024
#: Total seconds all pattern matches of one validation may take.
DEFAULT_BUDGET_S = 0.25


class PatternError(ValueError):
    """A pattern that is too long or does not compile; the message says why."""


@dataclass
class MatchBudget:
    """Seconds of pattern matching one validation may spend, across all its matches.

    Only time inside matches counts, so a busy server does not refuse a config
    whose matching merely waited for a CPU.
    """

    seconds: float = DEFAULT_BUDGET_S
    spent: float = field(default=0.0, init=False)

    def exhausted(self) -> InvalidConfig:
        """The error to raise once the budget is spent."""
        return InvalidConfig(
            f"matching the config's module patterns took longer than {self.seconds:g} s "
            "(a pattern with nested repetition such as '(a+)+' backtracks exponentially); "
            "simplify target_modules / exclude_modules / rank_pattern / alpha_pattern "
            "or list the module names"
        )


@dataclass(frozen=True)
class SafePattern:
    """A compiled user pattern; every match draws on a :class:`MatchBudget`."""

    source: str
    where: str
    compiled: regex.Pattern[str]

    def _run(self, method: str, text: str, budget: MatchBudget) -> bool:
        left = budget.seconds - budget.spent
        if left <= 0:
            raise budget.exhausted()
        start = time.perf_counter()
        try:
            found = getattr(self.compiled, method)(text, timeout=left)
        except TimeoutError:
            budget.spent = budget.seconds
            raise budget.exhausted() from None
        finally:
            budget.spent += time.perf_counter() - start
        return found is not None

    def fullmatch(self, text: str, budget: MatchBudget) -> bool:
        """Whether the whole of ``text`` matches (PEFT's ``re.fullmatch``)."""
        return self._run("fullmatch", text, budget)

    def match(self, text: str, budget: MatchBudget) -> bool:
        """Whether a prefix of ``text`` matches (PEFT's ``re.match``)."""
        return self._run("match", text, budget)


def compile_pattern(pattern: str, where: str) -> SafePattern:
    """Compile a user pattern for bounded-time matching; :class:`PatternError` if unusable.

    ``where`` names the config field in messages.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"{where}: pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}"
        )
    try:
        re.compile(pattern)  # PEFT loads the adapter with ``re``: it must accept it too
        compiled = regex.compile(pattern, flags=regex.V0)
    except (re.error, regex.error, RecursionError, OverflowError, ValueError) as exc:
        raise PatternError(
            f"{where}: {pattern[:100]!r} is not a valid regular expression ({exc})"
        ) from None
    return SafePattern(pattern, where, compiled)


def rank_key_pattern(key: str, where: str) -> SafePattern:
    """The pattern PEFT builds from a ``rank_pattern`` / ``alpha_pattern`` key."""
    if len(key) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"{where}: key is {len(key)} characters long; the limit is {MAX_PATTERN_LENGTH}"
        )
    return compile_pattern(rf"(.*\.)?({key})$", where)
