"""Training presets: the built-in sizes and each namespace's own named configs.

The built-ins (``loreg.vocabulary.Preset``: ``small`` ... ``xlarge``, their ``r`` and
``lora_alpha`` in ``PRESET_SHAPES``) are code: read-only, the same in every namespace,
and their names are reserved. A namespace's presets are rows (``presets``), saved with
write scope and checked by the train job's own rules (:func:`registry.job_params.
preset_params`). A ``train`` job naming a preset gets its values copied into the job's
params at submission (:func:`apply`), under the params the job gives itself, so a later
change of the preset never changes a submitted job.

A list is the built-ins first (in their order), then the namespace's presets oldest
first, paged by the keyset ``(group, position)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from loreg.vocabulary import PRESET_SHAPES, Preset
from registry.auth import Principal, check_visible, require_scope
from registry.errors import Conflict, InvalidCursor, InvalidJob, InvalidPreset, NotFound
from registry.job_params import preset_params
from registry.models import Namespace, TrainPreset, utcnow
from registry.schemas import PresetRequest
from registry.services import audit, catalog
from registry.services.pagination import Page, PageRequest, decode_cursor, encode_cursor

#: The built-in presets' params, by name.
BUILTIN: dict[str, dict[str, Any]] = {
    preset.value: {"r": r, "lora_alpha": alpha} for preset, (r, alpha) in PRESET_SHAPES.items()
}
_BUILTIN_ORDER = [preset.value for preset in Preset]
_GROUP_BUILTIN, _GROUP_SAVED = 0, 1


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


def builtin_view(name: str) -> dict[str, Any]:
    """The view of a built-in preset."""
    return {
        "name": name,
        "namespace": None,
        "builtin": True,
        "description": f"built-in LoRA size {name}",
        "params": dict(BUILTIN[name]),
        "created_by": None,
        "created_at": None,
        "updated_by": None,
        "updated_at": None,
    }


def preset_view(row: TrainPreset) -> dict[str, Any]:
    """The view of a namespace's preset."""
    return {
        "name": row.name,
        "namespace": row.namespace,
        "builtin": False,
        "description": row.description,
        "params": dict(row.params),
        "created_by": row.created_by,
        "created_at": _iso(row.created_at),
        "updated_by": row.updated_by,
        "updated_at": _iso(row.updated_at),
    }


def _namespace(session: Session, principal: Principal, name: str | None) -> Namespace:
    """The namespace named (default: the caller's), if the caller may see it; else 404."""
    ns_name = catalog.checked_name(name or principal.default_namespace, "namespace")
    ns = catalog.get_namespace(session, ns_name)
    if ns is None:
        raise NotFound(f"namespace '{ns_name}' not found")
    check_visible(principal, ns.name, ns.private)
    return ns


def _row(session: Session, namespace: str, name: str) -> TrainPreset | None:
    return session.exec(
        select(TrainPreset).where(TrainPreset.namespace == namespace, TrainPreset.name == name)
    ).first()


def list_presets(
    session: Session, principal: Principal, namespace: str | None, page: PageRequest
) -> Page[dict[str, Any]]:
    """The built-ins, then the namespace's presets (oldest first), a page at a time."""
    ns = _namespace(session, principal, namespace)
    scope = f"presets:{ns.name}"
    group, position = _GROUP_BUILTIN, -1
    if page.cursor:
        keys = decode_cursor(page.secret, scope, page.cursor, 2)
        if not all(isinstance(k, int) for k in keys):
            raise InvalidCursor("cursor is malformed: start again without a cursor")
        group, position = (int(k) for k in keys if isinstance(k, int))
    found: list[tuple[tuple[int, int], dict[str, Any]]] = []
    if group == _GROUP_BUILTIN:
        for i, name in enumerate(_BUILTIN_ORDER):
            if i > position:
                found.append(((_GROUP_BUILTIN, i), builtin_view(name)))
        position = -1
    wanted = page.limit + 1 - len(found)
    if wanted > 0:
        rows = session.exec(
            select(TrainPreset)
            .where(TrainPreset.namespace == ns.name, col(TrainPreset.id) > position)
            .order_by(col(TrainPreset.id))
            .limit(wanted)
        ).all()
        found.extend(((_GROUP_SAVED, int(row.id or 0)), preset_view(row)) for row in rows)
    more = len(found) > page.limit
    found = found[: page.limit]
    next_cursor = encode_cursor(page.secret, scope, list(found[-1][0])) if more else None
    return Page([view for _, view in found], next_cursor)


