"""GET /v1/search on Postgres and SQLite: text, filters, sorts, pages, privacy, bad input.

A small catalog is published through the HTTP API (so the documents are the ones
publish and alias changes write), then searched as the admin, as anonymous and as
tokens with and without read on a private namespace.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from registry.models import Adapter, SearchDocument
from registry.services import search_index
from tests.support.dispatch import RecordingDispatcher
from tests.support.publish import publish
from workers.runner import run_job

LLAMA = "meta-llama/Llama-3.2-1B"
QWEN = "Qwen/Qwen2-0.5B"


def variant(files: dict[str, bytes], **config: Any) -> dict[str, bytes]:
    """The adapter ``files`` with ``adapter_config.json`` fields replaced (other digest)."""
    cfg = json.loads(files["adapter_config.json"])
    cfg.update(config)
    return {**files, "adapter_config.json": json.dumps(cfg).encode()}


def push(api: httpx.Client, name: str, files: dict[str, bytes], **extra: Any) -> dict[str, Any]:
    r, _ = publish(api, name, files, **extra)
    assert r.status_code in (200, 201), r.text
    return r.json()


def names(page: dict[str, Any]) -> list[str]:
    return [f"{h['namespace']}/{h['name']}" for h in page["items"]]


def error_of(r: httpx.Response) -> dict[str, Any]:
    return r.json()["error"]


@pytest.fixture
def catalog(registry_server, admin_api, adapter_files, other_adapter_files) -> dict[str, Any]:
    """Five adapters (one in the private namespace ``vault``) and an alias.

    Card jobs are recorded, not run: card text is searched too (a ready card of a
    Llama adapter matches "llama"), so a card finishing mid-test would change the
    answers. ``test_a_ready_card_makes_its_text_searchable`` runs them.
    """
    sent = RecordingDispatcher()
    registry_server.ctx._dispatcher = sent
    assert admin_api.post("/v1/namespaces", json={"name": "vault", "private": True}).is_success
    r4, r8 = adapter_files, other_adapter_files
    push(
        admin_api,
        "med-llama",
        variant(r4, task_type="CAUSAL_LM"),
        base_model=LLAMA,
        description="Answers clinical questions",
        metadata={"tags": ["Medical", "qa"]},
    )
    push(
        admin_api,
        "legal-llama",
        variant(r8, task_type="CAUSAL_LM"),
        base_model=LLAMA,
        description="Contract review for lawyers",
        metadata={"tags": ["legal"]},
    )
    middle = datetime.now(UTC)
    time.sleep(0.05)
    push(
        admin_api,
        "med-qwen",
        variant(r8, task_type="SEQ_CLS"),
        base_model=QWEN,
        description="Medical summaries of discharge notes",
        metadata={"tags": ["medical"]},
    )
    push(
        admin_api,
        "poetry",
        variant(r4, task_type=None),
        base_model=LLAMA,
        description="Writes verse (and * quotes: 'like & this')",
        metadata={"tags": ["creative"]},
    )
    push(
        admin_api,
        "med-secret",
        variant(r4, task_type="CAUSAL_LM"),
        namespace="vault",
        base_model=LLAMA,
        description="Private medical notes",
        metadata={"tags": ["medical", "qa"]},
    )
    r = admin_api.put("/v1/adapters/default/legal-llama/aliases/prod", json={"version": 1})
    assert r.status_code == 200, r.text
    reader = admin_api.post(
        "/v1/tokens", json={"name": "reader", "grants": [{"namespace": "vault", "scope": "read"}]}
    ).json()["token"]
    outsider = admin_api.post(
        "/v1/tokens",
        json={"name": "outsider", "grants": [{"namespace": "default", "scope": "write"}]},
    ).json()["token"]
    return {"middle": middle, "reader": reader, "outsider": outsider, "sent": sent}


def client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def search(api: httpx.Client, **params: Any) -> dict[str, Any]:
    r = api.get("/v1/search", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_text_finds_names_descriptions_and_tags(catalog, admin_api):
    # a tag (either case), a name, a description word, a prefix
    assert set(names(search(admin_api, q="MEDICAL"))) == {
        "default/med-llama",
        "default/med-qwen",
        "vault/med-secret",
    }
    assert names(search(admin_api, q="poetry")) == ["default/poetry"]
    assert names(search(admin_api, q="contract")) == ["default/legal-llama"]
    assert names(search(admin_api, q="lawy")) == ["default/legal-llama"]
    assert set(names(search(admin_api, q="llama"))) == {"default/med-llama", "default/legal-llama"}
    # every word must occur (in any field)
    assert names(search(admin_api, q="llama clinical")) == ["default/med-llama"]
    assert names(search(admin_api, q="qwen nothing-like-this")) == []
    # relevance: name + tags + description beats tags alone; scores go down
    hits = search(admin_api, q="med", namespace="default")["items"]
    assert [h["name"] for h in hits][:1] == ["med-qwen"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    hit = search(admin_api, q="med qwen")["items"][0]
    assert hit["ref"] == "default/med-qwen-v1"
    assert (hit["base_model"], hit["task_type"], hit["peft_type"], hit["rank"]) == (
        QWEN,
        "SEQ_CLS",
        "LORA",
        8,
    )
    assert hit["tags"] == ["medical"] and hit["version"] == 1 and hit["versions"] == 1


def test_each_filter_and_combinations(catalog, admin_api):
    everything = set(names(search(admin_api)))
    assert len(everything) == 5
    assert set(names(search(admin_api, base_model=QWEN))) == {"default/med-qwen"}
    assert set(names(search(admin_api, task_type="causal_lm"))) == {
        "default/med-llama",
        "default/legal-llama",
        "vault/med-secret",
    }
    assert set(names(search(admin_api, tags="medical,QA"))) == {
        "default/med-llama",
        "vault/med-secret",
    }
    both = admin_api.get("/v1/search", params=[("tags", "medical"), ("tags", "qa")])
    assert set(names(both.json())) == {"default/med-llama", "vault/med-secret"}
    assert set(names(search(admin_api, rank_min=8))) == {"default/legal-llama", "default/med-qwen"}
    assert len(names(search(admin_api, rank_max=4))) == 3
    assert names(search(admin_api, rank_min=5, rank_max=7)) == []
    assert len(names(search(admin_api, peft_type="lora"))) == 5
    assert names(search(admin_api, peft_type="IA3")) == []
    assert names(search(admin_api, has_alias="true")) == ["default/legal-llama"]
    assert len(names(search(admin_api, has_alias="false"))) == 4
    assert set(names(search(admin_api, namespace="vault"))) == {"vault/med-secret"}
    assert len(names(search(admin_api, kind="adapter"))) == 5
    assert names(search(admin_api, kind="dataset")) == []
    middle = catalog["middle"].isoformat()
    assert set(names(search(admin_api, created_after=middle))) == {
        "default/med-qwen",
        "default/poetry",
        "vault/med-secret",
    }
    assert set(names(search(admin_api, created_before=middle))) == {
        "default/med-llama",
        "default/legal-llama",
    }
    # combined: text + base model + tags + rank + namespace
    assert names(
        search(
            admin_api, q="llama", tags="medical", base_model=LLAMA, rank_max=4, namespace="default"
        )
    ) == ["default/med-llama"]
    assert set(names(search(admin_api, q="medical", base_model=LLAMA, task_type="CAUSAL_LM"))) == {
        "default/med-llama",
        "vault/med-secret",
    }


def test_yanked_documents_are_left_out_unless_asked_for(catalog, admin_api):
    assert names(search(admin_api, yanked="true")) == []
    r = admin_api.post("/v1/adapters/default/poetry/versions/1/yank", json={"reason": "bad"})
    assert r.status_code == 200, r.text
    assert "default/poetry" not in names(search(admin_api))
    assert "default/poetry" not in names(search(admin_api, q="poetry"))
    assert names(search(admin_api, yanked="true")) == ["default/poetry"]
    assert admin_api.post("/v1/adapters/default/poetry/versions/1/unyank").is_success
    assert "default/poetry" in names(search(admin_api, q="poetry"))
    assert names(search(admin_api, yanked="true")) == []


def test_a_yanked_latest_hands_the_document_to_the_version_before(
    catalog, admin_api, adapter_files
):
    push(
        admin_api,
        "poetry",
        variant(adapter_files, task_type="CAUSAL_LM", r=4),
        description="Sonnets only now",
        metadata={"tags": ["sonnet"]},
    )
    assert names(search(admin_api, q="sonnets")) == ["default/poetry"]
    assert admin_api.post("/v1/adapters/default/poetry/versions/2/yank", json={}).is_success
    assert names(search(admin_api, q="sonnets")) == []  # v2's tag and description
    (hit,) = search(admin_api, q="verse")["items"]  # v1's description again
    assert (hit["version"], hit["yanked"]) == (1, False)


def test_deleted_versions_and_adapters_leave_the_index(catalog, admin_api, adapter_files):
    push(
        admin_api,
        "poetry",
        variant(adapter_files, task_type="CAUSAL_LM", r=4),
        description="Sonnets only now",
    )
    assert admin_api.delete("/v1/adapters/default/poetry/versions/2").is_success
    (hit,) = search(admin_api, q="poetry")["items"]
    assert (hit["version"], hit["versions"]) == (1, 1)
    assert names(search(admin_api, q="sonnets")) == []
    r = admin_api.delete("/v1/adapters/default/poetry")
    assert r.status_code == 200, r.text
    assert names(search(admin_api, q="poetry")) == []
    assert "default/poetry" not in names(search(admin_api, limit=200))


def test_sorts(catalog, admin_api):
    by_name = [h["name"] for h in search(admin_api, sort="name")["items"]]
    assert by_name == sorted(by_name)
    created = search(admin_api)["items"]  # no q: newest first
    assert [h["name"] for h in created] == [
        "med-secret",
        "poetry",
        "med-qwen",
        "legal-llama",
        "med-llama",
    ]
    assert search(admin_api, sort="created") == search(admin_api)
    assert [h["name"] for h in search(admin_api, q="llama", sort="name")["items"]] == [
        "legal-llama",
        "med-llama",
    ]
    assert all(h["score"] is None for h in created)


def all_pages(api: httpx.Client, during=None, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(50):  # a cursor that never ends the list fails instead of hanging
        page = search(api, limit=2, **params, **({"cursor": cursor} if cursor else {}))
        seen.extend(names(page))
        if during is not None:
            during(len(seen))
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError(f"still paging after 50 pages: {seen}")


@pytest.mark.parametrize(
    "params",
    [{"sort": "name"}, {"sort": "created"}, {"q": "llama medical qa"}, {"q": "med"}, {"q": "l"}],
)
def test_pages_neither_skip_nor_repeat(catalog, admin_api, params):
    whole = names(search(admin_api, limit=200, **params))
    assert all_pages(admin_api, **params) == whole


def test_pages_stay_put_while_adapters_are_published(catalog, admin_api, adapter_files):
    before = names(search(admin_api, limit=200, sort="name"))
    added = iter([("aaa-new", 0.1), ("zzz-new", 0.2)])

    def publish_one(_seen: int) -> None:
        name, dropout = next(added, (None, 0.0))
        if name is not None:
            push(admin_api, name, variant(adapter_files, lora_dropout=dropout))

    seen = all_pages(admin_api, during=publish_one, sort="name")
    assert len(seen) == len(set(seen))
    # everything that existed is there once; "aaa-new" sorts before the cursor: not seen
    assert [n for n in seen if n in before] == before
    assert "default/aaa-new" not in seen and "default/zzz-new" in seen


def test_private_namespaces_are_invisible_to_others(catalog, registry_server, admin_api):
    url = registry_server.url
    with (
        client(url) as anon,
        client(url, catalog["outsider"]) as outsider,
        client(url, catalog["reader"]) as reader,
    ):
        for api in (anon, outsider):
            assert "vault/med-secret" not in names(search(api, q="medical"))
            assert names(search(api, namespace="vault")) == []  # no 404: nothing leaks
            assert names(search(api, q="private")) == []
            assert len(names(search(api, limit=200))) == 4
            # a page of one: the private document is not counted into anyone's pages
            assert all_pages(api, q="medical") == ["default/med-qwen", "default/med-llama"]
        assert "vault/med-secret" in names(search(reader, q="medical"))
        # scores do not depend on documents the caller cannot see
        mine = {h["name"]: h["score"] for h in search(anon, q="medical")["items"]}
        theirs = {h["name"]: h["score"] for h in search(admin_api, q="medical")["items"]}
        assert mine == {k: v for k, v in theirs.items() if k in mine}


def test_documents_follow_publish_and_alias_changes(catalog, admin_api, adapter_files):
    push(
        admin_api,
        "poetry",
        variant(adapter_files, task_type="CAUSAL_LM", r=4),
        base_model=QWEN,
        description="Sonnets only now",
        metadata={"tags": ["sonnet"]},
    )
    hit = search(admin_api, q="sonnets")["items"][0]
    assert (hit["name"], hit["version"], hit["versions"], hit["base_model"]) == (
        "poetry",
        2,
        2,
        QWEN,
    )
    assert names(search(admin_api, q="creative")) == []  # the tag of v1 only
    assert admin_api.put("/v1/adapters/default/poetry/aliases/prod", json={"version": 1}).is_success
    assert "default/poetry" in names(search(admin_api, has_alias="true"))
    assert admin_api.delete("/v1/adapters/default/poetry/aliases/prod").is_success
    assert "default/poetry" not in names(search(admin_api, has_alias="true"))


def _drop_every_document(engine: sa.engine.Engine) -> None:
    """The state of a catalog published before search existed."""
    with Session(engine) as session:
        for adapter_id in session.execute(sa.select(SearchDocument.adapter_id)).scalars().all():
            search_index.remove_adapter(session, adapter_id)
        session.commit()


def test_backfill_indexes_adapters_published_before_search(catalog, admin_api, registry_server):
    engine = registry_server.ctx.engine
    _drop_every_document(engine)
    assert names(search(admin_api)) == []
    assert search_index.backfill(engine, batch=2) == 5
    assert len(names(search(admin_api, q="medical"))) == 3
    assert search_index.backfill(engine) == 0


def test_server_start_back_fills_the_index(catalog, admin_api, registry_server):
    from registry.serve import prepare

    _drop_every_document(registry_server.ctx.engine)
    ctx, _ = prepare(registry_server.settings)  # what `loreg serve` runs before serving
    ctx.engine.dispose()
    assert len(names(search(admin_api, limit=200))) == 5
    assert names(search(admin_api, q="contract")) == ["default/legal-llama"]


@pytest.mark.parametrize(
    ("params", "status", "code", "needle"),
    [
        ({"rank_mni": 4}, 422, "invalid_request", "'rank_mni'"),
        ({"tag": "medical"}, 422, "invalid_request", "accepts q, namespace"),
        ({"rank_min": 9, "rank_max": 2}, 422, "invalid_request", "rank_min (9)"),
        ({"created_after": "yesterday"}, 422, "invalid_request", "created_after"),
        (
            {"created_after": "2026-02-02", "created_before": "2026-01-01"},
            422,
            "invalid_request",
            "not before",
        ),
        ({"sort": "popularity"}, 422, "invalid_request", "sort"),
        ({"sort": "relevance"}, 422, "invalid_request", "needs a text query"),
        ({"limit": 0}, 422, "invalid_request", "limit"),
        ({"limit": 201}, 422, "invalid_request", "limit"),
        ({"q": "*** ()"}, 422, "invalid_request", "no letters or digits"),
        ({"task_type": "CHAT"}, 422, "invalid_request", "CAUSAL_LM"),
        ({"namespace": "No Such!"}, 422, "invalid_name", "namespace"),
        ({"base_model": "a/b/c"}, 422, "invalid_name", "base model"),
        ({"tags": "ok,,"}, 422, "invalid_request", "empty"),
        ({"cursor": "garbage"}, 400, "invalid_cursor", "cursor"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(
    registry_server, admin_api, params, status, code, needle
):
    r = admin_api.get("/v1/search", params=params)
    assert r.status_code == status, r.text
    error = error_of(r)
    assert error["code"] == code and needle in error["message"], error


def test_tampered_or_foreign_cursors_are_refused(catalog, admin_api):
    cursor = search(admin_api, limit=1, sort="name")["next_cursor"]
    assert cursor
    body, mac = cursor.split(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    for params in (
        {"sort": "name", "cursor": tampered},
        {"sort": "created", "cursor": cursor},  # another sort
        {"sort": "name", "tags": "medical", "cursor": cursor},  # another filter
        {"q": "llama", "sort": "name", "cursor": cursor},  # another text
    ):
        r = admin_api.get("/v1/search", params={"limit": 1, **params})
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_cursor", r.text
    unknown = admin_api.get("/v1/search", params={"rank_mni": 1})
    assert set(error_of(unknown)["details"]["accepted"]) >= {"q", "tags", "cursor", "limit"}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    q=st.lists(
        st.sampled_from(
            [*"\"'*:&|!()<>-^{}[]+~\\ \x00\t", "med", "é", "llama", "NEAR", "AND", "OR", "NOT"]
        )
        | st.text(max_size=4),
        min_size=1,
        max_size=12,
    ).map("".join)
)
def test_query_syntax_is_never_a_server_error(catalog, admin_api, registry_server, q):
    r = admin_api.get("/v1/search", params={"q": q})
    assert r.status_code in (200, 422), r.text
    terms = search_index.words(q)
    if r.status_code == 422:
        assert q.strip() and not terms and "no letters or digits" in error_of(r)["message"]
        return
    for hit in r.json()["items"]:  # every word is the start of a word of the hit
        assert (hit["score"] is None) == (not terms)
        with Session(registry_server.ctx.engine) as session:  # card text is searched too
            doc = session.get(SearchDocument, _adapter_id(session, hit))
            card = doc.card_text if doc is not None else None
        text = " ".join([hit["name"], hit["description"] or "", *hit["tags"], card or ""])
        have = search_index.words(text)
        assert all(any(w.startswith(t) for w in have) for t in terms), (q, hit)


def _adapter_id(session: Session, hit: dict[str, Any]) -> int | None:
    doc = session.exec(
        sa.select(SearchDocument.adapter_id).where(
            SearchDocument.namespace == hit["namespace"], SearchDocument.name == hit["name"]
        )
    ).first()
    return doc[0] if doc is not None else None


def test_created_filters_accept_timezones(catalog, admin_api):
    later = (datetime.now(UTC) + timedelta(hours=1)).astimezone().isoformat()
    assert len(names(search(admin_api, created_before=later))) == 5
    assert names(search(admin_api, created_after=later)) == []


def test_cli_search(catalog, registry_server, capsys, tmp_path):
    from loreg import cli
    from loreg.client import Registry

    def factory(_args):
        return Registry(
            url=registry_server.url, token=registry_server.admin_token, cache_dir=tmp_path
        )

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv), registry_factory=factory)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("search", "medical", "--tag", "qa", "--namespace", "default", "--json")
    assert code == 0, err
    assert [h["ref"] for h in json.loads(out)] == ["default/med-llama-v1"]
    code, out, _ = run("search", "--base-model", LLAMA, "--sort", "name", "--limit", "2", "--json")
    assert [h["name"] for h in json.loads(out)] == ["legal-llama", "med-llama"]
    code, out, _ = run("search", "--rank-min", "8", "--has-alias")
    assert code == 0 and "default/legal-llama-v1" in out and "REF" in out
    assert "med-qwen" not in out
    code, out, _ = run("search", "nothing-of-the-sort")
    assert code == 0 and "no adapters found" in out
    code, _, err = run("search", "--rank-min", "9", "--rank-max", "1")
    assert code != 0 and "rank_min (9)" in err


def test_card_text_is_searched_with_the_lowest_weight(
    catalog, admin_api, registry_server, monkeypatch
):
    # chosen card text (instead of the card job's) to test the weights
    cards = {"poetry": "## Usage\nGreat for haiku and limericks.", "med-qwen": "A poetry tool."}

    def card_of(session, version):
        adapter = session.get(Adapter, version.adapter_id)
        return cards.get(adapter.name)

    monkeypatch.setattr(search_index, "_card_text", card_of)
    with Session(registry_server.ctx.engine) as session:
        for adapter_id in session.execute(sa.select(SearchDocument.adapter_id)).scalars().all():
            search_index.refresh_adapter(session, adapter_id)
        session.commit()
    assert names(search(admin_api, q="limericks")) == ["default/poetry"]
    # a name match outranks a card match
    assert names(search(admin_api, q="poetry")) == ["default/poetry", "default/med-qwen"]


def test_a_ready_card_makes_its_text_searchable(catalog, admin_api, registry_server):
    def llama_hits() -> list[str]:
        return names(search(admin_api, q="llama", namespace="default"))

    assert set(llama_hits()) == {"default/med-llama", "default/legal-llama"}  # cards pending
    jobs = [job_id for job_id, _ in catalog["sent"].sent]
    assert len(jobs) == 5  # one card job per published version
    for job_id in jobs:
        assert run_job(registry_server.ctx, job_id) == "succeeded"
    # poetry's card names its base model (meta-llama/...); its name does not: ranked last
    hits = llama_hits()
    assert set(hits[:2]) == {"default/med-llama", "default/legal-llama"}
    assert hits[2:] == ["default/poetry"]
    assert names(search(admin_api, q="qwen2")) == ["default/med-qwen"]  # card text only


def test_deleting_a_document_drops_its_text_index_entry(catalog, admin_api, registry_server):
    engine = registry_server.ctx.engine
    with Session(engine) as session:  # a plain DELETE, as a cascade from the adapter does
        session.execute(sa.delete(SearchDocument).where(SearchDocument.name == "poetry"))
        session.commit()
        if engine.dialect.name == "sqlite":  # the trigger of migration 0007
            left = session.execute(sa.text("SELECT count(*) FROM search_fts")).scalar_one()
            assert left == 4
    assert names(search(admin_api, q="poetry")) == []
    assert len(names(search(admin_api))) == 4
