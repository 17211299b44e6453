"""Mirroring to an upstream Hub: ``mirror_export`` jobs, and the round trip back.

The upstream "Hugging Face Hub" is a second loreg serving ``/hf`` (the fixtures of
test_mirror_import); the job runs with the real runner and the stock client in a
subprocess, so its commits go through the upstream's Hub write side.
"""

from __future__ import annotations

import shutil

from registry.modelcard import parse_card
from tests.integration import test_mirror_import as _imports

# the same two registries as the import tests: an upstream loreg and the downstream
upstream = _imports.upstream
registry_settings_overrides = _imports.registry_settings_overrides
down = _imports.down
_run_elsewhere = _imports._run_elsewhere
_sdk = _imports._sdk


def _files(view: dict) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in view["files"]}


def test_export_commits_a_version_once_then_imports_back(
    registry_server, upstream, down, tmp_path, adapter_dir
):
    folder = tmp_path / "adapter"
    shutil.copytree(adapter_dir, folder)
    (folder / "README.md").write_text("# medical\n\nA medical LoRA.\n")
    pushed = down.push(folder, "medical")
    ours = down.resolve(pushed.ref)

    job = down.mirror_export(pushed.ref, "hf://up-org/medical")
    assert job["type"] == "mirror_export" and job["queue"] == "cpu"
    assert _run_elsewhere(registry_server.settings, job["id"], tmp_path) == "succeeded"
    result = down.job(job["id"])["result"]
    assert result["skipped"] is False and result["ref"] == pushed.ref

    with _sdk(upstream, tmp_path) as up:
        theirs = up.resolve("up-org/medical-v1")
        card = (up.pull("up-org/medical-v1") / "README.md").read_text()
    assert result["upstream"]["commit"] == theirs["digest"].removeprefix("sha256:")[:40]
    exported = _files(theirs)
    assert exported.pop("README.md") != _files(ours)["README.md"]  # the card gained metadata
    assert exported == {p: s for p, s in _files(ours).items() if p != "README.md"}
    parsed = parse_card(card)
    assert parsed.metadata["library_name"] == "peft"
    assert parsed.metadata["loreg"] == {"ref": pushed.ref, "digest": ours["digest"]}
    assert parsed.body == "# medical\n\nA medical LoRA.\n"
    assert theirs["metadata"]["hub_commit"] == f"loreg {pushed.ref} {ours['digest']}"

    # exporting the same version again commits nothing upstream
    again = down.mirror_export(pushed.ref, "hf://up-org/medical")
    assert _run_elsewhere(registry_server.settings, again["id"], tmp_path) == "succeeded"
    second = down.job(again["id"])["result"]
    assert second["skipped"] is True
    assert second["upstream"]["commit"] == result["upstream"]["commit"]
    with _sdk(upstream, tmp_path) as up:
        versions = list(up.versions("up-org/medical"))
    assert [v["version"] for v in versions] == [1]

    # and back: the exported card's metadata fills the imported version's description
    back = down.mirror_import("hf://up-org/medical", "acme/medical-copy")
    assert _run_elsewhere(registry_server.settings, back["id"], tmp_path) == "succeeded"
    copy = down.resolve("acme/medical-copy-v1")
    assert _files(copy) == _files(theirs)
    assert copy["description"] == "A medical LoRA."
    assert copy["metadata"]["tags"] == ["lora", "loreg"]


def test_export_refuses_a_bad_target_or_input(registry_server, down, admin_api, adapter_dir):
    pushed = down.push(adapter_dir, "medical")
    r = admin_api.post(
        "/v1/jobs",
        json={
            "type": "mirror_export",
            "inputs": [],
            "params": {"repo": "up-org/medical"},
            "output": "medical",
        },
    )
    assert r.status_code == 422 and "exactly one input" in r.text
    r = admin_api.post(
        "/v1/jobs",
        json={
            "type": "mirror_export",
            "inputs": [{"ref": pushed.ref}],
            "params": {"repo": "not a repo"},
            "output": "medical",
        },
    )
    assert r.status_code == 422 and "params" in r.text