def get_preset(
    session: Session, principal: Principal, namespace: str | None, name: str
) -> dict[str, Any]:
    """A preset by name: the namespace's own, else a built-in; 404 if neither."""
    ns = _namespace(session, principal, namespace)
    if name in BUILTIN:
        return builtin_view(name)
    row = _row(session, ns.name, name)
    if row is None:
        raise NotFound(
            f"preset '{name}' not found in namespace '{ns.name}' "
            f"(built-ins: {', '.join(_BUILTIN_ORDER)})"
        )
    return preset_view(row)


def _checked(params: dict[str, Any]) -> dict[str, Any]:
    try:
        return preset_params(params)
    except InvalidJob as exc:
        raise InvalidPreset(str(exc)) from None


def _writable(
    session: Session, principal: Principal, namespace: str | None, name: str
) -> Namespace:
    """The namespace for a change of preset ``name`` (write scope; built-ins refused)."""
    catalog.checked_name(name, "preset")
    ns = _namespace(session, principal, namespace)
    require_scope(principal, ns.name, ns.private, "write")
    if name in BUILTIN:
        raise Conflict(
            f"preset '{name}' is built in and read-only: save your own under another name"
        )
    return ns


def save_preset(
    session: Session, principal: Principal, namespace: str | None, name: str, req: PresetRequest
) -> tuple[dict[str, Any], bool]:
    """Create or replace a namespace's preset (write scope); ``(view, created)``; audited."""
    ns = _writable(session, principal, namespace, name)
    params = _checked(req.params)
    row = _row(session, ns.name, name)
    before = None if row is None else {"description": row.description, "params": row.params}
    if row is None:
        row = TrainPreset(namespace=ns.name, name=name, params=params, created_by=principal.name)
    row.params = params
    row.description = req.description
    row.updated_by = principal.name
    row.updated_at = utcnow()
    session.add(row)
    audit.record(
        session,
        principal,
        "preset.save",
        namespace=ns.name,
        target=name,
        before=before,
        after={"description": req.description, "params": params},
    )
    try:
        session.flush()
    except sa.exc.IntegrityError:  # created concurrently by another request: replace it
        session.rollback()
        return save_preset(session, principal, namespace, name, req)
    return preset_view(row), before is None


def delete_preset(
    session: Session, principal: Principal, namespace: str | None, name: str
) -> dict[str, Any]:
    """Delete a namespace's preset (write scope); answers what it held; audited."""
    ns = _writable(session, principal, namespace, name)
    row = _row(session, ns.name, name)
    if row is None:
        raise NotFound(f"preset '{name}' not found in namespace '{ns.name}'")
    view = preset_view(row)
    session.delete(row)
    audit.record(
        session,
        principal,
        "preset.delete",
        namespace=ns.name,
        target=name,
        before={"description": row.description, "params": row.params},
        after=None,
    )
    session.flush()
    return view


def apply(
    session: Session, namespace: str, name: str, given: set[str], stored: dict[str, Any]
) -> None:
    """Copy preset ``name`` (``namespace``'s own, else a built-in) into a train job's
    ``stored`` params, under the params the job gave itself (``given``).

    422 ``invalid_job`` naming the preset when neither exists.
    """
    row = None if name in BUILTIN else _row(session, namespace, name)
    if row is not None:
        values: dict[str, Any] = dict(row.params)
    elif name in BUILTIN:
        values = dict(BUILTIN[name])
    else:
        raise InvalidJob(
            f"params.preset '{name}' is neither a preset of namespace '{namespace}' nor a "
            f"built-in ({', '.join(_BUILTIN_ORDER)}): save it first "
            f"(loreg preset save {name} --namespace {namespace} --r 16 --alpha 32)"
        )
    for key, value in values.items():
        if key not in given or stored.get(key) is None:
            stored[key] = value
