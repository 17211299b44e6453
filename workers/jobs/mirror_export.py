"""Mirror export job: one loreg version -> one commit on ``main`` of an upstream Hub repo.

Params (:class:`registry.job_params.MirrorExportParams`): ``repo`` (``org/name``) on
the server's upstream (``LOREG_HUB_URL``, token ``LOREG_HUB_TOKEN``) and ``private``
(used when the repo is created). The one input is the version.

1. Fetch the version's files; its ``README.md`` gets Hub-style YAML metadata
   (registry.modelcard: ``base_model``, ``library_name: peft``, tags, and the loreg
   ref, digest and lineage parents), a card being written when it has none.
2. Through the stock client (workers.hub_upstream): create the repo if missing and
   commit the files, with the loreg ref and digest in the commit message; nothing is
   committed when ``main`` upstream already holds exactly these files, so a re-export
   changes nothing.

Nothing is published in loreg: the result names the version and the upstream commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session

from loreg.hub_refs import format_upstream
from loreg.vocabulary import ArtifactKind
from registry.modelcard import hub_metadata, with_metadata
from registry.models import Version
from registry.services import lineage
from workers.errors import JobInputError
from workers.hub_upstream import Upstream, check_online
from workers.jobs.mirror_import import CARD, HF_CACHE
from workers.runner import JobContext, JobOutput


def exported_card(text: str, version: Version, ref: str, parents: list[str]) -> str:
    """The README.md text to export: ``text`` with loreg's Hub metadata merged in."""
    tags = (version.meta or {}).get("tags")
    loreg: dict[str, Any] = {"ref": ref, "digest": version.digest}
    if parents:
        loreg["parents"] = parents
    metadata = hub_metadata(
        base_model=version.base_model,
        tags=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else None,
        loreg=loreg,
    )
    if not text.strip():
        text = f"# {ref}\n\n{version.description or 'A LoRA adapter exported from loreg.'}\n"
    return with_metadata(text, metadata)


def _parent_refs(session: Session, version: Version) -> list[str]:
    """The refs of the version's lineage parents (public ones only: this leaves loreg)."""
    edges = lineage.parents_of(session, lineage.node_of(version), None)
    return [e["parent"]["ref"] for e in edges if isinstance(e["parent"].get("ref"), str)]


def run(jc: JobContext) -> JobOutput:
    """Fetch the version, add the Hub card metadata, commit it upstream (or skip)."""
    inputs = jc.job.inputs or []
    if len(inputs) != 1:
        raise JobInputError(f"a mirror_export job takes exactly one input, got {len(inputs)}")
    item = inputs[0]
    settings = jc.ctx.settings
    repo, private = jc.params["repo"], jc.params.get("private")
    check_online()
    folder: Path = jc.fetch_version(item["version_id"])
    with Session(jc.ctx.engine) as session:
        version = session.get(Version, item["version_id"])
        if version is None:
            raise JobInputError(f"input {item['ref']} no longer exists")
        parents = _parent_refs(session, version)
    card_path = folder / CARD
    text = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    card_path.write_text(exported_card(text, version, item["ref"], parents), encoding="utf-8")
    jc.report(0.3, f"exporting {item['ref']} to {format_upstream(repo)} at {settings.hub_url}")
    upstream = Upstream(settings.hub_url, settings.hub_token, settings.data_dir / HF_CACHE)
    message = f"loreg {item['ref']} {version.digest}"
    commit, skipped = upstream.publish(repo, folder, message, private=private)
    jc.report(0.95, f"upstream commit {commit}" + (" (already there)" if skipped else ""))
    return JobOutput(
        folder=None,
        unchanged={
            "kind": ArtifactKind.ADAPTER.value,
            "ref": item["ref"],
            "digest": version.digest,
            "skipped": skipped,
            "upstream": {"upstream_url": settings.hub_url, "repo": repo, "commit": commit},
        },
    )
