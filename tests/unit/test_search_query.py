"""Search's pure parts: the words both engines index, the tsvector literal, the checks
of the query parameters, and the SDK/CLI paging lazily through GET /v1/search."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loreg import cli
from loreg.vocabulary import SearchSort
from registry.errors import InvalidName, InvalidRequest
from registry.services import search, search_index
from tests.support.fake_registry import FakeRegistry, make_registry


def test_words_are_runs_of_letters_and_digits_lower_cased():
    assert search_index.words("Llama-3.2_Med (QA)") == ["llama", "3", "2", "med", "qa"]
    assert search_index.words('"a*" & b:c | !d') == ["a", "b", "c", "d"]
    assert search_index.words("Médical") == ["médical"]
    assert search_index.words(None) == [] and search_index.words("*** ()\x00") == []
    assert search_index.words("x" * 100) == ["x" * search_index.MAX_WORD]


@given(st.text())
def test_words_never_hold_query_syntax(text):
    for word in search_index.words(text):
        assert word and word.isalnum() and word == word.lower()
        assert not set(word) & set("\"'*:&|!()\\{}^-+ \x00")


def test_the_tsvector_literal_weights_each_field():
    literal = search_index.tsvector_literal(
        {"name": ["med", "llama"], "tags": ["qa"], "description": ["notes"], "card": []}
    )
    assert literal == "'med':1A 'llama':2A 'qa':3B 'notes':4C"


def test_tsvector_positions_are_capped():
    literal = search_index.tsvector_literal(
        {"name": [], "tags": [], "description": [], "card": ["w"] * 16400}
    )
    assert literal.split()[-1] == "'w':16383D"


def test_tags_are_normalized():
    assert search_index.normalize_tag("  Medical ") == "medical"
    assert search_index.normalize_tag("") is None
    assert search_index.normalize_tag("x" * 65) is None
    assert search.parse_tags(["Medical,qa", "qa", "legal"]) == ("medical", "qa", "legal")
    with pytest.raises(InvalidRequest, match="empty"):
        search.parse_tags(["a,,b"])
    with pytest.raises(InvalidRequest, match="at most 16"):
        search.parse_tags([",".join(f"t{i}" for i in range(17))])


def test_unknown_parameters_are_named_with_the_accepted_ones():
    search.check_parameters(["q", "tags", "limit", "cursor"])
    with pytest.raises(InvalidRequest) as caught:
        search.check_parameters(["q", "rnak_min", "tag"])
    assert "'rnak_min', 'tag'" in caught.value.message
    assert caught.value.details["unknown"] == ["rnak_min", "tag"]
    assert "rank_min" in caught.value.details["accepted"]


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"rank_min": 8, "rank_max": 4}, InvalidRequest, "rank_min (8)"),
        ({"sort": SearchSort.RELEVANCE}, InvalidRequest, "needs a text query"),
        ({"q": "()*:&"}, InvalidRequest, "no letters or digits"),
        ({"task_type": "chat"}, InvalidRequest, "CAUSAL_LM"),
        ({"peft_type": "lo ra"}, InvalidRequest, "peft_type"),
        ({"kind": "base_model"}, InvalidRequest, "adapter, dataset"),
        ({"namespace": "Bad Name"}, InvalidName, "namespace"),
        ({"base_model": "a/b/c"}, InvalidName, "base model"),
        (
            {
                "created_after": datetime(2026, 2, 1, tzinfo=UTC),
                "created_before": datetime(2026, 1, 1, tzinfo=UTC),
            },
            InvalidRequest,
            "not before",
        ),
    ],
)
def test_bad_combinations_are_refused(kwargs, error, needle):
    with pytest.raises(error) as caught:
        search.build_query(**kwargs)
    assert needle in caught.value.message


def test_defaults_and_normalization():
    query = search.build_query(q="  Med LLAMA med ", task_type="causal_lm", peft_type="lora")
    assert query.terms == ["med", "llama"]
    assert query.order == SearchSort.RELEVANCE
    assert (query.task_type, query.peft_type) == ("CAUSAL_LM", "LORA")
    assert search.build_query().order == SearchSort.CREATED
    assert search.build_query(q="   ").q is None  # blank: no text query
    naive = search.build_query(created_after=datetime(2026, 1, 1, 12))
    assert naive.created_after == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_a_cursor_scope_covers_every_filter_and_the_sort():
    base = search.build_query(q="med")
    assert base.scope() == search.build_query(q="MED!").scope()  # same words
    others = [
        search.build_query(q="med", sort=SearchSort.NAME),
        search.build_query(q="med", tags=["a"]),
        search.build_query(q="med", rank_min=1),
        search.build_query(q="med llama"),
        search.build_query(q="med", yanked=True),
    ]
    assert len({base.scope(), *(o.scope() for o in others)}) == 1 + len(others)


def test_sdk_and_cli_page_lazily(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("LOREG_OFFLINE", "LOREG_TOKEN", "LOREG_URL"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeRegistry()
    hits = [{"ref": f"default/a{i}-v1", "name": f"a{i}", "tags": ["t"]} for i in range(5)]

    def pages(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("cursor") or 0)
        size = int(request.url.params["limit"])
        more = start + size < len(hits)
        body = {
            "items": hits[start : start + size],
            "next_cursor": str(start + size) if more else None,
        }
        return httpx.Response(200, json=body)

    fake.hook("GET", r"/v1/search", pages)
    registry = make_registry(fake, tmp_path / "cache", token="t")
    found = registry.search("a", tags=["x", "y"], has_alias=False, page_size=2)
    assert fake.requests("GET", "/v1/search") == []  # nothing fetched before iterating
    assert next(found)["name"] == "a0"
    assert len(fake.requests("GET", "/v1/search")) == 1
    assert [h["name"] for h in found] == ["a1", "a2", "a3", "a4"]
    sent = fake.requests("GET", "/v1/search")
    assert len(sent) == 3 and "tags=x%2Cy" in sent[0].url and "has_alias=false" in sent[0].url

    before = len(fake.requests("GET", "/v1/search"))
    code = cli.main(
        ["search", "a", "--limit", "3", "--json"],
        registry_factory=lambda _args: make_registry(fake, tmp_path / "cache", token="t"),
    )
    out = capsys.readouterr().out
    assert code == 0 and [h["name"] for h in json.loads(out)] == ["a0", "a1", "a2"]
    cli_requests = fake.requests("GET", "/v1/search")[before:]
    assert len(cli_requests) == 1 and re.search(r"limit=3\b", cli_requests[0].url)
