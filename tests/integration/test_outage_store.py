"""Object store outages answer 503 ``store_unavailable`` and heal (issue 9, item 2).

The registry runs on Postgres and an S3 endpoint of the test's own: a moto_server
that is SIGKILLed (connection refused from then on) and started again on the same
port. moto keeps buckets in memory, so after the restart the test re-creates the
bucket, as an operator restoring the store would, and pushes bytes no version had.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from tests.support.fixtures_s3 import S3_TEST_ENV, S3_UNSET_ENV, s3_client
from tests.support.publish import publish, start_upload
from tests.support.s3server import MotoServer
from tests.support.servers import ServerThread, temp_pg_database


@pytest.fixture
def moto(monkeypatch) -> Iterator[MotoServer]:
    """A moto_server of this test's own (it gets killed), with test credentials."""
    for name, value in S3_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    for name in S3_UNSET_ENV:
        monkeypatch.delenv(name, raising=False)
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _assert_store_unavailable(r: httpx.Response, bucket: str, endpoint: str) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "store_unavailable", error
    assert bucket in error["message"] and endpoint in error["message"], error
    assert r.headers["Retry-After"] == "4"


def test_store_killed_answers_503_then_heals(moto, tmp_path, adapter_files, other_adapter_files):
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    bucket = f"loreg-outage-{uuid.uuid4().hex[:10]}"
    with ExitStack() as stack:
        settings = Settings(
            data_dir=tmp_path / "registry",
            database_url=stack.enter_context(temp_pg_database()),
            s3_bucket=bucket,
            s3_endpoint_url=moto.endpoint_url,
            s3_region="us-east-1",
            s3_trust_checksums=False,
            secret_key=secrets.token_hex(16),
            retry_after_s=4,
        )
        ctx, token = prepare(settings)
        stack.callback(ctx.engine.dispose)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        api = stack.enter_context(
            httpx.Client(
                base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"}
            )
        )
        committed, _ = publish(api, "outage", adapter_files)
        assert committed.status_code == 201, committed.text

        upload = start_upload(api, "outage", other_adapter_files)  # begun before the outage
        assert upload.status_code == 201, upload.text
        missing = [b for b in upload.json()["blobs"] if not b["present"]]

        moto.kill()
        # a new upload checks the store for the blobs it would reuse: 503, not 500
        _assert_store_unavailable(
            start_upload(api, "outage", other_adapter_files), bucket, moto.endpoint_url
        )
        # the client's PUT to the presigned URL fails on its side; telling the API the
        # blob is there makes the API look in the store: 503, not 500
        r = api.post(missing[0]["upload"]["complete_url"], json={})
        _assert_store_unavailable(r, bucket, moto.endpoint_url)
        r = api.post(f"/v1/uploads/{upload.json()['upload_id']}/commit")
        _assert_store_unavailable(r, bucket, moto.endpoint_url)
        health = api.get("/v1/health")
        assert health.status_code == 503, health.text
        assert health.json()["error"]["code"] == "store_unavailable"
        checks = health.json()["error"]["details"]["checks"]
        assert checks["store"]["status"] == "unavailable"
        assert bucket in checks["store"]["error"]
        assert checks["database"]["status"] == "ok"

        moto.start()
        s3_client(moto.endpoint_url).create_bucket(Bucket=bucket)
        assert api.get("/v1/health").status_code == 200
        # the restarted moto lost every blob, the shared ones too: the push re-sends them
        committed, _ = publish(api, "outage", other_adapter_files)
        assert committed.status_code == 201, committed.text
