"""The stock client reads folders, odd file names and every revision spelling through ``/hf``.

Both backends (the local store streams the bytes; S3 answers 302 to a presigned URL).
One published adapter holds nested folders and a file name with the characters a
URL quotes (space, ``#``, ``%``, ``+``, ``;``, ``=``, ``&``, non-ASCII); the client runs in
one subprocess and reports every call's result or its exception's type.
"""

from __future__ import annotations

import shutil

import httpx
import pytest

import loreg
from tests.support.hf_client import run_hf

REPO = "default/names"
ODD = "docs/notes #1 100% a+b é;x=y&z.md"
DEEP = "docs/deep/x.json"
TOP = ["README.md", "adapter_config.json", "adapter_model.safetensors"]


@pytest.fixture
def published(registry_server, adapter_dir, tmp_path) -> dict:
    """``default/names`` v1 (with folders and the odd name) and v2 (README only changed)."""
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
        (folder / "README.md").write_text(f"# names {note}\n")
        (folder / "docs" / "deep").mkdir(parents=True)
        (folder / ODD).write_text("odd name\n")
        (folder / DEEP).write_text('{"deep": true}')
        reg.push(folder, "names")
        views.append(reg.resolve(f"names-v{len(views) + 1}"))
    reg.set_alias("names-v1", "prod")
    return {"v1": views[0], "v2": views[1]}


SCRIPT = """
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
api = HfApi()
fs = HfFileSystem()
repo = "default/names"
odd, DEEP, digest = os.environ["ODD"], os.environ["DEEP"], os.environ["DIGEST_V1"]
out = {}

def entries(items):
    return [[type(e).__name__, e.path] for e in items]

def call(key, fn, *args, **kwargs):
    try:
        out[key] = fn(*args, **kwargs)
    except Exception as exc:
        out[key] = "raised " + type(exc).__name__

read = lambda path: open(path, encoding="utf-8").read()
call("root", lambda: entries(api.list_repo_tree(repo)))
call("recursive", lambda: entries(api.list_repo_tree(repo, recursive=True)))
call("docs", lambda: entries(api.list_repo_tree(repo, path_in_repo="docs")))
call("docs/deep", lambda: entries(api.list_repo_tree(repo, path_in_repo="docs/deep")))
call("docs rec", lambda: entries(api.list_repo_tree(repo, path_in_repo="docs", recursive=True)))
call("tree of a file", lambda: entries(api.list_repo_tree(repo, path_in_repo="README.md")))
call("tree of nothing", lambda: entries(api.list_repo_tree(repo, path_in_repo="nope")))
call("paths", lambda: entries(api.get_paths_info(repo, ["docs", odd, "nope", DEEP])))
call("odd sha", lambda: [p.lfs.sha256 for p in api.get_paths_info(repo, [odd])])
call("odd@prod", lambda: read(hf_hub_download(repo, odd, revision="prod")))
call("odd@digest", lambda: read(hf_hub_download(repo, odd, revision=digest)))
call("odd@hex64", lambda: read(hf_hub_download(repo, odd, revision=digest[7:])))
call("deep@v2", lambda: read(hf_hub_download(repo, DEEP, revision="v2")))
call("exists odd", lambda: api.file_exists(repo, odd))
call("docs only", lambda: sorted(
    os.path.relpath(os.path.join(d, f), folder)
    for folder in [snapshot_download(repo, revision="prod", allow_patterns=["docs/*"])]
    for d, _, fs in os.walk(folder) for f in fs
))
weights = repo + "@prod/adapter_model.safetensors"
call("fs ls", lambda: fs.ls(repo + "/docs", detail=False))
call("fs find", lambda: fs.find(repo + "@refs%2Fheads%2Fprod"))
call("fs info", lambda: [fs.info(repo + "/" + odd)["size"], fs.isdir(repo + "/docs/deep")])
call("fs range", lambda: fs.cat_file(weights, start=1000, end=1100).hex())
call("fs tail", lambda: fs.cat_file(weights, start=-10).hex())
def last(items):
    return [[e.path, e.last_commit.oid, e.last_commit.title, str(e.last_commit.date)[:4]]
            for e in items]
call("expand", lambda: last(api.list_repo_tree(repo, expand=True)))
call("expand@prod", lambda: last(api.list_repo_tree(repo, "docs", revision="prod", expand=True)))
call("expand paths", lambda: last(api.get_paths_info(repo, ["README.md", "docs"], expand=True)))
call("prs", lambda: api.list_repo_refs(repo, include_pull_requests=True).pull_requests)
for rev in ("refs/heads/main", "refs/heads/prod", "refs/tags/v1"):
    call("sha@" + rev, lambda: api.model_info(repo, revision=rev).sha)
    call("files@" + rev, lambda: sorted(api.list_repo_files(repo, revision=rev)))
    call("docs@" + rev, lambda: entries(api.list_repo_tree(repo, "docs", revision=rev)))
    call("readme@" + rev, lambda: read(hf_hub_download(repo, "README.md", revision=rev)))
    call("odd@" + rev, lambda: read(hf_hub_download(repo, odd, revision=rev)))
    call("exists@" + rev, lambda: api.file_exists(repo, DEEP, revision=rev))
    call("paths@" + rev, lambda: entries(api.get_paths_info(repo, [DEEP], revision=rev)))
    call("commits@" + rev, lambda: [c.title for c in api.list_repo_commits(repo, revision=rev)])
for rev in ("nope", "v9", "refs/heads/nope", "refs/tags/prod"):
    call("info@" + rev, api.model_info, repo, revision=rev)
    call("tree@" + rev, api.list_repo_files, repo, revision=rev)
    call("paths@" + rev, api.get_paths_info, repo, ["README.md"], revision=rev)
    call("commits@" + rev, api.list_repo_commits, repo, revision=rev)
    call("download@" + rev, hf_hub_download, repo, "README.md", revision=rev)
print(json.dumps(out))
"""


