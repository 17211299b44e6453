"""``loreg search``: find adapters by text and filters (``GET /v1/search``)."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit, table
from loreg.vocabulary import SearchSort

if TYPE_CHECKING:
    from loreg.client import Registry

#: Results shown when ``--limit`` is not given.
DEFAULT_RESULTS = 20
#: The largest page the server sends.
MAX_PAGE = 200


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def setup_search(search: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg search [WORDS...] [filters]``."""
    search.set_defaults(handler=_cmd_search)
    search.add_argument(
        "words", nargs="*", metavar="WORD", help="words to find in name, tags, description, card"
    )
    search.add_argument("--namespace", "-n", help="only this namespace")
    search.add_argument("--base-model", help="only adapters of this base model")
    search.add_argument("--task-type", help="PEFT task type, e.g. CAUSAL_LM")
    search.add_argument(
        "--tag", action="append", default=[], help="a tag it must carry (repeat: all of them)"
    )
    search.add_argument("--rank-min", type=int, help="smallest LoRA rank r")
    search.add_argument("--rank-max", type=int, help="largest LoRA rank r")
    search.add_argument("--peft-type", help="e.g. LORA")
    search.add_argument("--kind", help="adapter or dataset")
    search.add_argument("--created-after", metavar="ISO_TIME", help="created at or after")
    search.add_argument("--created-before", metavar="ISO_TIME", help="created before")
    alias = search.add_mutually_exclusive_group()
    alias.add_argument(
        "--has-alias", dest="has_alias", action="store_const", const=True, help="with an alias"
    )
    alias.add_argument(
        "--no-alias", dest="has_alias", action="store_const", const=False, help="without any"
    )
    search.add_argument(
        "--yanked", action="store_true", help="only adapters whose every version is yanked"
    )
    search.add_argument(
        "--sort",
        choices=list(SearchSort),
        help="relevance (default with words), created (newest first) or name",
    )
    search.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_RESULTS,
        help=f"show at most this many results (default {DEFAULT_RESULTS}); fetched lazily",
    )


def _cmd_search(args: argparse.Namespace, registry: Registry) -> int:
    hits = registry.search(
        " ".join(args.words) or None,
        namespace=args.namespace,
        base_model=args.base_model,
        task_type=args.task_type,
        tags=args.tag or None,
        rank_min=args.rank_min,
        rank_max=args.rank_max,
        peft_type=args.peft_type,
        kind=args.kind,
        created_after=args.created_after,
        created_before=args.created_before,
        has_alias=args.has_alias,
        yanked=True if args.yanked else None,
        sort=args.sort,
        page_size=min(args.limit, MAX_PAGE),
    )
    found = list(itertools.islice(hits, args.limit))

    def human(out: TextIO) -> None:
        if not found:
            out.write("no adapters found\n")
            return
        rows = [
            [
                h.get("ref"),
                h.get("base_model"),
                h.get("rank"),
                ", ".join(h.get("tags") or []) or None,
                (h.get("description") or "")[:60] or None,
            ]
            for h in found
        ]
        table(out, ["REF", "BASE MODEL", "RANK", "TAGS", "DESCRIPTION"], rows)

    return emit(args, found, human)
