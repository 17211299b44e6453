"""A private namespace's repo, read through ``/hf`` by the stock client without access.

For a token without a grant on the namespace and for an anonymous caller, every read
call (info, info at a revision, tree, paths-info, refs, commits, the HEAD and the GET
of a file, the whole download) raises exactly what it raises for a repo that does
not exist: ``RepositoryNotFoundError`` with the same message, so nothing tells the
two apart, while a public repo reads fine anonymously. Both backends; one client subprocess.
"""

from __future__ import annotations

import hashlib

import loreg
from tests.support.hf_client import run_hf

SCRIPT = """
from huggingface_hub import (
    HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

def get_file(repo, token):
    url = hf_hub_url(repo, "adapter_config.json", revision="v1")
    hf_raise_for_status(get_session().get(url, headers=build_hf_headers(token=token)))

CALLS = {
    "info": lambda api, repo, token: api.model_info(repo),
    "info@v1": lambda api, repo, token: api.model_info(repo, revision="v1"),
    "tree": lambda api, repo, token: api.list_repo_files(repo),
    "tree@prod": lambda api, repo, token: list(api.list_repo_tree(repo, revision="prod")),
    "paths-info": lambda api, repo, token: api.get_paths_info(repo, ["README.md"]),
    "refs": lambda api, repo, token: api.list_repo_refs(repo),
    "commits": lambda api, repo, token: api.list_repo_commits(repo),
    "head": lambda api, repo, token: get_hf_file_metadata(
        hf_hub_url(repo, "adapter_config.json"), token=token
    ),
    "get": lambda api, repo, token: get_file(repo, token),
    "download": lambda api, repo, token: hf_hub_download(
        repo, "adapter_config.json", revision="prod", token=token
    ),
    "snapshot": lambda api, repo, token: snapshot_download(repo, token=token),
    "file_exists": lambda api, repo, token: api.file_exists(repo, "adapter_config.json"),
}
out = {}
for who, token in (("other", os.environ["OTHER_TOKEN"]), ("anonymous", False)):
    api = HfApi(token=token)
    for repo in ("secret/plan", "secret/absent"):
        for name, call in CALLS.items():
            try:
                result = ["returned", repr(call(api, repo, token))[:200]]
            except Exception as exc:
                result = [type(exc).__name__, str(exc).replace(repo, "<repo>")]
            out[f"{who} {repo} {name}"] = result
# the control: anonymous reads a public namespace's repo
public = hf_hub_download("default/open", "adapter_config.json", token=False)
out["public"] = [sorted(HfApi(token=False).list_repo_files("default/open")), sha256_of(public)]
print(json.dumps(out))
"""


def test_a_private_repo_reads_as_missing_for_every_call(
    registry_server, admin_api, adapter_dir, adapter_files, tmp_path, monkeypatch
):
    assert admin_api.post("/v1/namespaces", json={"name": "secret", "private": True}).is_success
    other = admin_api.post(
        "/v1/tokens",
        json={"name": "outsider", "grants": [{"namespace": "default", "scope": "write"}]},
    ).json()["token"]
    reg = loreg.Registry(
        url=registry_server.url,
        token=registry_server.admin_token,
        cache_dir=tmp_path / "sdk-cache",
        progress=False,
    )
    reg.push(adapter_dir, "plan", namespace="secret")
    reg.set_alias("secret/plan-v1", "prod")
    reg.push(adapter_dir, "open")
    monkeypatch.setenv("OTHER_TOKEN", other)
    out = run_hf(SCRIPT, registry_server.url + "/hf", other, tmp_path / "hf")

    public_files, config_sha = out.pop("public")
    assert public_files == sorted(adapter_files)
    assert config_sha == hashlib.sha256(adapter_files["adapter_config.json"]).hexdigest()
    calls = {key.rsplit(" ", 1)[1] for key in out}
    assert len(calls) == 12
    for who in ("other", "anonymous"):
        for call in calls:
            hidden, missing = out[f"{who} secret/plan {call}"], out[f"{who} secret/absent {call}"]
            assert hidden == missing, (who, call)  # nothing tells a private repo from none
            if call == "file_exists":
                assert hidden == ["returned", "False"], who
            else:
                assert hidden[0] == "RepositoryNotFoundError", (who, call, hidden)
    # the admin token (the owner) reads it
    owner = run_hf(
        """
from huggingface_hub import HfApi
print(json.dumps(HfApi().list_repo_files("secret/plan", revision="prod")))
""",
        registry_server.url + "/hf",
        registry_server.admin_token,
        tmp_path / "hf-owner",
    )
    assert sorted(owner) == sorted(f["path"] for f in reg.resolve("secret/plan-v1")["files"])
