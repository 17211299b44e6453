"""The stock huggingface_hub client reads loreg adapters through ``/hf`` (docs/hub-protocol.md).

Both backends: SQLite + the local store (the API streams file bytes) and Postgres +
moto S3 (file requests answer 302 to a presigned URL). The client runs in a
subprocess configured only by environment variables, as a user's process is.
"""

from __future__ import annotations

import hashlib
import shutil

import httpx
import pytest

import loreg
from tests.support.hf_client import run_hf

REPO = "default/medical"


def _digest_commit(view: dict) -> str:
    return view["digest"].removeprefix("sha256:")[:40]


def _files(view: dict) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in view["files"]}


@pytest.fixture
def published(registry_server, adapter_dir, tmp_path) -> dict:
    """``default/medical`` v1 (README "one") and v2 (README "two"), alias prod -> v1."""
    reg = loreg.Registry(
        url=registry_server.url,
        token=registry_server.admin_token,
        cache_dir=tmp_path / "sdk-cache",
        progress=False,
    )
    views = []
    for note in ("one", "two"):
        folder = tmp_path / f"adapter-{note}"
        shutil.copytree(adapter_dir, folder)
        (folder / "README.md").write_text(f"# medical {note}\n")
        reg.push(folder, "medical")
        views.append(reg.resolve(f"medical-v{len(views) + 1}"))
    reg.set_alias("medical-v1", "prod")
    return {"v1": views[0], "v2": views[1], "registry": reg}


READ_SCRIPT = """
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
api = HfApi()
repo = "default/medical"
out = {}
info = api.model_info(repo)
out["main_sha"] = info.sha
out["private"] = info.private
out["siblings"] = {s.rfilename: [s.size, s.lfs.sha256 if s.lfs else None] for s in info.siblings}
out["card_library"] = info.card_data.library_name if info.card_data else None
for rev in os.environ["REVS"].split(","):
    out["sha@" + rev] = api.model_info(repo, revision=rev).sha
out["files@prod"] = sorted(api.list_repo_files(repo, revision="prod"))
refs = api.list_repo_refs(repo)
out["branches"] = {b.name: b.target_commit for b in refs.branches}
out["tags"] = [[t.name, t.target_commit] for t in refs.tags]
out["commits"] = [[c.commit_id, c.title, c.authors] for c in api.list_repo_commits(repo)]
out["commits@v1"] = [c.commit_id for c in api.list_repo_commits(repo, revision="v1")]
out["exists"] = [
    api.file_exists(repo, "adapter_config.json"),
    api.file_exists(repo, "adapter_model.bin"),
    api.file_exists(repo, "README.md", revision="v1"),
]
paths = api.get_paths_info(repo, ["README.md", "nope.txt"], revision="v2")
out["paths_info"] = [[p.path, p.size, p.lfs.sha256 if p.lfs else None] for p in paths]
out["tree"] = sorted(
    [type(e).__name__, e.path] for e in api.list_repo_tree(repo, revision="v2", recursive=True)
)
folder = snapshot_download(repo, revision="prod")
out["snapshot_dir"] = os.path.basename(folder)
out["snapshot@prod"] = {
    name: sha256_of(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
}
one = hf_hub_download(repo, "README.md", revision=os.environ["COMMIT_V2"])
out["readme@commit_v2"] = open(one).read()
out["errors"] = {
    "no_repo": error_of(api.model_info, "default/nope"),
    "no_revision": error_of(hf_hub_download, repo, "README.md", revision="nope"),
    "no_file": error_of(hf_hub_download, repo, "missing.txt"),
    "no_repo_download": error_of(snapshot_download, "default/nope"),
}
print(json.dumps(out))
"""


