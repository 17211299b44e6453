"""``publish_server_side``: the trusted entry (jobs, the Hub write side) meets the HTTP checks.

On both backends (Postgres + moto S3, SQLite + the local store): content the
HTTP publish refuses is refused with the same error (and nothing is written),
the job id and typed lineage are recorded, and publishing again is idempotent.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from loreg.vocabulary import ArtifactKind, JobRelation, Relation
from registry.auth import Principal
from registry.errors import RegistryError
from registry.models import Adapter, Job, LineageEdge, Version
from registry.services.publish import ParentLink, PublishFile, PublishSpec, publish_server_side
from tests.support.publish import publish, start_upload

pytestmark = pytest.mark.integration


def _job(ctx, output: str) -> Job:
    """A combine job row writing ``default/<output>``, as the runner would hold it."""
    job = Job(type="combine", namespace="default", output=output, inputs=[], params={})
    with Session(ctx.engine, expire_on_commit=False) as session:
        session.add(job)
        session.commit()
    return job


def _spec(name: str, files: dict[str, bytes], **extra) -> PublishSpec:
    """A spec whose files are streams (the Hub's case)."""
    return PublishSpec(
        kind=ArtifactKind.ADAPTER,
        namespace="default",
        name=name,
        files=[PublishFile(path, io.BytesIO(data)) for path, data in files.items()],
        **extra,
    )


def _versions(ctx, name: str) -> list[Version]:
    with Session(ctx.engine) as session:
        return list(session.exec(select(Version).join(Adapter).where(Adapter.name == name)).all())


def _refusals(adapter_files: dict[str, bytes], wide_files: dict[str, bytes]):
    config = json.loads(adapter_files["adapter_config.json"])
    config["target_modules"] = ["o_proj"]  # contradicts the tensors
    yield "contra", {**adapter_files, "adapter_config.json": json.dumps(config).encode()}, {}
    yield "renamed-pickle", {**adapter_files, "notes.txt": pickle.dumps({"a": 1}, protocol=4)}, {}
    yield "torch-bin", {**adapter_files, "pytorch_model.bin": b"\0" * 8}, {}
    yield "nofit", wide_files, {"base_model": "tiny-llama"}


def test_refuses_what_http_publish_refuses_with_the_same_error(
    registry_server, admin_api: httpx.Client, adapter_files, base_files, tmp_path
):
    from tests.support.tiny import save_adapter

    ctx = registry_server.ctx
    r, _ = publish(admin_api, "tiny-llama", base_files, kind="base_model")
    assert r.status_code == 201, r.text
    wide = save_adapter(tmp_path / "wide", base={"hidden_size": 128, "intermediate_size": 256})
    wide_files = {p.name: p.read_bytes() for p in wide.iterdir() if p.is_file()}
    codes = {}
    for name, files, extra in _refusals(adapter_files, wide_files):
        http = start_upload(admin_api, f"http-{name}", files, **extra)
        if http.status_code == 201:  # refused at commit, not at phase 1
            http, _ = publish(admin_api, f"http-{name}", files, **extra)
        assert http.status_code == 422, http.text
        job = _job(ctx, f"job-{name}")
        with pytest.raises(RegistryError) as refused:
            publish_server_side(
                ctx, Principal.for_job(job), _spec(f"job-{name}", files, job_id=job.id, **extra)
            )
        assert type(refused.value).status == 422
        assert refused.value.code == http.json()["error"]["code"], name
        codes[name] = refused.value.code
        assert _versions(ctx, f"job-{name}") == []
    assert codes == {
        "contra": "invalid_config",
        "renamed-pickle": "pickle_refused",
        "torch-bin": "pickle_refused",
        "nofit": "shape_mismatch",
    }


def test_records_job_id_and_typed_lineage_and_is_idempotent(
    registry_server,
    admin_api: httpx.Client,
    anon_api: httpx.Client,
    adapter_dir: Path,
    adapter_files,
    other_adapter_files,
    base_files,
):
    ctx = registry_server.ctx
    assert publish(admin_api, "tiny-llama", base_files, kind="base_model")[0].status_code == 201
    assert publish(admin_api, "parent", other_adapter_files)[0].status_code == 201
    parent = _versions(ctx, "parent")[0]
    job = _job(ctx, "child")
    links = [
        ParentLink(Relation.COMBINED_FROM, version_id=parent.id, params={"weight": 0.5}),
        ParentLink("merged_into", version_id=parent.id),  # a job-only relation, by its value
    ]
    assert links[1].relation is JobRelation.MERGED_INTO
    spec = PublishSpec(
        kind=ArtifactKind.ADAPTER,
        namespace="default",
        name="child",
        files=[  # one file from disk, one stream
            PublishFile("adapter_model.safetensors", adapter_dir / "adapter_model.safetensors"),
            PublishFile("adapter_config.json", io.BytesIO(adapter_files["adapter_config.json"])),
        ],
        base_model="tiny-llama",
        description="made by a job",
        metadata={"job_id": job.id},
        job_id=job.id,
        lineage=links,
    )
    created, view = publish_server_side(ctx, Principal.for_job(job), spec)
    assert created
    assert view["ref"] == "default/child-v1"
    assert view["created_by"] == f"job:{job.id}"
    assert view["description"] == "made by a job"
    assert [(e["relation"], e["parent"]["ref"], e["params"]) for e in view["lineage"]] == [
        ("combined_from", "default/parent-v1", {"weight": 0.5}),
        ("merged_into", "default/parent-v1", {}),
        ("trained_from", "tiny-llama", {}),
    ]
    assert anon_api.get("/v1/resolve/child").json()["lineage"] == view["lineage"]
    [version] = _versions(ctx, "child")
    assert version.job_id == job.id
    with Session(ctx.engine) as session:
        edges = session.exec(
            select(LineageEdge).where(LineageEdge.child_version_id == version.id)
        ).all()
    assert sorted(e.relation for e in edges) == ["combined_from", "merged_into", "trained_from"]

    # the same job again (a re-run, its files re-read): the first result, nothing new
    weights = {p: adapter_files[p] for p in ("adapter_config.json", "adapter_model.safetensors")}
    again = replace(spec, files=[PublishFile(p, io.BytesIO(b)) for p, b in weights.items()])
    created, same = publish_server_side(ctx, Principal.for_job(job), again)
    assert not created and same["ref"] == view["ref"] and same["digest"] == view["digest"]
    # the same job with other content still returns what it registered first
    other = _spec("child", other_adapter_files, job_id=job.id)
    created, first = publish_server_side(ctx, Principal.for_job(job), other)
    assert not created and first["digest"] == view["digest"]
    # identical content from another job: the existing version, not a second one
    second_job = _job(ctx, "child")
    created, existing = publish_server_side(
        ctx, Principal.for_job(second_job), _spec("child", weights, job_id=second_job.id)
    )
    assert not created and existing["ref"] == "default/child-v1"
    assert len(_versions(ctx, "child")) == 1


def test_needs_the_scopes_an_http_publish_needs(registry_server, adapter_files):
    ctx = registry_server.ctx
    job = _job(ctx, "elsewhere")
    spec = PublishSpec(
        kind=ArtifactKind.ADAPTER,
        namespace="someone-else",
        name="elsewhere",
        files=[PublishFile(p, io.BytesIO(b)) for p, b in adapter_files.items()],
        job_id=job.id,
    )
    with pytest.raises(RegistryError) as refused:  # a job writes only its own namespace
        publish_server_side(ctx, Principal.for_job(job), spec)
    assert refused.value.code == "not_found"  # as for a token without write there
    assert _versions(ctx, "elsewhere") == []
