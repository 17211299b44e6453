"""Mirror import job: one upstream Hub model repo at one commit -> a version of an adapter.

Params (validated at submission, :class:`registry.job_params.MirrorImportParams`):
``repo`` (``org/name``) and ``revision`` (default: the repo's default branch) on the
server's upstream (``LOREG_HUB_URL``, token ``LOREG_HUB_TOKEN``). The output adapter
is the job's ``namespace/output``.

1. Resolve the revision to the upstream commit (``repo_info(...).sha``).
2. If a version of the output already has a ``mirrored_from`` edge to that commit,
   publish nothing: the result names that version with ``"skipped": true``. So a
   re-sync of an unchanged upstream changes nothing.
3. Keep the files the registry stores (the publish allow-list: safetensors, JSON,
   text, sentencepiece; never a pickle) and download them through the stock client
   into ``<data_dir>/hf-cache`` at the pinned commit. What is left out is listed in
   the result (``left_out``: path and reason). No ``adapter_model.safetensors`` (say,
   only ``adapter_model.bin``) fails the job with that reason.
4. The upstream card's metadata (``README.md``, registry.modelcard) gives the
   version its tags, description and (when the config names none) base model.
5. The runner publishes the files as they are (same bytes) with a ``mirrored_from``
   edge to the upstream commit (params: ``upstream_url``, ``repo``, ``revision``,
   ``commit``), the job id as idempotency key.

No torch here: the files are copied, not loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import Session

from loreg.errors import InvalidRefError
from loreg.hub_refs import format_upstream
from loreg.vocabulary import ArtifactKind, Relation
from registry.errors import RegistryError
from registry.modelcard import ImportedFacts, imported_facts
from registry.services.upstreams import mirrored_version, upstream_commit_id
from registry.validation.content import file_kind
from registry.validation.paths import is_pickle_path, validate_file_path
from workers.errors import JobInputError
from workers.hub_upstream import Upstream, UpstreamSnapshot, check_online
from workers.jobs.common import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from workers.runner import JobContext, JobOutput

#: Folder of the Hugging Face client's cache under the worker's data dir.
HF_CACHE = "hf-cache"
#: The model card, whose YAML metadata fills tags, description and base model.
CARD = "README.md"


def select_files(paths: tuple[str, ...]) -> tuple[list[str], list[dict[str, str]]]:
    """The upstream files the registry would store, and the others with the reason."""
    kept: list[str] = []
    left_out: list[dict[str, str]] = []
    for path in paths:
        reason = _refusal(path)
        if reason is None:
            kept.append(path)
        else:
            left_out.append({"path": path, "reason": reason})
    return kept, left_out


def _refusal(path: str) -> str | None:
    if is_pickle_path(path):
        return "a pickle format, which can run code when loaded (loreg stores safetensors)"
    try:
        validate_file_path(path)
        file_kind(path)
    except (RegistryError, InvalidRefError, ValueError) as exc:
        return getattr(exc, "message", None) or str(exc)
    return None


def _missing_weights(snapshot: UpstreamSnapshot, hub_url: str, left_out: list[dict[str, str]]):
    what = format_upstream(snapshot.repo_id, snapshot.commit)
    pickles = [item["path"] for item in left_out if "pickle" in item["reason"]]
    if pickles:
        return JobInputError(
            f"upstream {what} at {hub_url} has no {ADAPTER_WEIGHTS}, only "
            f"{', '.join(pickles)}: a pickle, which loreg refuses (it can run code when loaded). "
            "Convert it upstream with save_pretrained(..., safe_serialization=True)"
        )
    return JobInputError(
        f"upstream {what} at {hub_url} is not a PEFT adapter: it lacks {ADAPTER_WEIGHTS}"
    )


def run(jc: JobContext) -> JobOutput:
    """Resolve, skip if already mirrored, download the storable files, hand them to publish."""
    if jc.job.inputs:
        raise JobInputError("a mirror_import job takes no inputs")
    settings = jc.ctx.settings
    repo, revision = jc.params["repo"], jc.params.get("revision")
    check_online()
    upstream = Upstream(settings.hub_url, settings.hub_token, settings.data_dir / HF_CACHE)
    jc.report(0.05, f"resolving {format_upstream(repo, revision)} at {settings.hub_url}")
    snapshot = upstream.resolve(repo, revision)
    described = {
        "upstream_url": settings.hub_url,
        "repo": repo,
        "revision": revision,
        "commit": snapshot.commit,
    }
    jc.log(f"upstream commit {snapshot.commit}")
    with Session(jc.ctx.engine) as session:
        upstream_id = upstream_commit_id(session, settings.hub_url, repo, snapshot.commit)
        existing = mirrored_version(session, jc.job.namespace, jc.job.output, upstream_id)
    if existing is not None:
        jc.report(0.9, f"{existing.ref} already mirrors commit {snapshot.commit}")
        return JobOutput(
            folder=None,
            unchanged={
                "kind": ArtifactKind.ADAPTER.value,
                "ref": existing.ref,
                "version": existing.number,
                "digest": existing.digest,
                # an earlier attempt of this very job published it: not a skip
                "skipped": existing.job_id != jc.job.id,
                "upstream": described,
            },
        )
    kept, left_out = select_files(snapshot.files)
    if ADAPTER_WEIGHTS not in kept:
        raise _missing_weights(snapshot, settings.hub_url, left_out)
    if ADAPTER_CONFIG not in kept:
        raise JobInputError(
            f"upstream {format_upstream(repo, snapshot.commit)} at {settings.hub_url} is not a "
            f"PEFT adapter: it lacks {ADAPTER_CONFIG}"
        )
    out = jc.workdir / "out"
    for n, path in enumerate(kept):
        local = upstream.download(snapshot, path)
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(local.resolve())  # the cached bytes, published as they are
        jc.report(0.1 + 0.8 * (n + 1) / len(kept), f"downloaded {path}")
    facts = _card_facts(out / CARD)
    card = {
        "title": f"{jc.job.output}: mirror of {format_upstream(repo, snapshot.commit)}",
        "type": "mirror_import",
        "upstream": described,
        "left_out": left_out,
    }
    return JobOutput(
        folder=out,
        lineage=[
            {
                "relation": Relation.MIRRORED_FROM.value,
                "parent_upstream_id": upstream_id,
                "params": described,
            }
        ],
        card=card,
        base_model=_base_model(out / ADAPTER_CONFIG) or facts.base_model,
        description=facts.description or f"Mirror of {format_upstream(repo)} ({settings.hub_url})",
        tags=facts.tags,
        extra_result={"skipped": False, "upstream": described, "left_out": left_out},
    )


def _card_facts(card_path: Path) -> ImportedFacts:
    """Tags, description and base model from the upstream's model card, if it has one."""
    try:
        return imported_facts(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return ImportedFacts()


def _base_model(config_path: Path) -> str | None:
    """``base_model_name_or_path`` of the upstream config (the publish checks the config)."""
    try:
        config: Any = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the publish's config check names the problem
    name = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return name if isinstance(name, str) and name else None
