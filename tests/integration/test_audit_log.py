"""The audit log on both backends: one row per action with before/after, ``GET /v1/audit``
filters and keyset pages, and who may read it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.publish import publish


def error_of(r: httpx.Response) -> dict:
    """The ``error`` object of a 4xx answer."""
    return r.json()["error"]


class _NoDispatch:
    """Jobs stay queued: these tests look at submissions, not runs."""

    def enqueue(self, job_id: str, queue: str) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Nothing to release."""


def _events(api: httpx.Client, **params) -> list[dict]:
    """Every audit row the caller sees for ``params``, following the cursors."""
    rows: list[dict] = []
    query = {"limit": 200, **params}
    while True:
        r = api.get("/v1/audit", params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        rows.extend(page["items"])
        if page["next_cursor"] is None:
            return rows
        query = {**query, "cursor": page["next_cursor"]}


def _token(admin_api: httpx.Client, name: str, grants: list[dict]) -> tuple[int, str]:
    r = admin_api.post("/v1/tokens", json={"name": name, "grants": grants})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["token"]


def _client(registry_server, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=registry_server.url, headers=headers, timeout=60)


def _do_every_action(registry_server, admin_api, adapter_files, other_adapter_files) -> dict:
    """Publish twice, move an alias, create and revoke a token, add/sync/remove a mirror."""
    registry_server.ctx._dispatcher = _NoDispatch()
    first, _ = publish(admin_api, "aud", adapter_files)
    second, _ = publish(admin_api, "aud", other_adapter_files)
    assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
    for version in (1, 2):
        r = admin_api.put("/v1/adapters/default/aud/aliases/prod", json={"version": version})
        assert r.status_code == 200, r.text
    assert admin_api.delete("/v1/adapters/default/aud/aliases/prod").status_code == 200
    token_id, _ = _token(admin_api, "ci", [{"namespace": "default", "scope": "read"}])
    assert admin_api.delete(f"/v1/tokens/{token_id}").status_code == 200
    mirror = admin_api.post("/v1/mirrors", json={"repo": "org/aud-up", "name": "aud-up"})
    assert mirror.status_code == 201, mirror.text
    mirror_id = mirror.json()["id"]
    synced = admin_api.post(f"/v1/mirrors/{mirror_id}/sync")
    assert synced.status_code in (200, 202), synced.text
    job_id = synced.json()["job"]["id"]
    assert admin_api.delete(f"/v1/mirrors/{mirror_id}").status_code == 200
    return {
        "digests": (first.json()["resolved"]["digest"], second.json()["resolved"]["digest"]),
        "token_id": token_id,
        "mirror_id": mirror_id,
        "job_id": job_id,
    }


def test_each_action_is_one_row_with_before_and_after(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    done = _do_every_action(registry_server, admin_api, adapter_files, other_adapter_files)
    rows = _events(admin_api)
    counted = Counter((e["action"], e["target"]) for e in rows)
    assert counted == {
        ("version.publish", "aud-v1"): 1,
        ("version.publish", "aud-v2"): 1,
        ("alias.set", "aud@prod"): 2,
        ("alias.remove", "aud@prod"): 1,
        ("token.create", "ci"): 1,
        ("token.revoke", "ci"): 1,
        ("mirror.add", "default/aud-up"): 1,
        ("job.submit", done["job_id"]): 1,
        ("mirror.remove", "default/aud-up"): 1,
    }
    assert {e["actor"] for e in rows} == {"admin"}
    by = {}
    for e in reversed(rows):  # oldest first
        by.setdefault((e["action"], e["target"]), []).append(e)
    v1 = by[("version.publish", "aud-v1")][0]
    assert v1["namespace"] == "default" and v1["detail"]["before"] is None
    assert v1["detail"]["after"]["digest"] == done["digests"][0]
    assert v1["detail"]["after"]["version"] == 1
    first_set, move = by[("alias.set", "aud@prod")]
    assert (first_set["detail"]["before"], first_set["detail"]["after"]) == (None, {"version": 1})
    assert (move["detail"]["before"], move["detail"]["after"]) == ({"version": 1}, {"version": 2})
    removed = by[("alias.remove", "aud@prod")][0]["detail"]
    assert (removed["before"], removed["after"]) == ({"version": 2}, None)
    created = by[("token.create", "ci")][0]
    assert created["namespace"] is None and created["detail"]["before"] is None
    assert created["detail"]["after"]["id"] == done["token_id"]
    assert created["detail"]["after"]["grants"] == [{"namespace": "default", "scope": "read"}]
    revoked = by[("token.revoke", "ci")][0]["detail"]
    assert revoked["before"] == {"id": done["token_id"], "revoked_at": None}
    assert revoked["after"]["revoked_at"] is not None
    job = by[("job.submit", done["job_id"])][0]["detail"]
    assert job["before"] is None
    assert job["after"]["type"] == "mirror_import" and job["after"]["status"] == "queued"
    assert job["after"]["params"]["repo"] == "org/aud-up"
    added = by[("mirror.add", "default/aud-up")][0]["detail"]
    gone = by[("mirror.remove", "default/aud-up")][0]["detail"]
    assert added["before"] is None and gone["after"] is None
    assert added["after"] == gone["before"]
    assert (
        added["after"]["id"] == done["mirror_id"]
        and added["after"]["upstream"] == "hf://org/aud-up"
    )
    assert [e["at"] for e in rows] == sorted((e["at"] for e in rows), reverse=True)


def test_filters_and_pages_newest_first(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    _do_every_action(registry_server, admin_api, adapter_files, other_adapter_files)
    everything = _events(admin_api)
    assert len(everything) == 10
    # pages of 3 cover every row once, in (at, id) descending order
    paged: list[dict] = []
    query: dict = {"limit": 3}
    while True:
        page = admin_api.get("/v1/audit", params=query).json()
        assert len(page["items"]) <= 3
        paged.extend(page["items"])
        if page["next_cursor"] is None:
            break
        query = {"limit": 3, "cursor": page["next_cursor"]}
    assert [e["id"] for e in paged] == [e["id"] for e in everything]
    keys = [(e["at"], e["id"]) for e in paged]
    assert keys == sorted(keys, reverse=True)
    # a publish while paging is not seen by the old pages, nor repeated
    first = admin_api.get("/v1/audit", params={"limit": 4}).json()
    publish(admin_api, "aud2", adapter_files)
    rest = _events(admin_api, cursor=first["next_cursor"])
    assert [e["id"] for e in first["items"] + rest] == [e["id"] for e in everything]

    alias_rows = _events(admin_api, action="alias.set")
    assert [e["detail"]["after"] for e in alias_rows] == [{"version": 2}, {"version": 1}]
    assert {e["target"] for e in _events(admin_api, target="aud@prod")} == {"aud@prod"}
    assert len(_events(admin_api, target="aud@prod")) == 3
    assert _events(admin_api, actor="nobody") == []
    assert len(_events(admin_api, actor="admin")) == 11
    assert {e["namespace"] for e in _events(admin_api, namespace="default")} == {"default"}
    middle = everything[5]
    newer = _events(admin_api, since=middle["at"])
    assert middle["id"] in {e["id"] for e in newer}
    older = _events(admin_api, until=middle["at"])
    assert middle["id"] not in {e["id"] for e in older}
    assert {e["id"] for e in older} | {e["id"] for e in newer} >= {e["id"] for e in everything}
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert _events(admin_api, since=future) == []


def test_bad_parameters_are_4xx_naming_them(registry_server, admin_api, adapter_files):
    publish(admin_api, "aud", adapter_files)
    unknown = admin_api.get("/v1/audit", params={"actorr": "admin"})
    assert unknown.status_code == 422 and "actorr" in error_of(unknown)["message"], unknown.text
    naive = admin_api.get("/v1/audit", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and "since" in naive.text, naive.text
    assert admin_api.get("/v1/audit", params={"since": "yesterday"}).status_code == 422
    assert admin_api.get("/v1/audit", params={"limit": 0}).status_code == 422
    assert admin_api.get("/v1/audit", params={"limit": 201}).status_code == 422
    page = admin_api.get("/v1/audit", params={"limit": 1}).json()
    assert page["next_cursor"] is None or page["next_cursor"]
    publish(admin_api, "aud", {**adapter_files, "README.md": b"# two\n"})
    page = admin_api.get("/v1/audit", params={"limit": 1}).json()
    cursor = page["next_cursor"]
    assert cursor
    other = admin_api.get("/v1/audit", params={"limit": 1, "cursor": cursor, "actor": "admin"})
    assert other.status_code == 400 and error_of(other)["code"] == "invalid_cursor"
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    bad = admin_api.get("/v1/audit", params={"limit": 1, "cursor": tampered})
    assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_cursor"


def test_only_admins_read_it_and_namespace_admins_their_rows(
    registry_server, admin_api, anon_api, adapter_files
):
    assert admin_api.post("/v1/namespaces", json={"name": "team"}).status_code == 201
    publish(admin_api, "aud", adapter_files)
    publish(admin_api, "aud", adapter_files, namespace="team")
    assert error_of(anon_api.get("/v1/audit"))["code"] == "unauthorized"
    _, writer = _token(admin_api, "writer", [{"namespace": "*", "scope": "write"}])
    _, team_admin = _token(admin_api, "team-admin", [{"namespace": "team", "scope": "admin"}])
    with _client(registry_server, writer) as w, _client(registry_server, team_admin) as t:
        refused = w.get("/v1/audit")
        assert refused.status_code == 403 and "admin" in error_of(refused)["message"]
        seen = _events(t)
        assert seen and {e["namespace"] for e in seen} == {"team"}
        assert [e["action"] for e in seen] == ["version.publish", "namespace.create"]
        assert [e["action"] for e in _events(t, namespace="team")] == [
            "version.publish",
            "namespace.create",
        ]
        assert t.get("/v1/audit", params={"namespace": "default"}).status_code == 403
    everything = _events(admin_api)
    assert {e["namespace"] for e in everything} == {"default", "team", None}


def test_rows_commit_with_their_change_only(registry_server, admin_api, adapter_files):
    """A refused action (here an alias on a missing version) leaves no row behind."""
    publish(admin_api, "aud", adapter_files)
    before = len(_events(admin_api))
    r = admin_api.put("/v1/adapters/default/aud/aliases/prod", json={"version": 9})
    assert r.status_code == 404
    r = admin_api.post("/v1/tokens", json={"name": "x", "grants": [], "expires_in": 5})
    assert r.status_code == 422
    assert len(_events(admin_api)) == before
