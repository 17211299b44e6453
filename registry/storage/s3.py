"""S3Store: the object store on any S3 endpoint (AWS, MinIO, moto_server).

Checksums: every object :meth:`S3Store.put` stores in one request carries a SHA-256
that S3 verifies on arrival and keeps; :meth:`S3Store.presign_put` signs the expected
``x-amz-checksum-sha256`` into the URL so S3 refuses other bytes. :meth:`S3Store.stat`
reports that digest only when it covers the whole object (not a multipart
"checksum of checksums") and only when ``trust_checksums`` is True: set it to False
for a backend that stores client-claimed checksums without verifying them (moto_server
5.x does that), and callers will hash the stream instead.

Downloads are one plain GET streamed in chunks (no ranged fan-out: moto_server is slow
per request, and S3 streams a single GET at full speed anyway).

Two endpoints: server-side calls go to ``endpoint_url`` (e.g. ``http://minio:9000``
inside a Compose network), while presigned URLs, which clients elsewhere fetch, can be
signed for ``public_endpoint_url`` (e.g. ``http://localhost:9000``). SigV4 signs the
host, so such a URL must be built for the host the client will reach, not rewritten.

Outages: every call that talks to S3 turns a connection failure, a timeout, a
truncated answer or a 5xx from S3 into :class:`registry.errors.StoreUnavailable`
(an HTTP 503 ``store_unavailable`` naming the bucket and endpoint), after botocore's
own retries; callers never see raw botocore network errors.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import math
import re
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import quote

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from registry.storage.base import (
    DEFAULT_CHUNK_SIZE,
    DigestCheck,
    InvalidMultipart,
    MiB,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PresignedPart,
    PresignedPut,
    StorageError,
    check_range,
    check_sha256_hex,
    outages_unavailable,
    read_exact,
    validate_key,
)

GiB = 1024 * MiB
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
MAX_SINGLE_PUT = 5 * GiB
MAX_PRESIGN_EXPIRY = 7 * 24 * 3600  # SigV4 limit

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"}
_MULTIPART_ETAG = re.compile(r'"?[0-9a-fA-F]+-\d+"?')


#: botocore errors that mean the endpoint cannot be reached or broke off an answer.
_UNREACHABLE = (BotoConnectionError, HTTPClientError, IncompleteReadError)
#: S3 error codes that mean "the service is in trouble, try later" (besides any 5xx).
_SERVER_TROUBLE = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means S3 is down, unreachable or overloaded (not a refusal)."""
    if isinstance(exc, _UNREACHABLE):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return int(status) >= 500 or _error_code(exc) in _SERVER_TROUBLE
    return False


_outages_are_unavailable = outages_unavailable(_is_outage)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _check_expiry(expires_in: int) -> None:
    if not 1 <= expires_in <= MAX_PRESIGN_EXPIRY:
        raise ValueError(f"expires_in must be 1..{MAX_PRESIGN_EXPIRY} seconds, got {expires_in}")


