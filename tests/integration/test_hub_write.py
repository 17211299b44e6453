"""The Hub write side under ``/hf``, driven by the stock ``huggingface_hub`` client.

One registry per backend for the module (SQLite + the local store; Postgres + moto
S3). The client runs in subprocesses (``tests.support.hf_client``). What is checked:
a folder upload publishes a version that ``/v1/resolve`` serves and the same folder
again publishes nothing; refusals carry the message ``loreg push`` gets for the same
bytes and leave no version; a commit is a delta on the newest version; clients
without Xet upload too, through the LFS batch API when they opt in; private
namespaces stay hidden and read-only tokens get a 403 that says why.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import secrets
import shutil
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from registry.models import UploadBlob, UploadSession
from tests.support.fixtures_registry import BACKENDS, make_settings
from tests.support.hf_client import run_snippet
from tests.support.publish import publish, random_safetensors, start_upload
from tests.support.servers import ServerThread

pytestmark = pytest.mark.integration

MiB = 2**20
CARD = "---\nlibrary_name: peft\nbase_model: tiny-llama\n---\n# A tiny adapter\n"


@dataclass
class Hub:
    """A registry under test, its admin client and tokens of other callers."""

    url: str
    backend: str
    ctx: Any
    admin: str
    writer: str  # write on default (its default namespace)
    reader: str  # read on default and on the private namespace 'secret'
    outsider: str  # write on its own namespace 'outside' only
    api: httpx.Client
    s3_endpoint: str | None

    def run(self, token: str, home: Path, code: str, **env: str) -> dict[str, Any]:
        """Run a client snippet as ``token``."""
        return run_snippet(self.url, token, home, code, **env)

    def resolve(self, ref: str) -> httpx.Response:
        """``GET /v1/resolve/{ref}`` as admin."""
        return self.api.get(f"/v1/resolve/{ref}")

    def versions(self, namespace: str, name: str) -> int:
        """How many versions the adapter has."""
        r = self.api.get(f"/v1/adapters/{namespace}/{name}")
        assert r.status_code == 200, r.text
        return r.json()["versions"]


def _token(api: httpx.Client, name: str, grants: list[tuple[str, str]], default: str) -> str:
    body = {
        "name": name,
        "grants": [{"namespace": ns, "scope": scope} for ns, scope in grants],
        "default_namespace": default,
    }
    r = api.post("/v1/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture(scope="module", params=BACKENDS)
def hub(request, tmp_path_factory, base_files) -> Iterator[Hub]:
    """A registry per backend (multipart from 6 MiB on S3), tiny-llama registered."""
    from registry.app import create_app
    from registry.serve import prepare

    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "postgres_s3" else None
    with ExitStack() as stack:
        settings = make_settings(
            request.param, tmp_path_factory.mktemp("hub"), stack, endpoint
        ).with_overrides(multipart_threshold_bytes=6 * MiB, multipart_part_size_bytes=5 * MiB)
        ctx, admin = prepare(settings)
        stack.callback(ctx.engine.dispose)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        api = stack.enter_context(
            httpx.Client(
                base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {admin}"}
            )
        )
        r, _ = publish(api, "tiny-llama", base_files, kind="base_model")
        assert r.status_code == 201, r.text
        for ns, private in (("secret", True), ("outside", False)):
            assert api.post("/v1/namespaces", json={"name": ns, "private": private}).is_success
        yield Hub(
            url=server.url,
            backend=request.param,
            ctx=ctx,
            admin=admin,
            writer=_token(api, "writer", [("default", "write")], "default"),
            reader=_token(api, "reader", [("default", "read"), ("secret", "read")], "default"),
            outsider=_token(api, "outsider", [("outside", "write")], "outside"),
            api=api,
            s3_endpoint=endpoint,
        )


@pytest.fixture(scope="module")
def folder(tmp_path_factory, adapter_dir) -> Path:
    """The tiny adapter as ``save_pretrained`` writes it, naming tiny-llama, with a model card."""
    out = tmp_path_factory.mktemp("hub-adapter") / "adapter"
    shutil.copytree(adapter_dir, out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "tiny-llama"
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    (out / "README.md").write_text(CARD)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree(view: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in view["files"]}


# --------------------------------------------------------------------------- publish


def test_create_repo_then_upload_folder_publishes_one_version(hub: Hub, folder: Path, tmp_path):
    # create_repo: the adapter with no version; the 409 carries the URL (exist_ok reads it)
    writer = httpx.Client(
        base_url=hub.url, timeout=60, headers={"Authorization": f"Bearer {hub.writer}"}
    )
    r = writer.post("/hf/api/repos/create", json={"name": "card", "organization": None})
    assert r.status_code == 200, r.text
    url = f"{hub.url}/hf/default/card"
    assert r.json() == {"url": url}
    again = writer.post("/hf/api/repos/create", json={"name": "card", "organization": "default"})
    assert again.status_code == 409 and again.json()["url"] == url
    anonymous = httpx.post(f"{hub.url}/hf/api/repos/create", json={"name": "anon"})
    assert anonymous.status_code == 401 and "set HF_TOKEN" in anonymous.json()["error"]
    # a repo with no version yet: listed, no version to resolve, repo_info with sha null
    assert hub.versions("default", "card") == 0
    listed = {a["name"]: a for a in hub.api.get("/v1/adapters").json()["items"]}
    assert listed["card"]["latest_version"] is None
    # the card check answers JSON whatever it gets (the client parses it before the status)
    card = writer.post("/hf/api/validate-yaml", json={"content": CARD, "repoType": "model"})
    assert card.status_code == 200 and card.json() == {}
    open_card = writer.post("/hf/api/validate-yaml", json={"content": "---\nlicense: mit\n"})
    assert (
        open_card.status_code == 400 and "never closes" in open_card.json()["errors"][0]["message"]
    )
    assert writer.post("/hf/api/validate-yaml", content=b"\xff").status_code == 400
    assert hub.resolve("default/card").status_code == 404
    assert writer.get("/hf/api/models/default/card").json()["sha"] is None

    out = hub.run(
        hub.writer,
        tmp_path,
        f"""
        api = HfApi()
        out["url"] = attempt(api.create_repo, "default/card", exist_ok=True)
        folder = {str(folder)!r}
        out["first"] = attempt(api.upload_folder, repo_id="default/card", folder_path=folder)
        out["second"] = attempt(api.upload_folder, repo_id="default/card", folder_path=folder)
        out["sha"] = api.model_info("default/card").sha
        """,
    )
    assert out["url"] == url
    assert isinstance(out["first"], str) and len(out["first"]) == 40, out
    view = hub.resolve("default/card").json()
    assert view["version"] == 1
    assert view["digest"].removeprefix("sha256:")[:40] == out["first"] == out["sha"]
    assert _tree(view) == {p: _sha(b) for p, b in _files(folder).items()}
    # the base model's shape check ran: the version is trained_from the registered base
    assert view["base_model"] == "tiny-llama" and view["base_model_registered"]
    assert view["created_by"] == "writer"
    # the same folder again: no new version, the existing commit
    assert out["second"] == out["first"]
    assert hub.versions("default", "card") == 1
    writer.close()


def test_refusals_carry_the_push_message_and_leave_no_version(
    hub: Hub, folder: Path, tmp_path, adapter_files
):
    good = _files(folder)
    weights = good["adapter_model.safetensors"]
    cases = {
        "pickled": {**good, "notes.txt": pickle.dumps({"a": 1}, protocol=4)},
        "binfile": {**good, "pytorch_model.bin": b"\0" * 64},
        "corrupt": {**good, "adapter_model.safetensors": weights[: len(weights) // 2]},
    }
    expected = {}
    for name, files in cases.items():
        r = start_upload(hub.api, f"push-{name}", files)
        if r.status_code == 201:  # refused at commit
            r, _ = publish(hub.api, f"push-{name}", files)
        assert r.status_code == 422, r.text
        expected[name] = r.json()["error"]["message"]
        target = tmp_path / name
        target.mkdir()
        for path, data in files.items():
            (target / path).write_bytes(data)
    out = hub.run(
        hub.writer,
        tmp_path / "home",
        f"""
        api = HfApi()
        root = {str(tmp_path) + "/"!r}
        for name in {list(cases)!r}:
            api.create_repo(f"default/hub-{{name}}")
            out[name] = attempt(
                api.upload_folder, repo_id=f"default/hub-{{name}}", folder_path=root + name
            )
        """,
    )
    for name, message in expected.items():
        assert out[name]["error"] == "HfHubHTTPError", out[name]
        assert out[name]["status"] == 422
        assert message in out[name]["message"], (message, out[name]["message"])
        assert hub.versions("default", f"hub-{name}") == 0
    assert "pickle (protocol 4)" in expected["pickled"]
    assert "pytorch_model.bin" in expected["binfile"]


def test_a_commit_is_a_delta_on_the_newest_version(hub: Hub, folder: Path, tmp_path):
    new_card = tmp_path / "README.md"
    new_card.write_text(CARD + "\nSecond revision.\n")
    out = hub.run(
        hub.writer,
        tmp_path / "home",
        f"""
        from huggingface_hub import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete
        api = HfApi()
        api.create_repo("default/delta")
        out["v1"] = attempt(api.upload_folder, repo_id="default/delta", folder_path={str(folder)!r})
        out["v2"] = attempt(
            api.upload_file, repo_id="default/delta", path_or_fileobj={str(new_card)!r},
            path_in_repo="README.md", commit_message="new card",
        )
        # a copy is an lfsFile line without a size; then a deletion
        out["v3"] = attempt(
            api.create_commit, repo_id="default/delta", commit_message="move the card",
            operations=[
                CommitOperationCopy("README.md", "docs/card.md"),
                CommitOperationDelete("README.md"),
            ],
        )
        notes = CommitOperationAdd("notes.txt", b"notes")
        out["stale"] = attempt(
            api.create_commit, repo_id="default/delta", commit_message="stale",
            operations=[notes], parent_commit=out["v1"],
        )
        out["gone"] = attempt(
            api.create_commit, repo_id="default/delta", commit_message="x",
            operations=[CommitOperationDelete("nothing-here.txt")],
        )
        out["branch"] = attempt(api.create_branch, "default/delta", branch="dev")
        out["pr"] = attempt(
            api.create_commit, repo_id="default/delta", commit_message="pr",
            operations=[notes], create_pr=True,
        )
        out["on_v1"] = attempt(
            api.upload_file, repo_id="default/delta", path_or_fileobj=b"x",
            path_in_repo="x.txt", revision="v1",
        )
        """,
    )
    v1, v2, v3 = (hub.resolve(f"default/delta:v{n}").json() for n in (1, 2, 3))
    assert out["v2"] == v2["digest"].removeprefix("sha256:")[:40]
    assert out["v3"] == v3["digest"].removeprefix("sha256:")[:40]
    card_sha = _sha(new_card.read_bytes())
    assert _tree(v2) == {**_tree(v1), "README.md": card_sha}
    expected_v3 = {p: s for p, s in _tree(v2).items() if p != "README.md"}
    assert _tree(v3) == {**expected_v3, "docs/card.md": card_sha}
    assert v2["metadata"]["hub_commit"] == "new card"
    assert out["stale"]["status"] == 412 and "parentCommit" in out["stale"]["message"]
    assert out["gone"]["error"] == "RemoteEntryNotFoundError", out["gone"]
    assert out["branch"]["status"] == 400 and "one branch, 'main'" in out["branch"]["message"]
    assert out["pr"]["status"] == 400 and "pull requests" in out["pr"]["message"]
    assert out["on_v1"]["status"] == 400 and "'main' only" in out["on_v1"]["message"]
    assert hub.versions("default", "delta") == 3


# --------------------------------------------------------------------------- without Xet


def _loose_blobs(hub: Hub, name: str) -> set[str]:
    """The blobs received through LFS batch sessions of ``default/name``."""
    with Session(hub.ctx.engine) as session:
        rows = session.exec(
            select(UploadBlob.sha256)
            .join(UploadSession, col(UploadSession.id) == UploadBlob.upload_id)
            .where(UploadSession.name == name, UploadSession.namespace == "default")
        ).all()
    return set(rows)


def test_clients_without_xet_upload_regular_or_through_lfs_batch(hub: Hub, folder: Path, tmp_path):
    big = tmp_path / "big"
    shutil.copytree(folder, big)
    extra = random_safetensors(7 * MiB, seed=3)  # multipart on S3 (threshold 6 MiB)
    (big / "extra.safetensors").write_bytes(extra)
    out = hub.run(
        hub.writer,
        tmp_path / "home",
        f"""
        api = HfApi()
        folder, big = {str(folder)!r}, {str(big)!r}
        api.create_repo("default/noxet")
        out["regular"] = attempt(api.upload_folder, repo_id="default/noxet", folder_path=folder)
        lfs = HfApi(headers={{"X-Loreg-Upload-Mode": "lfs"}})
        lfs.create_repo("default/viabatch")
        out["lfs"] = attempt(lfs.upload_folder, repo_id="default/viabatch", folder_path=big)
        out["again"] = attempt(lfs.upload_folder, repo_id="default/viabatch", folder_path=big)
        """,
        HF_HUB_DISABLE_XET="1",
    )
    assert len(out["regular"]) == 40, out
    assert _tree(hub.resolve("default/noxet").json()) == {
        p: _sha(b) for p, b in _files(folder).items()
    }
    assert len(out["lfs"]) == 40 and out["again"] == out["lfs"], out
    view = hub.resolve("default/viabatch").json()
    assert _tree(view) == {p: _sha(b) for p, b in _files(big).items()}
    assert hub.versions("default", "viabatch") == 1
    # the new bytes came through the batch API's upload sessions, not inside the commit
    # (the other files are in public versions already: no actions, nothing sent)
    assert _loose_blobs(hub, "viabatch") == {_sha(extra)}


def test_lfs_batch_actions_by_backend(hub: Hub, adapter_files):
    writer = httpx.Client(
        base_url=hub.url, timeout=60, headers={"Authorization": f"Bearer {hub.writer}"}
    )
    writer.post("/hf/api/repos/create", json={"name": "rawbatch"})
    small = f"notes {secrets.token_hex(16)}\n".encode() * 20
    large = secrets.token_bytes(7 * MiB)
    body = {
        "operation": "upload",
        "transfers": ["basic", "multipart"],
        "hash_algo": "sha256",
        "objects": [{"oid": _sha(b), "size": len(b)} for b in (small, large)]
        + [{"oid": "not-a-sha", "size": 1}],
    }
    r = writer.post("/hf/default/rawbatch.git/info/lfs/objects/batch", json=body)
    assert r.status_code == 200, r.text
    objects = {o["oid"]: o for o in r.json()["objects"]}
    assert objects["not-a-sha"]["error"]["code"] == 422
    put = objects[_sha(small)]["actions"]["upload"]
    verify = objects[_sha(small)]["actions"]["verify"]["href"]
    plain = httpx.Client(timeout=60)  # the client sends no token to the upload href
    if hub.backend == "postgres_s3":
        assert put["href"].startswith(hub.s3_endpoint) and "Signature=" in put["href"]
        mp = objects[_sha(large)]["actions"]["upload"]
        chunk = int(mp["header"]["chunk_size"])
        urls = [mp["header"][str(n)] for n in range(1, -(-len(large) // chunk) + 1)]
        assert len(urls) == 2 and all(u.startswith(hub.s3_endpoint) for u in urls)
        etags = [
            plain.put(u, content=large[i * chunk : (i + 1) * chunk]).headers["ETag"]
            for i, u in enumerate(urls)
        ]
        parts = [{"partNumber": n, "etag": e} for n, e in enumerate(etags, start=1)]
        done = plain.post(mp["href"], json={"oid": _sha(large), "parts": parts})
        assert done.status_code == 200, done.text
    else:
        assert put["href"].startswith(f"{hub.url}/hf/") and "signature=" in put["href"]
        forged = put["href"].replace("signature=", "signature=0")
        assert plain.put(forged, content=small).status_code == 404
        wrong = plain.put(put["href"], content=small[:-1] + b"!")
        assert wrong.status_code == 422 and "hashing to" in wrong.json()["error"]
    # before its bytes arrive, verify refuses; after, it promotes the blob
    early = writer.post(verify, json={"oid": _sha(small), "size": len(small)})
    assert early.status_code == 409 and "was not received" in early.json()["error"], early.text
    assert plain.put(put["href"], content=small).status_code == 200
    ok = writer.post(verify, json={"oid": _sha(small), "size": len(small)})
    assert ok.status_code == 200, ok.text
    # uploaded by this caller: asked again, no actions
    again = writer.post("/hf/default/rawbatch.git/info/lfs/objects/batch", json=body).json()
    assert "actions" not in {o["oid"]: o for o in again["objects"]}[_sha(small)]

    # a commit of lfsFile lines only: blobs of a public version and the one just sent
    r, _ = publish(hub.api, "rawbase", adapter_files)
    assert r.status_code == 201, r.text
    lines = [{"key": "header", "value": {"summary": "by oid"}}] + [
        {"key": "lfsFile", "value": {"path": p, "algo": "sha256", "oid": _sha(b), "size": len(b)}}
        for p, b in {**adapter_files, "notes.md": small}.items()
    ]
    ndjson = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    url = "/hf/api/models/default/rawbatch/commit/main"
    ok = writer.post(url, content=ndjson, headers={"Content-Type": "application/x-ndjson"})
    assert ok.status_code == 200, ok.text
    assert (
        ok.json()["commitUrl"] == f"{hub.url}/hf/default/rawbatch/commit/{ok.json()['commitOid']}"
    )
    assert _tree(hub.resolve("default/rawbatch").json())["notes.md"] == _sha(small)
    # an oid nobody sent: refused, nothing published
    unknown = {"path": "x.md", "algo": "sha256", "oid": _sha(b"never sent"), "size": 10}
    bad = ndjson + json.dumps({"key": "lfsFile", "value": unknown}).encode()
    r = writer.post(url, content=bad, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 409 and "x.md" in r.json()["error"], r.text
    assert hub.versions("default", "rawbatch") == 1
    plain.close()
    writer.close()


# --------------------------------------------------------------------------- access


def test_private_namespace_is_hidden_and_read_only_is_refused(hub: Hub, folder: Path, tmp_path):
    private = tmp_path / "private"
    shutil.copytree(folder, private)
    only_here = f"kept in the private namespace only: {secrets.token_hex(16)}\n".encode()
    (private / "secret.md").write_bytes(only_here)
    admin = hub.run(
        hub.admin,
        tmp_path / "admin",
        f"""
        api = HfApi()
        out["url"] = attempt(api.create_repo, "secret/model")
        out["v1"] = attempt(api.upload_folder, repo_id="secret/model", folder_path={str(private)!r})
        out["public_in_private"] = attempt(api.create_repo, "secret/other", private=False)
        out["private_in_public"] = attempt(api.create_repo, "default/other", private=True)
        out["dataset"] = attempt(api.create_repo, "default/data", repo_type="dataset")
        """,
    )
    assert len(admin["v1"]) == 40, admin
    assert admin["public_in_private"]["status"] == 400
    assert "namespace 'secret' is private" in admin["public_in_private"]["message"]
    assert admin["private_in_public"]["status"] == 400
    assert "namespace 'default' is public" in admin["private_in_public"]["message"]
    assert admin["dataset"]["status"] == 400 and "model repos" in admin["dataset"]["message"]
    code = f"""
        from huggingface_hub import CommitOperationAdd
        api = HfApi()
        add = CommitOperationAdd("notes.txt", b"notes")
        out["commit"] = attempt(api.create_commit, "secret/model", [add], commit_message="x")
        out["file"] = attempt(api.upload_file, path_or_fileobj=b"x", path_in_repo="x.txt",
                              repo_id="secret/model")
        out["folder"] = attempt(api.upload_folder, repo_id="secret/model",
                                folder_path={str(folder)!r})
    """
    outsider = hub.run(hub.outsider, tmp_path / "outsider", code)
    for call in ("commit", "file", "folder"):
        assert outsider[call]["error"] == "RepositoryNotFoundError", outsider[call]
    reader = hub.run(hub.reader, tmp_path / "reader", code)
    for call in ("commit", "file", "folder"):
        assert reader[call]["status"] == 403, reader[call]
        assert "lacks 'write' scope on namespace 'secret'" in reader[call]["message"]
    # straight to the commit and batch endpoints: the same answers
    auth = {"Authorization": f"Bearer {hub.outsider}"}
    line = json.dumps({"key": "header", "value": {"summary": "x"}}).encode()
    r = httpx.post(f"{hub.url}/hf/api/models/secret/model/commit/main", content=line, headers=auth)
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"
    # knowing a private blob's sha256 is not a read permission: the outsider must send it
    httpx.post(f"{hub.url}/hf/api/repos/create", json={"name": "mine"}, headers=auth)
    batch = {"operation": "upload", "objects": [{"oid": _sha(only_here), "size": len(only_here)}]}
    r = httpx.post(
        f"{hub.url}/hf/outside/mine.git/info/lfs/objects/batch", json=batch, headers=auth
    )
    assert r.status_code == 200 and "actions" in r.json()["objects"][0], r.text


# --------------------------------------------------------------------------- streaming


def test_a_big_regular_upload_is_not_held_in_memory(hub: Hub, folder: Path, tmp_path):
    if hub.backend != "sqlite_local":
        pytest.skip("the memory bound is the parser's; one backend measures it")
    big = tmp_path / "big"
    shutil.copytree(folder, big)
    size = 40 * MiB
    (big / "extra.safetensors").write_bytes(random_safetensors(size, seed=5))
    tracemalloc.start()
    try:
        out = hub.run(
            hub.writer,
            tmp_path / "home",
            f"""
            api = HfApi()
            api.create_repo("default/bigone")
            big = {str(big)!r}
            out["oid"] = attempt(api.upload_folder, repo_id="default/bigone", folder_path=big)
            """,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out["oid"]) == 40, out
    view = hub.resolve("default/bigone").json()
    assert {f["path"]: f["size"] for f in view["files"]}["extra.safetensors"] == size
    # the body carried ~54 MiB of base64; the server's peak stays far below it
    assert peak < 24 * MiB, f"server peak {peak / MiB:.1f} MiB"
