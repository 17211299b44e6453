"""Pytest plugin: a real moto_server for the session, a fresh bucket per test.

Fixtures:

* ``s3_endpoint`` (session): URL of a ``moto_server`` subprocess; sets test AWS
  credentials and region in the environment for the session.
* ``s3_boto_session`` / ``s3_admin_client`` (session): a shared boto3 Session and
  a raw client on the endpoint, for setup and inspection.
* ``s3_bucket``: a uniquely named, empty bucket, emptied and removed afterwards.
* ``s3_store``: an :class:`registry.storage.s3.S3Store` on that bucket. moto does
  not verify checksums, so the store is told not to trust them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.s3server import MotoServer

if TYPE_CHECKING:
    from registry.storage.s3 import S3Store

S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
S3_UNSET_ENV = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")
TEST_PART_SIZE = 5 * 2**20  # the S3 minimum, so multipart paths run with small data


def s3_client(endpoint_url: str, session: Any = None) -> Any:
    """A plain boto3 S3 client on the test endpoint (path-style addressing)."""
    import boto3
    from botocore.config import Config

    return (session or boto3.session.Session()).client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto_server running for the whole test session."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_TEST_ENV.items():
            mp.setenv(name, value)
        for name in S3_UNSET_ENV:
            mp.delenv(name, raising=False)
        with MotoServer() as server:
            yield server.endpoint_url


@pytest.fixture(scope="session")
def s3_boto_session(s3_endpoint: str) -> Any:
    """One boto3 Session for the tests (creating clients from it is fast)."""
    import boto3

    return boto3.session.Session()


@pytest.fixture(scope="session")
def s3_admin_client(s3_endpoint: str, s3_boto_session: Any) -> Any:
    """A raw boto3 client on the test endpoint, for setup and inspection."""
    return s3_client(s3_endpoint, s3_boto_session)


@pytest.fixture
def s3_bucket(s3_admin_client: Any) -> Iterator[str]:
    """A new empty bucket; its objects, pending multipart uploads and itself go afterwards."""
    client = s3_admin_client
    name = f"loreg-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        _empty_and_remove(client, name)


def _empty_and_remove(client: Any, bucket: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str, s3_boto_session: Any) -> S3Store:
    """An S3Store on the test bucket (5 MiB parts; checksums not trusted: moto won't verify)."""
    from registry.storage.s3 import S3Store

    return S3Store(
        s3_bucket,
        endpoint_url=s3_endpoint,
        region="us-east-1",
        part_size=TEST_PART_SIZE,
        trust_checksums=False,
        session=s3_boto_session,
    )