def content_disposition(filename: str) -> str:
    """An ``attachment`` Content-Disposition naming ``filename`` safely (RFC 6266).

    Only the last path segment is used; quotes, backslashes and control characters are
    replaced in the ASCII fallback, and the exact name travels UTF-8 encoded.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1] or "download"
    name = "".join(c for c in name if ord(c) >= 0x20 and ord(c) != 0x7F) or "download"
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class S3Store(ObjectStore):
    """An :class:`ObjectStore` in an S3 bucket, optionally under a key prefix.

    ``endpoint_url`` selects a non-AWS endpoint (path-style addressing is then used);
    ``public_endpoint_url``, when given, is the same S3 service as clients reach it:
    presigned URLs are signed for it (see the module docstring). Credentials come from
    boto3's usual chain (environment, config files, roles), or from ``session`` when
    given (sharing one also saves ~0.15 s per client created).
    ``put`` sends objects larger than ``part_size`` as a multipart upload of up to
    ``max_concurrency`` parts in flight.
    """

    supports_presigned_urls = True

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
        part_size: int = 16 * MiB,
        max_concurrency: int = 4,
        max_pool_connections: int = 32,
        trust_checksums: bool = True,
        session: boto3.session.Session | None = None,
    ):
        if not bucket:
            raise ValueError("an S3 bucket name is required (set LOREG_S3_BUCKET)")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3 minimum)")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.prefix = f"{validate_key(prefix)}/" if prefix else ""
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.trust_checksums = trust_checksums
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url or public_endpoint_url else "auto"},
            max_pool_connections=max_pool_connections,
            retries={"max_attempts": 3, "mode": "standard"},  # then 503; clients retry
            connect_timeout=10,
            read_timeout=120,
            # Only the checksums this class asks for: botocore's default CRC32 trailers
            # break several S3-compatible servers and cost CPU for nothing.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = session or boto3.session.Session()
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)
        # Presigning makes no request: this client only computes URLs for the public host.
        self.presign_client = self.client
        if public_endpoint_url and public_endpoint_url != endpoint_url:
            self.presign_client = session.client(
                "s3",
                endpoint_url=public_endpoint_url,
                config=config.merge(Config(region_name=self.client.meta.region_name)),
            )
        self._copy_config = TransferConfig(
            multipart_threshold=MAX_SINGLE_PUT,  # one CopyObject up to 5 GiB
            multipart_chunksize=512 * MiB,
            max_concurrency=max_concurrency,
        )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _k(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def describe(self) -> str:
        """The store as an operator knows it: ``S3 bucket 'b' at <endpoint>``."""
        return f"S3 bucket {self.bucket!r} at {self.endpoint_url or 'AWS S3'}"

    @_outages_are_unavailable
    def check(self) -> None:
        """One HeadBucket: raise StoreUnavailable (or a ClientError) if S3 cannot serve."""
        self.client.head_bucket(Bucket=self.bucket)

    @_outages_are_unavailable
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet (idempotent)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise StorageError(
                    f"bucket {self.bucket!r} is not accessible ({_error_code(exc)}): "
                    "check the credentials and the bucket name"
                ) from exc
        region = self.client.meta.region_name
        kwargs: dict[str, Any] = {}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise

    # ------------------------------------------------------------------ writes

    @_outages_are_unavailable
    def put(
        self, key: str, stream: BinaryIO, *, size: int | None = None, sha256: str | None = None
    ) -> None:
        """Upload ``stream``; verified before anything becomes visible (see ObjectStore.put).

        Up to ``part_size`` bytes go in one PutObject carrying their SHA-256 (S3 checks
        and keeps it). Larger streams go as a multipart upload that is completed only
        after the whole stream matched ``size``/``sha256``, and aborted otherwise.
        """
        full = self._k(key)
        check = DigestCheck(key, size=size, sha256=sha256)
        part_size = self.part_size
        if size is not None:
            part_size = max(part_size, math.ceil(size / MAX_PARTS))
        first = read_exact(stream, part_size)
        check.update(first)
        if len(first) < part_size:
            check.verify()
            self.client.put_object(
                Bucket=self.bucket,
                Key=full,
                Body=first,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(check.digest()),
            )
            return
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=full, ChecksumAlgorithm="SHA256"
        )["UploadId"]
        try:
            parts = self._send_parts(full, upload_id, first, stream, part_size, check)
            check.verify()
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    def _send_parts(
        self,
        full: str,
        upload_id: str,
        first: bytes,
        stream: BinaryIO,
        part_size: int,
        check: DigestCheck,
    ) -> list[dict[str, Any]]:
        """Read parts in order (hashing them) and upload up to max_concurrency at once."""
        pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="s3-put")
        futures: list[Future[dict[str, Any]]] = []
        pending: set[Future[dict[str, Any]]] = set()
        try:
            chunk, number = first, 1
            while chunk:
                if len(pending) >= self.max_concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # surface a failed part early
                future = pool.submit(self._upload_part, full, upload_id, number, chunk)
                futures.append(future)
                pending.add(future)
                chunk, number = read_exact(stream, part_size), number + 1
                check.update(chunk)
                if number > MAX_PARTS and chunk:
                    raise StorageError(f"{full}: more than {MAX_PARTS} parts; raise part_size")
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _upload_part(self, full: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=full,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
        )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if response.get("ChecksumSHA256"):
            part["ChecksumSHA256"] = response["ChecksumSHA256"]
        return part

    @_outages_are_unavailable
    def delete(self, key: str) -> None:
        """DeleteObject (S3 answers success for absent keys too)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as exc:
            if _error_code(exc) not in _NOT_FOUND:
                raise

    @_outages_are_unavailable
    def copy(self, src: str, dst: str) -> None:
        """Server-side copy (one CopyObject up to 5 GiB, multipart copy beyond).

        The copy asks S3 for a SHA-256 of the result, which S3 computes itself, so a
        single-request copy makes ``stat(dst).sha256`` available.
        """
        src_full, dst_full = self._k(src), self._k(dst)
        if src_full == dst_full:
            if self.stat(src) is None:
                raise ObjectNotFound(src)
            return
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": src_full},
                self.bucket,
                dst_full,
                ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                Config=self._copy_config,
            )
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise ObjectNotFound(src) from exc
            raise

    # ------------------------------------------------------------------- reads

    def _get(self, key: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._k(key), **kwargs)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise

    @_outages_are_unavailable
    def open(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """One GetObject, its body streamed in chunks; ObjectNotFound raised at call time."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
        return _iter_body(self, self._get(key)["Body"], chunk_size)

    @_outages_are_unavailable
    def read_range(self, key: str, start: int, end: int) -> bytes:
        """A ranged GetObject for ``[start, end)``, clipped to the object's size."""
        check_range(start, end)
        if start == end:
            if self.stat(key) is None:
                raise ObjectNotFound(key)
            return b""
        try:
            body = self._get(key, Range=f"bytes={start}-{end - 1}")["Body"]
        except ClientError as exc:
            if _error_code(exc) == "InvalidRange":  # start is at or past the end
                return b""
            raise
        with contextlib.closing(body):
            return body.read()

    @_outages_are_unavailable
    def stat(self, key: str) -> ObjectInfo | None:
        """HeadObject with checksums enabled; see the module docstring for ``sha256``."""
        try:
            head = self.client.head_object(
                Bucket=self.bucket, Key=self._k(key), ChecksumMode="ENABLED"
            )
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                return None
            raise
        return ObjectInfo(key=key, size=int(head["ContentLength"]), sha256=self._vouched(head))

    def _vouched(self, head: dict[str, Any]) -> str | None:
        """The full-object SHA-256 of a HeadObject answer as hex, when it can be trusted."""
        value = head.get("ChecksumSHA256")
        if not self.trust_checksums or not value or "-" in value:
            return None  # "<b64>-<n>" is a checksum of part checksums
        kind = head.get("ChecksumType")
        if kind not in (None, "FULL_OBJECT"):
            return None
        if kind is None and _MULTIPART_ETAG.fullmatch(head.get("ETag", "")):
            return None  # a multipart object whose backend omits the type and the "-n"
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        return digest.hex() if len(digest) == 32 else None

    @_outages_are_unavailable
    def list(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        """ListObjectsV2 pages, keys relative to the store's prefix, in key order."""
        paginator = self.client.get_paginator("list_objects_v2")
        skip = len(self.prefix)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                yield item["Key"][skip:], int(item["Size"]), item["LastModified"]

    # --------------------------------------------------------------- presigned

    def presign_get(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        """A presigned GetObject URL; ``filename`` sets the download's Content-Disposition."""
        _check_expiry(expires_in)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._k(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return self.presign_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_in
        )

    def presign_put(
        self, key: str, *, expires_in: int, size: int, sha256: str | None = None
    ) -> PresignedPut:
        """A presigned PutObject URL with Content-Length (and the SHA-256) signed in.

        The client must send :attr:`PresignedPut.headers` unchanged; S3 then refuses a
        body of another length or (with ``sha256``) another digest.
        """
        _check_expiry(expires_in)
        if not 0 <= size <= MAX_SINGLE_PUT:
            raise ValueError(
                f"size must be 0..{MAX_SINGLE_PUT} for one PUT, got {size}; use multipart"
            )
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._k(key), "ContentLength": size}
        headers = {"Content-Length": str(size)}
        if sha256 is not None:
            checksum = _b64(bytes.fromhex(check_sha256_hex(sha256)))
            params["ChecksumSHA256"] = checksum
            headers["x-amz-checksum-sha256"] = checksum
        url = self.presign_client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in
        )
        return PresignedPut(url=url, headers=headers)

    @_outages_are_unavailable
    def create_multipart(self, key: str) -> str:
        """CreateMultipartUpload without a checksum algorithm (parts come from clients)."""
        response = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._k(key))
        return response["UploadId"]

    def presign_part(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> PresignedPart:
        """A presigned UploadPart URL; the response's ETag header is the part's receipt."""
        _check_expiry(expires_in)
        if not 1 <= part_number <= MAX_PARTS:
            raise ValueError(f"part_number must be 1..{MAX_PARTS}, got {part_number}")
        url = self.presign_client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": self._k(key),
                "UploadId": upload_id,
                "PartNumber": part_number,
            },
            ExpiresIn=expires_in,
        )
        return PresignedPart(part_number=part_number, url=url)

    @_outages_are_unavailable
    def complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> None:
        """CompleteMultipartUpload with the parts in order; the object appears atomically."""
        numbers = [number for number, _ in parts]
        if not parts or len(set(numbers)) != len(numbers):
            raise InvalidMultipart(
                f"{key}: list each uploaded part once as (part_number, etag); got {numbers}"
            )
        listed = [
            {"PartNumber": number, "ETag": etag if etag.startswith('"') else f'"{etag}"'}
            for number, etag in sorted(parts)
        ]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._k(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            )
        except ClientError as exc:
            code = _error_code(exc)
            if code == "NoSuchUpload":
                raise ObjectNotFound(
                    key, f"no multipart upload {upload_id!r} in progress for {key!r}"
                ) from exc
            if code in _BAD_PARTS:
                raise InvalidMultipart(f"{key}: S3 refused the part list ({code}): {exc}") from exc
            raise

    @_outages_are_unavailable
    def abort_multipart(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; an unknown or finished upload is ignored."""
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._k(key), UploadId=upload_id
            )
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise


def _iter_body(store: S3Store, body: Any, chunk_size: int) -> Iterator[bytes]:
    with contextlib.closing(body):
        try:
            yield from body.iter_chunks(chunk_size)
        except Exception as exc:
            if _is_outage(exc):
                raise store.unavailable(exc) from exc
            raise
