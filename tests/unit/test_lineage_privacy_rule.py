"""The lineage walk's SQL privacy parameter says what ``Principal.can(ns, "read")`` says.

The recursive CTE decides which private versions it walks through from
``readable_namespaces(principal)``; the answer hides nodes with ``hidden_from``, which
asks ``Principal.can``. Both must agree for every caller and namespace, or the walk
would go through a node it then hides (or stop at one it shows).
"""

from __future__ import annotations

import itertools

import pytest

from loreg.vocabulary import SCOPE_LEVELS, Scope
from registry.auth import ALL_NAMESPACES, ANONYMOUS, Principal
from registry.services.lineage import hidden_from
from registry.services.lineage_walk import readable_namespaces

NAMESPACES = ["default", "lab", "team-a", ALL_NAMESPACES]
LEVELS = [0, *SCOPE_LEVELS.values()]


def _principals() -> list[Principal | None]:
    out: list[Principal | None] = [None, ANONYMOUS]
    for lab, star, team in itertools.product(LEVELS, LEVELS, LEVELS):
        grants = {
            ns: lvl for ns, lvl in (("lab", lab), (ALL_NAMESPACES, star), ("team-a", team)) if lvl
        }
        out.append(Principal(token_id=1, name="t", grants=grants))
    return out


@pytest.mark.parametrize("principal", _principals())
def test_the_walk_reads_exactly_the_namespaces_the_caller_may_read(principal) -> None:
    readable = readable_namespaces(principal)
    for ns in NAMESPACES[:-1]:
        walked = readable is None or ns in readable  # a private namespace the CTE walks into
        assert walked is not hidden_from(ns, True, principal), (principal, ns)
        assert hidden_from(ns, False, principal) is False  # public: shown and walked
        if principal is not None:
            assert walked == principal.can(ns, Scope.READ.value)