def test_stock_client_reads_versions_aliases_and_commits(
    registry_server, published, tmp_path, monkeypatch
):
    v1, v2 = published["v1"], published["v2"]
    c1, c2 = _digest_commit(v1), _digest_commit(v2)
    revs = ["main", "v1", "prod", c1, v1["digest"], v1["digest"].removeprefix("sha256:")]
    monkeypatch.setenv("REVS", ",".join(revs))
    monkeypatch.setenv("COMMIT_V2", c2)
    monkeypatch.setenv("COMMIT_V1", c1)
    hf_home = tmp_path / "hf-home"
    out = run_hf(READ_SCRIPT, registry_server.url + "/hf", registry_server.admin_token, hf_home)

    assert out["main_sha"] == c2
    assert out["private"] is False
    assert out["siblings"] == {f["path"]: [f["size"], f["sha256"]] for f in v2["files"]}
    assert out["card_library"] == "peft"
    assert out["sha@main"] == c2
    for rev in revs[1:]:
        assert out[f"sha@{rev}"] == c1, rev
    assert out["files@prod"] == sorted(_files(v1))
    assert out["branches"] == {"main": c2, "prod": c1}
    assert out["tags"] == [["v2", c2], ["v1", c1]]
    assert out["commits"] == [[c2, "v2", ["admin"]], [c1, "v1", ["admin"]]]
    assert out["commits@v1"] == [c1]
    assert out["exists"] == [True, False, True]
    readme2 = next(f for f in v2["files"] if f["path"] == "README.md")
    assert out["paths_info"] == [["README.md", readme2["size"], readme2["sha256"]]]
    assert out["tree"] == sorted(["RepoFile", p] for p in _files(v2))
    assert out["snapshot_dir"] == c1  # the 40-hex commit id names the snapshot folder
    assert out["snapshot@prod"] == _files(v1)  # byte-identical to what was published
    assert out["readme@commit_v2"] == "# medical two\n"
    assert out["errors"] == {
        "no_repo": "RepositoryNotFoundError",
        "no_revision": "RevisionNotFoundError",
        "no_file": "RemoteEntryNotFoundError",
        "no_repo_download": "RepositoryNotFoundError",
    }

    # a second snapshot_download offline is served from the HF cache; the endpoint is
    # a closed port, so any request would fail
    offline = run_hf(
        """
from huggingface_hub import snapshot_download
a = snapshot_download("default/medical", revision="prod")
b = snapshot_download("default/medical", revision=os.environ["COMMIT_V1"])
files = {n: sha256_of(os.path.join(a, n)) for n in os.listdir(a)}
print(json.dumps({"same": a == b, "files": files}))
""",
        "http://127.0.0.1:9/hf",
        None,
        hf_home,
        offline=True,
    )
    assert offline == {"same": True, "files": _files(v1)}


def test_file_answers_carry_the_hub_headers(registry_server, published):
    v1 = published["v1"]
    weights = next(f for f in v1["files"] if f["path"] == "adapter_model.safetensors")
    url = f"{registry_server.url}/hf/{REPO}/resolve/prod/adapter_model.safetensors"
    auth = {"Authorization": f"Bearer {registry_server.admin_token}"}
    head = httpx.head(url, headers=auth)
    assert head.headers["X-Repo-Commit"] == _digest_commit(v1)
    assert head.headers["X-Linked-Etag"] == f'"{weights["sha256"]}"'
    assert head.headers["ETag"] == f'"{weights["sha256"]}"'
    assert head.headers["X-Linked-Size"] == str(weights["size"])
    if registry_server.backend == "postgres_s3":
        # a redirect to S3, carrying the metadata itself (the client reads it there)
        assert head.status_code == 302
        location = head.headers["Location"]
        assert not location.startswith(registry_server.url)
        body = httpx.get(location).content  # no auth header: the URL is presigned
    else:
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(weights["size"])
        assert head.headers["Accept-Ranges"] == "bytes"
        ranged = httpx.get(url, headers={**auth, "Range": "bytes=10-"})
        assert ranged.status_code == 206
        body = httpx.get(url, headers=auth).content
        assert ranged.content == body[10:]
    assert hashlib.sha256(body).hexdigest() == weights["sha256"]
    missing = httpx.head(f"{registry_server.url}/hf/{REPO}/resolve/v1/nope.bin", headers=auth)
    assert missing.status_code == 404
    assert missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == _digest_commit(v1)


def _hub_routes(repo: str) -> list[tuple[str, str, dict]]:
    api = f"/hf/api/models/{repo}"
    return [
        ("GET", api, {}),
        ("GET", f"{api}/revision/main", {}),
        ("GET", f"{api}/tree/main", {}),
        ("GET", f"{api}/tree/main?recursive=true", {}),
        ("POST", f"{api}/paths-info/main", {"data": {"paths": ["README.md"]}}),
        ("GET", f"{api}/refs", {}),
        ("GET", f"{api}/commits/main", {}),
        ("HEAD", f"/hf/{repo}/resolve/main/adapter_config.json", {}),
        ("GET", f"/hf/{repo}/resolve/main/adapter_config.json", {}),
    ]


