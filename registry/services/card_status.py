"""What a version's card status reads as (shared by the catalog and the cards service).

A ``version_cards`` row says ``pending``, ``ready`` or ``failed``; a ``pending`` row
whose card job ended without ending the row (its attempts used up, cancelled)
reads as ``failed``, and a version without a row (published before cards, not
back-filled yet) as ``pending``.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from loreg.vocabulary import TERMINAL_STATUSES, CardStatus
from registry.models import Job, VersionCard


def effective_status(row: VersionCard | None, job: Job | None) -> tuple[str, str | None]:
    """``(card_status, error)``: a pending row whose job ended without finishing it failed."""
    if row is None:
        return CardStatus.PENDING.value, None  # published before cards: the back-fill takes it
    if row.status == CardStatus.PENDING and job is not None and job.status in TERMINAL_STATUSES:
        return CardStatus.FAILED.value, f"the card job {job.status}: {job.error or 'no error'}"
    return row.status, row.error


def card_statuses(session: Session, version_ids: list[int]) -> dict[int, str]:
    """``{version id: card_status}`` for several versions in one query (adapter detail)."""
    if not version_ids:
        return {}
    rows = session.exec(
        select(VersionCard.version_id, VersionCard.status, Job.status)
        .outerjoin(Job, col(Job.id) == VersionCard.job_id)
        .where(col(VersionCard.version_id).in_(version_ids))
    ).all()
    out = {vid: CardStatus.PENDING.value for vid in version_ids}
    for vid, status, job_status in rows:
        stuck = status == CardStatus.PENDING and job_status in TERMINAL_STATUSES
        out[vid] = CardStatus.FAILED.value if stuck else status
    return out


_TEXT_KEYS = ("title", "type", "method", "note", "peft_type", "base_model", "target_modules")


def card_text(session: Session, version_id: int) -> str | None:
    """The text search indexes for a version: key card facts and its README; None if not ready.

    The card job refreshes the adapter's search document when its card becomes
    ``ready`` (``workers/jobs/card.py``), in the transaction that stores it.
    """
    row = session.get(VersionCard, version_id)
    if row is None or row.status != CardStatus.READY:
        return None
    card = row.card or {}
    lines = []
    for key in _TEXT_KEYS:
        value = card.get(key)
        if isinstance(value, str) and value:
            lines.append(value)
        elif isinstance(value, list):
            lines.append(" ".join(v for v in value if isinstance(v, str)))
    if row.readme:
        lines.append(row.readme)
    return "\n".join(line for line in lines if line)
