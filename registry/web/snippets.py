"""Copy-paste snippets of an adapter page: how to get this version with each tool."""

from __future__ import annotations

import json
import shlex

from loreg.vocabulary import ArtifactKind


def snippets(
    base_url: str,
    namespace: str,
    name: str,
    version: int,
    base_model: str | None,
    kind: str = ArtifactKind.ADAPTER,
) -> list[tuple[str, str]]:
    """``(label, code)`` pairs for ``loreg pull``, the SDK, ``hf download`` and PEFT.

    ``base_url`` is the registry's external URL (no trailing slash). The Hub
    endpoint is ``<base_url>/hf``; a loreg token is the Hub token there. A dataset
    gets the two ways to pull its files (nothing loads it onto a model).
    """
    ref = f"{namespace}/{name}-v{version}"
    repo = f"{namespace}/{name}"
    hub = f"{base_url}/hf"
    base = base_model or "<base model>"
    py_ref, py_repo, py_base = json.dumps(ref), json.dumps(repo), json.dumps(base)
    cli = ("CLI", f"export LOREG_URL={shlex.quote(base_url)}\nloreg pull {shlex.quote(ref)}")
    if kind == ArtifactKind.DATASET:
        return [
            cli,
            (
                "Python SDK",
                "import loreg\n\n"
                f"registry = loreg.Registry(url={json.dumps(base_url)})\n"
                f"folder = registry.pull({py_ref})  # the JSONL files, sha256-checked",
            ),
        ]
    return [
        cli,
        (
            "Python SDK",
            "import loreg\n"
            "from transformers import AutoModelForCausalLM\n\n"
            f"registry = loreg.Registry(url={json.dumps(base_url)})\n"
            f"model = AutoModelForCausalLM.from_pretrained({py_base})\n"
            f"model = registry.load(model, {py_ref})",
        ),
        (
            "hf download",
            f"export HF_ENDPOINT={shlex.quote(hub)} HF_TOKEN=$LOREG_TOKEN\n"
            f"hf download {shlex.quote(repo)} --revision v{version}",
        ),
        (
            "PEFT",
            f"# HF_ENDPOINT={hub} and HF_TOKEN=<a loreg token> in the environment\n"
            "from peft import PeftModel\n"
            "from transformers import AutoModelForCausalLM\n\n"
            f"model = AutoModelForCausalLM.from_pretrained({py_base})\n"
            f'model = PeftModel.from_pretrained(model, {py_repo}, revision="v{version}")',
        ),
    ]
