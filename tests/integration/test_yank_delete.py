"""Yank, deprecate and delete on both backends, over HTTP, the SDK and the CLI.

A yanked version is skipped by latest and by the Hub's ``main`` but still resolves by
number, digest or alias, with a ``Warning`` header the SDK turns into a
``YankedVersionWarning`` and the CLI prints on stderr; unyanking restores it. A
deprecated adapter shows its message and successor and every resolve of its versions
warns. A delete is refused (409, dependents listed) while another version or a base
model was made from the version, and allowed once they are gone; it removes aliases,
is audited, and no warm cache of another API process serves the deleted version.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import httpx
import pytest
from sqlmodel import Session, col, select

import loreg
from loreg import notices
from loreg.cli.main import main as cli_main
from registry.models import AuditEvent, BaseModelRecord, LineageEdge, Version
from tests.integration.test_resolve_hot_path import (
    _engines,
    counting,
    counting_async,
    second_process,
)
from tests.support.publish import publish, send_blob

pytestmark = pytest.mark.integration

REASON = "tokenizer broken — use v1"  # non-ASCII on purpose: the header stays ASCII


def _notices(response: httpx.Response) -> list[notices.Notice]:
    return notices.parse_headers(response.headers.get_list("warning"))


def _published(api: httpx.Client, name: str, files: dict[str, bytes], **extra) -> dict:
    r, _ = publish(api, name, files, **extra)
    assert r.status_code in (200, 201), r.text
    return r.json()["resolved"]


def _token(api: httpx.Client, scope: str, namespace: str = "default") -> str:
    r = api.post(
        "/v1/tokens",
        json={"name": f"{scope}-token", "grants": [{"namespace": namespace, "scope": scope}]},
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _audit(ctx, action: str) -> list[AuditEvent]:
    with Session(ctx.engine) as session:
        return list(
            session.exec(
                select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))
            ).all()
        )


def _strip_urls(view: dict) -> dict:
    return {**view, "files": [{**f, "url": None} for f in view["files"]]}


def test_yank_skips_latest_and_main_exact_refs_resolve_with_a_warning(
    registry_server, admin_api, anon_api, adapter_files, other_adapter_files
):
    ctx = registry_server.ctx
    _published(admin_api, "medical", adapter_files)
    v2 = _published(admin_api, "medical", other_adapter_files)
    assert admin_api.put(
        "/v1/adapters/default/medical/aliases/prod", json={"version": 2}
    ).is_success
    before = admin_api.get("/v1/resolve/medical-v2")
    assert before.status_code == 200 and _notices(before) == []
    assert admin_api.get("/v1/resolve/medical").json()["version"] == 2

    with second_process(registry_server) as (other, _):
        assert other.get("/v1/resolve/medical").json()["version"] == 2  # warm over there
        r = admin_api.post("/v1/adapters/default/medical/versions/2/yank", json={"reason": REASON})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["ref"] == "default/medical-v2" and answer["latest_version"] == 1
        assert answer["yanked"]["reason"] == REASON and answer["yanked"]["yanked_by"] == "admin"
        # the very next request on another process with warm caches skips it
        latest = other.get("/v1/resolve/medical")
        assert latest.json()["version"] == 1 and _notices(latest) == []

    # every exact ref still resolves, with the warning header (ASCII, the reason intact)
    for ref in ("medical-v2", "medical@prod", f"medical@{v2['digest']}"):
        for api in (admin_api, anon_api):
            hot = api.get(f"/v1/resolve/{ref}")
            assert hot.status_code == 200, hot.text
            assert hot.json()["version"] == 2
            raw = hot.headers["warning"]
            assert raw.isascii() and raw.startswith('299 loreg "yanked: ')
            [notice] = _notices(hot)
            assert notice.kind == "yanked"
            assert "default/medical-v2 was yanked" in notice.message and REASON in notice.message
    # the body is the same as before the yank (only the header says it is yanked)
    after = admin_api.get("/v1/resolve/medical-v2")
    assert _strip_urls(after.json()) == _strip_urls(before.json())
    # and stays one statement when warm: the yank is read by that statement
    for ref in ("medical-v2", "medical"):
        admin_api.get(f"/v1/resolve/{ref}")
        with counting(_engines(ctx)) as sync, counting_async(ctx) as on_loop:
            warm = admin_api.get(f"/v1/resolve/{ref}")
        assert warm.status_code == 200 and len(sync) + len(on_loop) == 1, (sync, on_loop)

    # the adapter's views
    detail = admin_api.get("/v1/adapters/default/medical").json()
    assert detail["latest_version"] == 1
    newest_first = detail["recent_versions"]["items"]
    assert [v["yanked"] is not None for v in newest_first] == [True, False]
    assert newest_first[0]["yanked"]["reason"] == REASON
    listed = admin_api.get("/v1/adapters").json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert next(a for a in items if a["name"] == "medical")["latest_version"] == 1

    # the Hub protocol: main is v1, the yanked v2 is still there by name
    v1_commit = admin_api.get("/v1/resolve/medical-v1").json()["digest"][7:47]
    assert admin_api.get("/hf/api/models/default/medical").json()["sha"] == v1_commit
    at_main = admin_api.get("/hf/api/models/default/medical/revision/main")
    assert at_main.json()["sha"] == v1_commit
    assert (
        admin_api.get("/hf/api/models/default/medical/revision/v2").json()["sha"]
        == (v2["digest"][7:47])
    )
    refs = admin_api.get("/hf/api/models/default/medical/refs").json()
    assert next(b for b in refs["branches"] if b["name"] == "main")["targetCommit"] == v1_commit

    # audited with before and after
    [event] = _audit(ctx, "version.yank")
    assert event.target == "default/medical-v2" and event.detail["before"] is None
    assert event.detail["after"]["reason"] == REASON

    # every version yanked: a bare name is 404 saying why, main too
    assert admin_api.post("/v1/adapters/default/medical/versions/1/yank").is_success
    gone = admin_api.get("/v1/resolve/medical")
    assert gone.status_code == 404 and "every version" in gone.json()["error"]["message"]
    assert admin_api.get("/hf/api/models/default/medical/revision/main").status_code == 404

    # unyank: latest is v2 again, no warning; audited
    for number in (1, 2):
        r = admin_api.post(f"/v1/adapters/default/medical/versions/{number}/unyank")
        assert r.status_code == 200 and r.json()["yanked"] is None, r.text
    back = admin_api.get("/v1/resolve/medical")
    assert back.json()["version"] == 2 and "warning" not in back.headers
    assert [e.detail["before"]["reason"] for e in _audit(ctx, "version.unyank")] == [None, REASON]


def test_yank_needs_write_scope_and_a_version(registry_server, admin_api, adapter_files):
    _published(admin_api, "medical", adapter_files)
    reader = {"Authorization": f"Bearer {_token(admin_api, 'read')}"}
    path = "/v1/adapters/default/medical/versions/1/yank"
    with httpx.Client(base_url=registry_server.url, headers=reader, timeout=30) as api:
        assert api.post(path).status_code == 403
    with httpx.Client(base_url=registry_server.url, timeout=30) as anon:
        assert anon.post(path).status_code == 401
    assert admin_api.post("/v1/adapters/default/medical/versions/9/yank").status_code == 404
    r = admin_api.post("/v1/adapters/default/medical/versions/0/yank")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = admin_api.post(path, json={"reason": "x" * 1025})
    assert r.status_code == 422


def test_the_sdk_warns_and_the_cli_prints_on_stderr(
    registry_server, admin_api, adapter_files, other_adapter_files, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cli-cache"))
    monkeypatch.setenv("LOREG_NO_PROGRESS", "1")
    url, token = registry_server.url, registry_server.admin_token
    with loreg.Registry(url, token, cache_dir=tmp_path / "cache", progress=False) as sdk:
        _published(admin_api, "medical", adapter_files)
        _published(admin_api, "medical", other_adapter_files)
        assert sdk.yank("medical-v2", "bad")["latest_version"] == 1
        with pytest.warns(loreg.YankedVersionWarning, match="default/medical-v2 was yanked: bad"):
            path = sdk.pull("medical-v2")
        assert (path / "adapter_config.json").is_file()
        with pytest.warns(loreg.YankedVersionWarning):
            resolved = sdk.resolve("medical-v2")
        assert resolved["warnings"] == [
            {"kind": "yanked", "message": notices.yanked("default/medical-v2", "bad").message}
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the latest is not yanked: no warning at all
            assert sdk.resolve("medical")["version"] == 1
            assert "warnings" not in sdk.resolve("medical")
        # a bare name is not taken as "the latest" by yank or delete
        with pytest.raises(loreg.ValidationFailedError):
            sdk.yank("medical")
        with pytest.raises(loreg.ValidationFailedError):
            sdk.delete("medical")

    common = ["--url", url, "--token", token]
    capsys.readouterr()
    assert cli_main(["pull", "medical-v2", *common]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith(resolved["digest"].removeprefix("sha256:"))  # the snapshot
    assert "warning: default/medical-v2 was yanked: bad" in err
    assert cli_main(["pull", "medical-v2", "--json", *common]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["warnings"][0]["kind"] == "yanked" and "warning:" in err
    assert cli_main(["pull", "medical", *common]) == 0
    assert "warning" not in capsys.readouterr().err

    assert cli_main(["unyank", "medical-v2", *common]) == 0
    assert "unyanked default/medical-v2 (latest is now v2)" in capsys.readouterr().out
    assert cli_main(["yank", "medical@sha256:" + "0" * 64, *common]) == 3  # no such digest
    capsys.readouterr()
    assert cli_main(["yank", "medical-v1", "--reason", "old", *common]) == 0
    assert "yanked default/medical-v1 (latest is now v2)" in capsys.readouterr().out

    assert cli_main(["deprecate", "medical", "-m", "use other", *common]) == 0
    assert "default/medical is deprecated" in capsys.readouterr().out
    assert cli_main(["show", "medical-v1", *common]) == 0
    out, err = capsys.readouterr()
    assert "deprecated: use other" in out and "yanked: old" in out
    assert "warning: default/medical-v1 was yanked: old" in err
    assert cli_main(["pull", "medical", *common]) == 0
    assert "warning: default/medical is deprecated: use other" in capsys.readouterr().err
    assert cli_main(["deprecate", "medical", "--clear", *common]) == 0
    assert "no longer deprecated" in capsys.readouterr().out

    assert cli_main(["delete", "medical-v1", *common]) == 0
    out = capsys.readouterr().out
    assert "deleted default/medical-v1" in out and "unreferenced" in out
    assert cli_main(["delete", "medical", "--adapter", "--json", *common]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["adapter_deleted"] and answer["deleted_versions"] == ["default/medical-v2"]
    assert cli_main(["pull", "medical-v2", *common]) == 3


def test_deprecate_shows_message_and_successor_and_warns_on_resolve(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    ctx = registry_server.ctx
    _published(admin_api, "medical", adapter_files)
    _published(admin_api, "medical2", other_adapter_files)
    path = "/v1/adapters/default/medical/deprecation"
    # the successor is checked: it must parse, exist, and not be the adapter itself
    for bad, word in (("no such!", "invalid"), ("nosuch", "not found"), ("medical", "itself")):
        r = admin_api.put(path, json={"message": "old", "successor": bad})
        assert r.status_code == 422, (bad, r.text)
        assert word in r.json()["error"]["message"]
    assert admin_api.put(path, json={"message": "   "}).status_code == 422
    # a successor in another private namespace would leak its name to every reader
    assert admin_api.post("/v1/namespaces", json={"name": "lab", "private": True}).is_success
    _published(admin_api, "secret", other_adapter_files, namespace="lab")
    r = admin_api.put(path, json={"message": "old", "successor": "lab/secret"})
    assert r.status_code == 422 and "private namespace 'lab'" in r.json()["error"]["message"]
    assert admin_api.put(path, json={"message": "old", "extra": 1}).status_code == 422
    assert admin_api.put(path, json={"message": "old", "successor": "medical2-v9"}).status_code == (
        422
    )
    r = admin_api.put(path, json={"message": "superseded", "successor": "medical2-v1"})
    assert r.status_code == 200, r.text
    dep = r.json()["deprecation"]
    assert dep["message"] == "superseded" and dep["successor"] == "default/medical2-v1"
    assert dep["deprecated_by"] == "admin"

    assert admin_api.get("/v1/adapters/default/medical").json()["deprecation"] == dep
    listed = admin_api.get("/v1/adapters").json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert {a["name"]: a["deprecation"] for a in items} == {
        "medical": dep,
        "medical2": None,
        "secret": None,
    }
    for ref in ("medical", "medical-v1"):
        hot = admin_api.get(f"/v1/resolve/{ref}")
        assert hot.status_code == 200
        [notice] = _notices(hot)
        assert notice.kind == "deprecated"
        assert notice.message == (
            "default/medical is deprecated: superseded (use default/medical2-v1 instead)"
        )
    assert _notices(admin_api.get("/v1/resolve/medical2")) == []

    writer = {"Authorization": f"Bearer {_token(admin_api, 'read')}"}
    with httpx.Client(base_url=registry_server.url, headers=writer, timeout=30) as api:
        assert api.delete(path).status_code == 403
    r = admin_api.delete(path)
    assert r.status_code == 200 and r.json()["deprecation"] is None
    assert "warning" not in admin_api.get("/v1/resolve/medical").headers
    [set_event] = _audit(ctx, "adapter.deprecate")
    assert set_event.detail["before"] is None
    assert set_event.detail["after"]["successor"] == "default/medical2-v1"
    [clear_event] = _audit(ctx, "adapter.undeprecate")
    assert clear_event.detail["before"]["message"] == "superseded"
    assert clear_event.detail["after"] is None


def test_delete_is_refused_while_a_child_depends_and_allowed_after(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    ctx = registry_server.ctx
    parent = _published(admin_api, "parent", adapter_files)
    _published(
        admin_api,
        "child",
        other_adapter_files,
        parents=[{"ref": "parent-v1", "relation": "compressed_from", "params": {}}],
    )
    assert admin_api.put("/v1/adapters/default/parent/aliases/prod", json={"version": 1}).is_success

    writer = {"Authorization": f"Bearer {_token(admin_api, 'write')}"}
    with httpx.Client(base_url=registry_server.url, headers=writer, timeout=30) as api:
        assert api.delete("/v1/adapters/default/parent/versions/1").status_code == 403
        assert api.delete("/v1/adapters/default/parent").status_code == 403

    for path in ("/v1/adapters/default/parent/versions/1", "/v1/adapters/default/parent"):
        r = admin_api.delete(path)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "conflict" and "default/child-v1" in error["message"]
        assert error["details"]["dependents"] == [
            {
                "kind": "version",
                "ref": "default/child-v1",
                "private": False,
                "depth": 1,
            }
        ]
    # derived through the child (depth 2): listed too, and it blocks the child's delete
    _published(
        admin_api,
        "grandchild",
        adapter_files,
        parents=[{"ref": "child-v1", "relation": "combined_from", "params": {}}],
    )
    r = admin_api.delete("/v1/adapters/default/parent/versions/1")
    assert [(d["ref"], d["depth"]) for d in r.json()["error"]["details"]["dependents"]] == [
        ("default/child-v1", 1),
        ("default/grandchild-v1", 2),
    ]
    r = admin_api.delete("/v1/adapters/default/child/versions/1")
    assert r.status_code == 409 and "default/grandchild-v1" in r.json()["error"]["message"]
    assert admin_api.delete("/v1/adapters/default/grandchild").status_code == 200
    # a dependent in a private namespace the deleting admin cannot read: counted, not named
    assert admin_api.post("/v1/namespaces", json={"name": "lab", "private": True}).is_success
    _published(
        admin_api,
        "hidden",
        other_adapter_files,
        namespace="lab",
        parents=[{"ref": "default/parent-v1", "relation": "combined_from", "params": {}}],
    )
    local_admin = {"Authorization": f"Bearer {_token(admin_api, 'admin')}"}
    with httpx.Client(base_url=registry_server.url, headers=local_admin, timeout=30) as api:
        r = api.delete("/v1/adapters/default/parent/versions/1")
    assert r.status_code == 409, r.text
    dependents = r.json()["error"]["details"]["dependents"]
    assert {"kind": "version", "ref": None, "private": True, "depth": 1} in (dependents)
    assert "lab" not in r.json()["error"]["message"]
    assert admin_api.delete("/v1/adapters/lab/hidden").status_code == 200
    # nothing was touched
    assert admin_api.get("/v1/resolve/parent@prod").json()["digest"] == parent["digest"]
    assert [e.target for e in _audit(ctx, "version.delete")] == [
        "default/grandchild-v1",
        "lab/hidden-v1",
    ]

    assert admin_api.delete("/v1/adapters/default/parent/versions/9").status_code == 404
    r = admin_api.delete("/v1/adapters/default/child/versions/1")
    assert r.status_code == 200, r.text
    assert r.json()["deleted_versions"] == ["default/child-v1"]

    with second_process(registry_server) as (other, _):
        assert other.get("/v1/resolve/parent-v1").status_code == 200  # warm caches there
        assert other.get("/v1/resolve/parent@prod").status_code == 200
        r = admin_api.delete("/v1/adapters/default/parent/versions/1")
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer == {
            "deleted_versions": ["default/parent-v1"],
            "deleted_aliases": ["parent@prod"],
            "adapter_deleted": False,
            "unreferenced_blobs": len(
                {hashlib.sha256(b).hexdigest() for b in adapter_files.values()}
            ),
        }
        for ref in ("parent-v1", "parent@prod", "parent", f"parent@{parent['digest']}"):
            assert other.get(f"/v1/resolve/{ref}").status_code == 404, ref
            assert admin_api.get(f"/v1/resolve/{ref}").status_code == 404, ref
    detail = admin_api.get("/v1/adapters/default/parent").json()
    assert detail["versions"] == 0 and detail["recent_versions"]["items"] == []
    assert detail["aliases"] == {}
    [alias_event] = [e for e in _audit(ctx, "alias.remove") if e.target == "parent@prod"]
    assert alias_event.detail == {"before": {"version": "default/parent-v1"}, "after": None}
    events = _audit(ctx, "version.delete")
    assert [e.target for e in events] == [
        "default/grandchild-v1",
        "lab/hidden-v1",
        "default/child-v1",
        "default/parent-v1",
    ]
    assert events[3].detail["before"]["digest"] == parent["digest"]
    with Session(ctx.engine) as session:
        assert session.exec(select(LineageEdge)).all() == []


def test_adapter_delete_with_inner_lineage_and_outside_dependents(
    registry_server, admin_api, adapter_files, other_adapter_files, base_files
):
    ctx = registry_server.ctx
    _published(admin_api, "family", adapter_files)
    _published(
        admin_api,
        "family",
        other_adapter_files,
        parents=[{"ref": "family-v1", "relation": "continued_from", "params": {}}],
    )
    # a version of the same adapter built on v1: deleting v1 alone is refused ...
    r = admin_api.delete("/v1/adapters/default/family/versions/1")
    assert r.status_code == 409
    assert [d["ref"] for d in r.json()["error"]["details"]["dependents"]] == ["default/family-v2"]

    # ... and a base model made from v2 (a merge's lineage) blocks the whole adapter
    base = admin_api.post(
        "/v1/uploads",
        json={
            "kind": "base_model",
            "name": "merged-base",
            "files": [
                {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                for p, b in base_files.items()
            ],
        },
    )
    assert base.status_code == 201, base.text
    by_sha = {hashlib.sha256(b).hexdigest(): b for b in base_files.values()}
    for blob in base.json()["blobs"]:
        if not blob["present"]:
            assert send_blob(admin_api, blob, by_sha[blob["sha256"]]).status_code == 200
    assert admin_api.post(f"/v1/uploads/{base.json()['upload_id']}/commit").status_code == 201
    with Session(ctx.engine) as session:
        v2 = session.exec(select(Version).where(Version.number == 2)).one()
        bm = session.exec(select(BaseModelRecord)).one()
        session.add(
            LineageEdge(child_base_model_id=bm.id, relation="merged_into", parent_version_id=v2.id)
        )
        session.commit()
    r = admin_api.delete("/v1/adapters/default/family")
    assert r.status_code == 409
    assert r.json()["error"]["details"]["dependents"] == [
        {
            "kind": "base_model",
            "ref": "merged-base",
            "private": False,
            "depth": 1,
        }
    ]
    with Session(ctx.engine) as session:
        merged = col(LineageEdge.child_base_model_id).is_not(None)
        for edge in session.exec(select(LineageEdge).where(merged)):
            session.delete(edge)
        session.commit()

    # the versions of the adapter depend only on each other: the adapter goes at once
    r = admin_api.delete("/v1/adapters/default/family")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["adapter_deleted"] is True
    assert answer["deleted_versions"] == ["default/family-v1", "default/family-v2"]
    assert admin_api.get("/v1/adapters/default/family").status_code == 404
    assert admin_api.get("/v1/resolve/family-v1").status_code == 404
    [event] = _audit(ctx, "adapter.delete")
    assert event.target == "default/family"
    assert event.detail["before"]["versions"] == answer["deleted_versions"]
    # the name can be used again; its new v1 is not served from any cache of the old one
    again = _published(admin_api, "family", other_adapter_files)
    assert again["version"] == 1 and again["lineage"] == []
    assert admin_api.get("/v1/resolve/family-v1").json()["digest"] == again["digest"]


def test_latest_skips_yanked_versions_on_the_partial_index_on_postgres(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    if registry_server.backend != "postgres_s3":
        pytest.skip("query plans are Postgres's")
    import sqlalchemy as sa

    from loreg.refs import parse_ref
    from registry.services import resolve

    _published(admin_api, "medical", adapter_files)
    _published(admin_api, "medical", other_adapter_files)
    assert admin_api.post("/v1/adapters/default/medical/versions/2/yank").is_success
    engine = registry_server.ctx.engine
    statement, params = resolve._statement_and_params(parse_ref("default/medical"))
    compiled = statement.compile(engine)
    with engine.connect() as conn:
        conn.execute(sa.text("SET enable_seqscan = off"))
        values = {**compiled.params, **params}
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", values).scalar_one()
    nodes = json.dumps(plan)
    assert "ix_versions_unyanked_number" in nodes, nodes
    assert "Seq Scan" not in nodes