def _sha(view: dict, path: str) -> str:
    return next(f["sha256"] for f in view["files"] if f["path"] == path)


def test_folders_odd_names_and_revision_spellings(
    registry_server, published, adapter_files, tmp_path, monkeypatch
):
    v1, v2 = published["v1"], published["v2"]
    c1, c2 = (v["digest"].removeprefix("sha256:")[:40] for v in (v1, v2))
    monkeypatch.setenv("ODD", ODD)
    monkeypatch.setenv("DEEP", DEEP)
    monkeypatch.setenv("DIGEST_V1", v1["digest"])
    out = run_hf(SCRIPT, registry_server.url + "/hf", registry_server.admin_token, tmp_path / "hf")

    # folder semantics as on the Hub: a listing shows one level, folders as RepoFolder
    top = [["RepoFile", p] for p in TOP]
    assert out["root"] == [["RepoFolder", "docs"], *top]
    assert out["recursive"] == [
        ["RepoFolder", "docs"],
        ["RepoFolder", "docs/deep"],
        *top,
        ["RepoFile", DEEP],
        ["RepoFile", ODD],
    ]
    assert out["docs"] == [["RepoFolder", "docs/deep"], ["RepoFile", ODD]]
    assert out["docs/deep"] == [["RepoFile", DEEP]]
    assert out["docs rec"] == [["RepoFolder", "docs/deep"], ["RepoFile", DEEP], ["RepoFile", ODD]]
    assert out["tree of a file"] == "raised RemoteEntryNotFoundError"
    assert out["tree of nothing"] == "raised RemoteEntryNotFoundError"
    assert out["paths"] == [["RepoFolder", "docs"], ["RepoFile", ODD], ["RepoFile", DEEP]]
    assert out["odd sha"] == [_sha(v2, ODD)]

    # a name the client percent-encodes arrives intact, at every revision form
    for key in ("odd@prod", "odd@digest", "odd@hex64"):
        assert out[key] == "odd name\n", key
    assert out["deep@v2"] == '{"deep": true}'
    assert out["exists odd"] is True
    assert out["docs only"] == [DEEP, ODD]

    # HfFileSystem: listings, and bounded Range reads of a file's middle and end
    assert out["fs ls"] == [f"{REPO}/docs/deep", f"{REPO}/{ODD}"]
    assert out["fs find"] == sorted(f"{REPO}@refs%2Fheads%2Fprod/{p}" for p in [*TOP, DEEP, ODD])
    assert out["fs info"] == [len(b"odd name\n"), True]
    weights = adapter_files["adapter_model.safetensors"]
    assert out["fs range"] == weights[1000:1100].hex()
    assert out["fs tail"] == weights[-10:].hex()
    # expand=true: each entry's lastCommit is the version that last changed it (v2 only
    # changed the README), with a date the client parses
    year = v1["created_at"][:4]
    changed = {"README.md": [c2, "v2", year]}
    assert out["expand"] == [[p, *changed.get(p, [c1, "v1", year])] for p in ["docs", *TOP]]
    assert out["expand@prod"] == [[p, c1, "v1", year] for p in ["docs/deep", ODD]]
    assert out["expand paths"] == [["README.md", c2, "v2", year], ["docs", c1, "v1", year]]
    assert out["prs"] == []  # asked for, the list is there (the client reads it unguarded)

    # the full ref names list_repo_refs gives (``ref``) work as revisions on every call
    for rev, commit, readme in (
        ("refs/heads/main", c2, "two"),
        ("refs/heads/prod", c1, "one"),
        ("refs/tags/v1", c1, "one"),
    ):
        assert out[f"sha@{rev}"] == commit, rev
        assert out[f"files@{rev}"] == sorted([*TOP, DEEP, ODD]), rev
        assert out[f"docs@{rev}"] == [["RepoFolder", "docs/deep"], ["RepoFile", ODD]], rev
        assert out[f"readme@{rev}"] == f"# names {readme}\n", rev
        assert out[f"odd@{rev}"] == "odd name\n", rev
        assert out[f"exists@{rev}"] is True, rev
        assert out[f"paths@{rev}"] == [["RepoFile", DEEP]], rev
        assert out[f"commits@{rev}"] == (["v2", "v1"] if commit == c2 else ["v1"]), rev

    # an unknown revision is RevisionNotFoundError on every revision-taking call
    for rev in ("nope", "v9", "refs/heads/nope", "refs/tags/prod"):
        for call in ("info", "tree", "paths", "commits", "download"):
            assert out[f"{call}@{rev}"] == "raised RevisionNotFoundError", (call, rev)