def test_private_repo_is_invisible_to_others_on_every_route(
    registry_server, admin_api, adapter_dir, tmp_path
):
    assert admin_api.post("/v1/namespaces", json={"name": "secret", "private": True}).is_success
    other = admin_api.post(
        "/v1/tokens",
        json={"name": "outsider", "grants": [{"namespace": "default", "scope": "write"}]},
    ).json()["token"]
    reg = loreg.Registry(
        url=registry_server.url,
        token=registry_server.admin_token,
        cache_dir=tmp_path / "c",
        progress=False,
    )
    reg.push(adapter_dir, "plan", namespace="secret")

    def answers(token: str | None, repo: str) -> list[tuple[int, str | None, str]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        out = []
        for method, path, kwargs in _hub_routes(repo):
            r = httpx.request(method, registry_server.url + path, headers=headers, **kwargs)
            out.append(
                (r.status_code, r.headers.get("X-Error-Code"), r.headers.get("X-Error-Message"))
            )
        return out

    owner = answers(registry_server.admin_token, "secret/plan")
    assert all(status in (200, 302) for status, _, _ in owner), owner
    missing = answers(other, "secret/absent")
    assert all(a[:2] == (404, "RepoNotFound") for a in missing), missing
    for token in (other, None):
        hidden = answers(token, "secret/plan")
        # the same answer as a repo that does not exist: no leak of existence
        assert [(s, c, m.replace("secret/plan", "secret/absent")) for s, c, m in hidden] == missing
    client = run_hf(
        """
from huggingface_hub import HfApi, hf_hub_download
print(json.dumps([
    error_of(HfApi().model_info, "secret/plan"),
    error_of(hf_hub_download, "secret/plan", "adapter_config.json"),
]))
""",
        registry_server.url + "/hf",
        other,
        tmp_path / "hf-other",
    )
    assert client == ["RepositoryNotFoundError", "RepositoryNotFoundError"]


def test_main_is_the_latest_even_over_an_alias_named_main(registry_server, published, admin_api):
    v1, v2 = published["v1"], published["v2"]
    r = admin_api.put("/v1/adapters/default/medical/aliases/main", json={"version": 1})
    assert r.status_code == 200, r.text
    info = admin_api.get(f"/hf/api/models/{REPO}/revision/main").json()
    assert info["sha"] == _digest_commit(v2)
    refs = admin_api.get(f"/hf/api/models/{REPO}/refs").json()
    assert [b["name"] for b in refs["branches"]] == ["main", "prod"]  # no second "main"
    assert refs["branches"][0]["targetCommit"] == _digest_commit(v2)
    for rev, want in (("latest", v2), ("v1", v1), (_digest_commit(v1)[:12], None)):
        r = admin_api.get(f"/hf/api/models/{REPO}/revision/{rev}")
        if want is None:  # a short prefix is not a commit id: unknown revision
            assert r.status_code == 404 and r.headers["X-Error-Code"] == "RevisionNotFound"
        else:
            assert r.json()["sha"] == _digest_commit(want), rev


def test_commits_are_paged_with_link_headers(registry_server, published, tmp_path, monkeypatch):
    from registry.services.hub import read

    monkeypatch.setattr(read, "COMMITS_PAGE_SIZE", 1)  # the server runs in this process
    page = httpx.get(
        f"{registry_server.url}/hf/api/models/{REPO}/commits/main",
        headers={"Authorization": f"Bearer {registry_server.admin_token}"},
    )
    assert len(page.json()) == 1 and 'rel="next"' in page.headers["Link"]
    out = run_hf(
        """
from huggingface_hub import HfApi
print(json.dumps([c.title for c in HfApi().list_repo_commits("default/medical")]))
""",
        registry_server.url + "/hf",
        registry_server.admin_token,
        tmp_path / "hf-home",
    )
    assert out == ["v2", "v1"]  # the client followed the Link to the second page
