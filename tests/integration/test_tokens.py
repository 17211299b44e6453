"""Tokens on both backends: list, revoke, expiry, with the principal cache on (10 s).

A revoked token is refused by its very next request, on the resolve hot path and on
every other route, in the process that revoked it and in another one whose cache still
holds the token; an expired one likewise, by the clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.support.pages import all_items as _all
from tests.support.publish import publish
from tests.support.server_cli import run_server_cli
from tests.support.servers import ServerThread


@pytest.fixture
def registry_settings_overrides() -> dict:
    """The default principal cache: a checked token is trusted for 10 s per process."""
    return {"token_cache_s": 10.0}


@contextmanager
def second_process(registry_server) -> Iterator[httpx.Client]:
    """Another API process on the same database: its own Context (engines, caches)."""
    from registry.app import create_app
    from registry.services.context import Context

    with ExitStack() as stack:
        ctx = Context.from_settings(registry_server.settings)
        stack.callback(ctx.close)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        yield stack.enter_context(httpx.Client(base_url=server.url, timeout=60))


def _create(admin_api: httpx.Client, name: str, scope: str = "read", **extra) -> dict:
    body = {"name": name, "grants": [{"namespace": "default", "scope": scope}], **extra}
    r = admin_api.post("/v1/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _refused(answer: httpx.Response, words: str) -> None:
    assert answer.status_code == 401, answer.text
    assert words in answer.json()["error"]["message"], answer.text


def test_admins_list_every_token_others_only_themselves(registry_server, admin_api, anon_api):
    made = [_create(admin_api, f"t{i}") for i in range(3)]
    listed = _all(admin_api, "/v1/tokens", limit=2)
    assert [t["name"] for t in listed] == ["t2", "t1", "t0", "admin"]  # newest first
    assert all("token" not in t for t in listed)
    assert listed[0]["prefix"] == made[2]["token"][:8]
    assert listed[0]["grants"] == [{"namespace": "default", "scope": "read"}]
    assert listed[-1]["grants"] == [{"namespace": "*", "scope": "admin"}]
    assert all(t["active"] and t["revoked_at"] is None and t["expires_at"] is None for t in listed)
    r = admin_api.get("/v1/tokens", headers=_bearer(made[0]["token"]))
    assert r.status_code == 200
    assert [t["id"] for t in r.json()["items"]] == [made[0]["id"]]
    assert anon_api.get("/v1/tokens").status_code == 401


def test_revocation_is_refused_at_once_in_every_process(registry_server, admin_api, adapter_files):
    publish(admin_api, "medical", adapter_files)
    made = _create(admin_api, "reader")
    reader = _bearer(made["token"])
    with second_process(registry_server) as other:
        for api in (admin_api, other):  # both processes cache the checked token
            assert api.get("/v1/resolve/medical", headers=reader).status_code == 200
            assert api.get("/v1/resolve/medical", headers=reader).status_code == 200
            assert api.get("/v1/whoami", headers=reader).json()["token_name"] == "reader"
            assert api.get("/v1/adapters/default/medical", headers=reader).status_code == 200
        revoked = admin_api.delete(f"/v1/tokens/{made['id']}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None and revoked.json()["active"] is False
        for api in (other, admin_api):  # well within the 10 s the cache would trust it
            _refused(api.get("/v1/resolve/medical", headers=reader), "revoked")
            _refused(api.get("/v1/resolve/medical-v1", headers=reader), "revoked")
            _refused(api.get("/v1/resolve/no-such-adapter", headers=reader), "revoked")
            _refused(api.get("/v1/whoami", headers=reader), "revoked")
            _refused(api.get("/v1/adapters/default/medical", headers=reader), "revoked")
        # revoking again is idempotent: the same answer, no second audit row
        again = admin_api.delete(f"/v1/tokens/{made['id']}")
        assert again.status_code == 200 and again.json() == revoked.json()
    rows = admin_api.get("/v1/audit", params={"action": "token.revoke"}).json()["items"]
    assert len(rows) == 1 and rows[0]["target"] == "reader"
    assert admin_api.delete("/v1/tokens/999999").status_code == 404


def test_a_revocation_in_the_database_reaches_a_warm_cache_at_once(
    registry_server, admin_api, adapter_files
):
    """Another host revoking (a plain UPDATE) is seen too: nothing is pushed to the caches."""
    import sqlalchemy as sa

    publish(admin_api, "medical", adapter_files)
    made = _create(admin_api, "reader")
    reader = _bearer(made["token"])
    assert admin_api.get("/v1/resolve/medical", headers=reader).status_code == 200
    assert admin_api.get("/v1/whoami", headers=reader).status_code == 200
    with registry_server.ctx.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE id = :i"),
            {"i": made["id"]},
        )
    _refused(admin_api.get("/v1/resolve/medical", headers=reader), "revoked")
    _refused(admin_api.get("/v1/whoami", headers=reader), "revoked")


def test_a_token_revokes_itself_but_not_others(registry_server, admin_api):
    one, two = _create(admin_api, "one"), _create(admin_api, "two", scope="admin")
    as_one = _bearer(one["token"])
    missing = admin_api.delete(f"/v1/tokens/{two['id']}", headers=as_one)
    assert missing.status_code == 404  # a namespace admin is not a token admin either
    as_two = _bearer(two["token"])
    assert admin_api.delete(f"/v1/tokens/{one['id']}", headers=as_two).status_code == 404
    assert admin_api.delete(f"/v1/tokens/{one['id']}", headers=as_one).status_code == 200
    _refused(admin_api.get("/v1/whoami", headers=as_one), "revoked")
    assert admin_api.get("/v1/whoami", headers=as_two).json()["token_name"] == "two"


def test_an_expired_token_is_refused_by_the_clock(registry_server, admin_api, adapter_files):
    publish(admin_api, "medical", adapter_files)
    made = _create(admin_api, "brief", expires_in=2)
    expires_at = datetime.fromisoformat(made["expires_at"])
    assert timedelta(0) < expires_at - datetime.now(UTC) <= timedelta(seconds=2)
    reader = _bearer(made["token"])
    with second_process(registry_server) as other:
        for api in (admin_api, other):  # cached for 10 s, longer than the token lives
            assert api.get("/v1/resolve/medical", headers=reader).status_code == 200
            assert api.get("/v1/whoami", headers=reader).status_code == 200
        time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.05)
        for api in (admin_api, other):
            _refused(api.get("/v1/resolve/medical", headers=reader), "expired")
            _refused(api.get("/v1/whoami", headers=reader), "expired")
    # a fresh process (no cache) refuses it from the database
    with second_process(registry_server) as fresh:
        _refused(fresh.get("/v1/whoami", headers=reader), "expired")
    listed = {t["name"]: t for t in _all(admin_api, "/v1/tokens")}
    assert listed["brief"]["active"] is False and listed["brief"]["revoked_at"] is None


def test_expiry_input_is_checked(registry_server, admin_api):
    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    made = _create(admin_api, "month", expires_at=soon)
    assert datetime.fromisoformat(made["expires_at"]) == datetime.fromisoformat(soon)
    listed = {t["name"]: t for t in _all(admin_api, "/v1/tokens")}
    assert listed["month"]["active"] is True
    assert datetime.fromisoformat(listed["month"]["expires_at"]) == datetime.fromisoformat(soon)
    grants = [{"namespace": "default", "scope": "read"}]
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for body, words in (
        ({"expires_at": past}, "not in the future"),
        ({"expires_at": soon, "expires_in": 60}, "not both"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": 11 * 366 * 86400}, "expires_in"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ):
        r = admin_api.post("/v1/tokens", json={"name": "bad", "grants": grants, **body})
        assert r.status_code == 422, (body, r.text)
        assert words in r.text, (body, r.text)
    assert "bad" not in {t["name"] for t in _all(admin_api, "/v1/tokens")}


def test_the_last_working_admin_token_cannot_be_revoked(registry_server, admin_api):
    """Revoking the only token with admin on '*' would leave no way to create tokens:
    409 with what to do; once another admin token exists, either one can go, and an
    expired admin token does not count as the other one."""
    me = admin_api.get("/v1/whoami").json()
    mine = [t for t in _all(admin_api, "/v1/tokens") if t["name"] == me["token_name"]]
    assert len(mine) == 1
    boot = mine[0]["id"]
    refused = admin_api.delete(f"/v1/tokens/{boot}")
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert "last working token with admin on '*'" in message and "POST /v1/tokens" in message
    assert admin_api.get("/v1/whoami").status_code == 200  # still works
    star = [{"namespace": "*", "scope": "admin"}]
    brief = admin_api.post("/v1/tokens", json={"name": "brief", "grants": star, "expires_in": 1})
    assert brief.status_code == 201, brief.text
    time.sleep(1.2)
    still = admin_api.delete(f"/v1/tokens/{boot}")
    assert still.status_code == 409, still.text  # the expired one cannot take over
    other = admin_api.post("/v1/tokens", json={"name": "second-admin", "grants": star})
    assert other.status_code == 201, other.text
    assert admin_api.delete(f"/v1/tokens/{boot}").status_code == 200
    as_other = _bearer(other.json()["token"])
    last = admin_api.delete(f"/v1/tokens/{other.json()['id']}", headers=as_other)
    assert last.status_code == 409, last.text  # now it is the last one
    # a namespace admin revoking itself is not affected
    body = {"name": "ns-admin", "grants": [{"namespace": "default", "scope": "admin"}]}
    ns_admin = admin_api.post("/v1/tokens", json=body, headers=as_other).json()
    gone = admin_api.delete(f"/v1/tokens/{ns_admin['id']}", headers=_bearer(ns_admin["token"]))
    assert gone.status_code == 200, gone.text


def test_loreg_db_admin_token_lets_admins_back_in(registry_server, admin_api, tmp_path):
    """With no working admin token left (revoked in the database), ``loreg db
    admin-token`` run with database access makes a new one; audited; no database: 2."""
    with registry_server.ctx.engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP"))
    _refused(admin_api.get("/v1/whoami"), "revoked")
    made = run_server_cli(
        registry_server, tmp_path, "db", "admin-token", "--name", "back", "--json"
    )
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert answer["name"] == "back" and answer["grants"] == [{"namespace": "*", "scope": "admin"}]
    as_new = _bearer(answer["token"])
    assert admin_api.get("/v1/whoami", headers=as_new).json()["token_name"] == "back"
    child = admin_api.post(
        "/v1/tokens",
        json={"name": "ci", "grants": [{"namespace": "default", "scope": "write"}]},
        headers=as_new,
    )
    assert child.status_code == 201, child.text  # an admin of '*' again
    events = admin_api.get(
        "/v1/audit", params={"action": "token.create", "target": "back"}, headers=as_new
    )
    assert events.status_code == 200, events.text
    assert [e["actor"] for e in events.json()["items"]] == ["loreg db admin-token"]
    text = run_server_cli(registry_server, tmp_path, "db", "admin-token")
    assert text.returncode == 0 and text.stdout.startswith("lrg_"), text.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    loreg = str(Path(sys.executable).parent / "loreg")
    missing = subprocess.run(
        [loreg, "db", "admin-token", "--data-dir", str(tmp_path / "none")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no registry database" in missing.stderr, missing.stderr