PUBLIC_URL = "https://loreg.example.com"


def test_commit_pages_link_to_the_public_url(registry_server, published, admin_api, monkeypatch):
    from registry.services.hub import read

    # the server runs in this process; the public URL, as behind a reverse proxy, is set
    # once the adapter is published (uploads would go to it too)
    monkeypatch.setattr(read, "COMMITS_PAGE_SIZE", 1)
    ctx = registry_server.ctx
    monkeypatch.setattr(ctx, "settings", ctx.settings.with_overrides(public_url=PUBLIC_URL))
    api = f"/hf/api/models/{REPO}/commits"
    first = admin_api.get(f"{api}/refs%2Fheads%2Fmain")
    assert [c["title"] for c in first.json()] == ["v2"]
    assert first.headers["Link"] == f'<{PUBLIC_URL}{api}/refs%2Fheads%2Fmain?p=1>; rel="next"'
    # the same page through the server's own address: what the link names, minus the host
    second = admin_api.get(first.headers["Link"][1:].split(">")[0].removeprefix(PUBLIC_URL))
    assert [c["title"] for c in second.json()] == ["v1"]
    assert "Link" not in second.headers


def test_paths_info_takes_a_form_or_a_json_body(registry_server, published, admin_api):
    url = f"/hf/api/models/{REPO}/paths-info/prod"
    form = admin_api.post(url, data={"paths": ["docs", ODD, "docs/", "/docs", "nope"]})
    as_json = admin_api.post(url, json={"paths": ["docs", ODD, "docs/", "/docs", "nope"]})
    expected = [["directory", "docs"], ["file", ODD]]  # a folder named three ways is one entry
    for answer in (form, as_json):
        assert answer.status_code == 200, answer.text
        assert [[e["type"], e["path"]] for e in answer.json()] == expected
    one = admin_api.post(url, json={"paths": DEEP, "expand": False})
    assert [e["path"] for e in one.json()] == [DEEP]
    assert "lastCommit" not in one.json()[0]
    expanded = admin_api.post(url, json={"paths": [DEEP], "expand": True}).json()
    assert expanded[0]["lastCommit"]["title"] == "v1"
    for bad in (b"{not json", b'{"paths": [1]}', b'["docs"]', b'{"path": ["docs"]}'):
        r = admin_api.post(url, content=bad, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (bad, r.text)
        assert "paths-info" in r.headers["X-Error-Message"], bad


def test_a_repo_without_versions_says_so(registry_server, admin_api, tmp_path):
    created = admin_api.post("/hf/api/repos/create", json={"name": "empty", "type": "model"})
    assert created.status_code == 200, created.text
    info = admin_api.get("/hf/api/models/default/empty")
    assert info.status_code == 200 and info.json()["sha"] is None
    out = run_hf(
        """
from huggingface_hub import HfApi, snapshot_download
api = HfApi()
out = {}
for name, call in (
    ("info@main", lambda: api.model_info("default/empty", revision="main")),
    ("snapshot", lambda: snapshot_download("default/empty")),
    ("files", lambda: api.list_repo_files("default/empty")),
):
    try:
        call()
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
""",
        registry_server.url + "/hf",
        registry_server.admin_token,
        tmp_path / "hf",
    )
    assert set(out) == {"info@main", "snapshot", "files"}
    for name, (kind, message) in out.items():
        assert kind == "RevisionNotFoundError", name
        assert "has no version yet" in message, name


def test_range_requests_on_both_stores(registry_server, published, admin_api):
    weights = f"/hf/{REPO}/resolve/prod/adapter_model.safetensors"
    whole = admin_api.get(weights, follow_redirects=True)
    assert whole.status_code == 200

    def get(range_header: str) -> httpx.Response:
        return admin_api.get(weights, headers={"Range": range_header}, follow_redirects=True)

    part = get("bytes=100-199")
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole.content)}"
    assert get("bytes=-16").content == whole.content[-16:]
    assert get(f"bytes={len(whole.content)}-").status_code == 416
    if registry_server.backend == "sqlite_local":
        # the API serves the bytes: a unit other than bytes is ignored (RFC 9110 §14.2
        # says a server MUST), the whole file comes back (moto's S3 reads it as bytes)
        for foreign in ("items=0-1", "lines=3-"):
            other = get(foreign)
            assert other.status_code == 200 and other.content == whole.content, foreign
