"""``loreg serve`` in production mode, as a separate process configured by the environment.

A throw-away Postgres database (``LOREG_DATABASE_URL``) and a fresh bucket on the test
moto_server (``LOREG_S3_ENDPOINT_URL``, ``LOREG_S3_BUCKET``, AWS credentials): the
server reports both, prints its first admin token once, moves blobs through presigned
S3 URLs, and keeps its token across a restart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import Served
from tests.support.publish import start_upload
from tests.support.tiny import save_adapter

pytestmark = pytest.mark.e2e


def auth(served: Served) -> dict[str, str]:
    """The admin bearer header of a server."""
    return {"Authorization": f"Bearer {served.token}"}


def token_count(served: Served) -> int:
    """How many API tokens the server's database holds."""
    from registry.settings import normalize_database_url

    engine = sa.create_engine(normalize_database_url(served.server_env["LOREG_DATABASE_URL"]))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM api_tokens")).scalar_one()
    finally:
        engine.dispose()


def test_health_reports_postgres_and_s3(served_production):
    answer = httpx.get(f"{served_production.url}/v1/health", timeout=10).json()
    assert answer["status"] == "ok"
    assert answer["database"] == "postgresql"
    assert answer["storage"] == "s3"
    out = served_production.output()
    assert "loreg postgresql + s3 store" in out, out
    # the bucket was created by the server on start-up
    served_production.s3_client().head_bucket(Bucket=served_production.bucket)


def test_printed_admin_token_is_the_stored_one(served_production):
    printed = served_production.printed_admin_token()
    stored = (served_production.data_dir / "admin_token").read_text().strip()
    assert printed and printed == stored == served_production.token
    me = httpx.get(f"{served_production.url}/v1/whoami", headers=auth(served_production)).json()
    assert me["authenticated"] is True and me["token_name"] == "admin"
    assert token_count(served_production) == 1


def test_uploads_are_sent_to_presigned_s3_urls(served_production):
    files = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"x" * 100}
    with httpx.Client(
        base_url=served_production.url, headers=auth(served_production), timeout=30
    ) as api:
        upload = start_upload(api, "presigned-check", files).json()
    moto_host = urlsplit(served_production.s3_endpoint).netloc
    for blob in upload["blobs"]:
        assert blob["upload"]["method"] == "put"
        assert urlsplit(blob["upload"]["url"]).netloc == moto_host


def test_sdk_push_then_pull(served_production, tmp_path):
    import loreg

    folder = save_adapter(tmp_path / "adapter", seed=5)
    with loreg.Registry(
        served_production.url, served_production.token, cache_dir=tmp_path / "c1", progress=False
    ) as registry:
        pushed = registry.push(folder, "prod-adapter")
    assert pushed.created and pushed.ref == "default/prod-adapter-v1"
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(names)
    assert sorted(pushed.uploaded) == names

    stored = served_production.stored_blobs()
    for name in pushed.uploaded:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() in stored
    assert not (served_production.data_dir / "objects").exists()  # nothing in a local store

    with loreg.Registry(
        served_production.url, served_production.token, cache_dir=tmp_path / "c2", progress=False
    ) as registry:
        resolved = registry.resolve("prod-adapter-v1")
        pulled = Path(registry.pull("prod-adapter-v1"))
    moto_host = urlsplit(served_production.s3_endpoint).netloc
    assert {urlsplit(f["url"]).netloc for f in resolved["files"]} == {moto_host}
    for name in names:
        assert (pulled / name).read_bytes() == (folder / name).read_bytes()


def test_restart_keeps_the_admin_token_and_the_data(served_production, tmp_path):
    import loreg

    with loreg.Registry(
        served_production.url, served_production.token, cache_dir=tmp_path / "c", progress=False
    ) as registry:
        registry.push(save_adapter(tmp_path / "adapter", seed=6), "survives-restart")
    before = (served_production.data_dir / "admin_token").read_text()
    served_production.restart()
    assert served_production.starts == 2
    assert served_production.printed_admin_token() is None, served_production.output()
    assert "admin token" not in served_production.output()
    assert (served_production.data_dir / "admin_token").read_text() == before
    assert token_count(served_production) == 1
    me = httpx.get(f"{served_production.url}/v1/whoami", headers=auth(served_production)).json()
    assert me["authenticated"] is True
    # what was pushed before the restart is still there (Postgres + S3, not the data dir)
    r = httpx.get(f"{served_production.url}/v1/resolve/survives-restart-v1", timeout=10)
    assert r.status_code == 200, r.text
