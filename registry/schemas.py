"""Request bodies of the HTTP API (pydantic). Responses are documented in docs/http-api.md."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SHA256_PATTERN = r"^[0-9a-f]{64}$"
Scope = Literal["read", "write", "admin"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Strict):
    """One file of an upload manifest."""

    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=SHA256_PATTERN, description="lowercase hex sha256 of the bytes")


class ParentRef(_Strict):
    """A lineage parent declared at publish time."""

    ref: str = Field(min_length=1, max_length=300)
    relation: Literal[
        "continued_from", "trained_from", "combined_from", "compressed_from", "mirrored_from"
    ] = "continued_from"
    params: dict[str, Any] = Field(default_factory=dict)


class UploadRequest(_Strict):
    """Phase one of a publish: what the client intends to commit."""

    kind: Literal["adapter", "base_model", "dataset"] = "adapter"
    namespace: str | None = Field(default=None, max_length=64)
    name: str = Field(min_length=1, max_length=256)
    files: list[FileEntry] = Field(min_length=1, max_length=1000)
    base_model: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=4096)
    metadata: dict[str, Any] = Field(default_factory=dict)
    parents: list[ParentRef] = Field(default_factory=list, max_length=64)
    revision: str | None = Field(default=None, max_length=128)


class CompletedPart(_Strict):
    """A multipart part as uploaded to S3: its number and the ETag S3 returned."""

    part_number: int = Field(ge=1, le=10000)
    etag: str = Field(min_length=1, max_length=256)


class CompleteBlobRequest(_Strict):
    """Body of ``POST /v1/uploads/{id}/blobs/{sha256}/complete``."""

    parts: list[CompletedPart] | None = None


class AliasRequest(_Strict):
    """Body of ``PUT .../aliases/{alias}``."""

    version: int = Field(ge=1)


class Grant(_Strict):
    """A scope on a namespace (``*`` = every namespace)."""

    namespace: str = Field(min_length=1, max_length=64)
    scope: Scope


class TokenRequest(_Strict):
    """Body of ``POST /v1/tokens``."""

    name: str = Field(min_length=1, max_length=128)
    grants: list[Grant] = Field(min_length=1, max_length=100)
    default_namespace: str | None = Field(default=None, max_length=64)


class NamespaceRequest(_Strict):
    """Body of ``POST /v1/namespaces``."""

    name: str = Field(min_length=1, max_length=64)
    private: bool = False
