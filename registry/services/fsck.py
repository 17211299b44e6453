"""Scrub: does the object store still hold every blob the database lists?

The ``blobs`` table says which bytes the registry stored; the store can lose them
behind its back (a bucket restored from an older backup, an object deleted by
hand, an in-memory S3 server restarted). :func:`scrub` compares the two: every
blob's presence and size (one listing of the store), and on request its sha256
(streamed, in a bounded thread pool). A blob found broken gets a
:class:`registry.models.BlobFault` row; each version or base model holding it
then resolves 409 ``files_missing`` (see :func:`check_files_present`) instead of
handing out dead URLs. The mark clears when the bytes come back: a push sends
them again (:func:`clear_faults` when a blob is recorded), or a later scrub
finds the object intact.

:func:`unusable_blobs` is the same check for a handful of blobs (stat in
parallel), used by the upload phase so that a push re-sends what the store lost.

Entry points: ``loreg fsck`` (:func:`run_from_env`), ``POST /v1/admin/fsck`` and
a periodic thread (:class:`PeriodicFsck`, ``LOREG_FSCK_INTERVAL``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Engine
from sqlmodel import Session, col, select

from registry.errors import FilesMissing
from registry.models import (
    Adapter,
    BaseModelFile,
    BaseModelRecord,
    Blob,
    BlobFault,
    Namespace,
    Version,
    VersionFile,
    utcnow,
)
from registry.services import leases
from registry.services.context import Context, open_existing
from registry.services.periodic import PeriodicThread
from registry.storage.base import ObjectNotFound, ObjectStore, blob_key

log = logging.getLogger("loreg.fsck")

#: Threads that stat or hash blobs at once (S3 calls through one boto3 client are thread-safe).
MAX_THREADS = 16
HASH_CHUNK = 8 * 2**20
#: A fault found by hashing is cleared only by hashing again (or by the bytes re-sent).
HASH_PROBLEM = "sha256"
#: The periodic scrub's lease (one scrubbing process per deployment) and how many
#: intervals a claim lasts: the holder renews it every interval, others wait this long.
LEASE_NAME = "fsck"
LEASE_INTERVALS = 1.5

Fault = tuple[str, int | None]  # (problem, size found)


# --------------------------------------------------------------------------- checks


def _stat_one(store: ObjectStore, sha: str, size: int) -> Fault | None:
    info = store.stat(blob_key(sha))
    if info is None:
        return ("missing", None)
    if info.size != size:
        return ("size", info.size)
    return None


def stat_blobs(store: ObjectStore, sizes: dict[str, int], threads: int = MAX_THREADS) -> dict:
    """``{sha: fault}`` for those of ``sizes`` ({sha: expected size}) the store lacks or
    holds with another size; one stat per blob, up to ``threads`` at once."""
    items = list(sizes.items())
    if len(items) <= 1:
        results = [_stat_one(store, sha, size) for sha, size in items]
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
            results = list(pool.map(lambda item: _stat_one(store, *item), items))
    return {sha: fault for (sha, _), fault in zip(items, results, strict=True) if fault}


def faulted(session: Session, shas: Iterable[str]) -> set[str]:
    """Those of ``shas`` marked as broken."""
    wanted = list(shas)
    if not wanted:
        return set()
    query = select(BlobFault.sha256).where(col(BlobFault.sha256).in_(wanted))
    return set(session.exec(query).all())


def unusable_blobs(session: Session, ctx: Context, sizes: dict[str, int]) -> dict[str, Fault]:
    """Blobs of ``sizes`` that may not be offered as present: marked broken, or not in the
    store with that size right now. Newly found ones are marked (see :func:`mark`)."""
    if not sizes:
        return {}
    marked = faulted(session, sizes)
    found = stat_blobs(ctx.store, {s: n for s, n in sizes.items() if s not in marked})
    if found:
        mark(ctx.engine, found)
    return {**dict.fromkeys(marked, ("marked", None)), **found}


def _hash_one(store: ObjectStore, sha: str) -> str | None:
    """The sha256 of the stored object, streamed; None when it vanished meanwhile."""
    h = hashlib.sha256()
    try:
        stream = store.open(blob_key(sha), chunk_size=HASH_CHUNK)
    except ObjectNotFound:
        return None
    try:
        for chunk in stream:
            h.update(chunk)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return h.hexdigest()


# --------------------------------------------------------------------------- marks


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    stmt: sa.Insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(BlobFault).values(rows)
        stmt = pg.on_conflict_do_update(
            index_elements=["sha256"],
            set_={"problem": pg.excluded.problem, "found_size": pg.excluded.found_size},
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(BlobFault).values(rows)
        stmt = lite.on_conflict_do_update(
            index_elements=["sha256"],
            set_={"problem": lite.excluded.problem, "found_size": lite.excluded.found_size},
        )
    session.execute(stmt)


def mark(engine: Engine, faults: dict[str, Fault]) -> int:
    """Record ``{sha: (problem, found_size)}`` as broken blobs (insert or update).

    Blobs whose row is gone meanwhile (garbage-collected) are skipped. Returns how
    many rows were written.
    """
    if not faults:
        return 0
    with Session(engine) as session:
        query = select(Blob.sha256).where(col(Blob.sha256).in_(list(faults)))
        existing = set(session.exec(query).all())
        now = utcnow()
        rows = [
            {"sha256": sha, "problem": problem, "found_size": size, "found_at": now}
            for sha, (problem, size) in sorted(faults.items())
            if sha in existing
        ]
        if rows:
            try:
                _upsert(session, rows)
                session.commit()
            except sa.exc.IntegrityError:  # a blob row removed concurrently: next scrub
                session.rollback()
                return 0
        return len(rows)


def clear_faults(session: Session, shas: Iterable[str]) -> int:
    """Unmark blobs whose bytes are intact again (not committed here); returns the count."""
    wanted = list(shas)
    if not wanted:
        return 0
    result = session.execute(sa.delete(BlobFault).where(col(BlobFault.sha256).in_(wanted)))
    return cast(CursorResult[Any], result).rowcount or 0


def check_files_present(label: str, files: list[tuple[str, str | None]]) -> None:
    """Raise 409 ``files_missing`` when any ``(path, fault problem or None)`` is marked."""
    missing = sorted(path for path, problem in files if problem is not None)
    if missing:
        raise FilesMissing(
            f"'{label}': {len(missing)} file(s) are missing from the object store: "
            f"{', '.join(missing)}; pushing the same files again restores them",
            details={"missing": missing},
        )


# --------------------------------------------------------------------------- scrub


def _marked_versions(session: Session) -> list[dict[str, Any]]:
    """Every version and base model holding a marked blob, with the paths affected."""
    found: dict[tuple[str, str], set[str]] = {}
    rows = session.exec(
        # sqlmodel types select() for at most 4 columns; this one reads 5
        select(  # type: ignore[call-overload]
            Namespace.name, Adapter.name, Adapter.kind, Version.number, VersionFile.path
        )
        .join(BlobFault, col(BlobFault.sha256) == VersionFile.blob_sha256)
        .join(Version, col(Version.id) == VersionFile.version_id)
        .join(Adapter, col(Adapter.id) == Version.adapter_id)
        .join(Namespace, col(Namespace.id) == Adapter.namespace_id)
    ).all()
    for ns, name, kind, number, path in rows:
        found.setdefault((kind, f"{ns}/{name}-v{number}"), set()).add(path)
    base_rows = session.exec(
        select(BaseModelRecord.name, BaseModelFile.path)
        .join(BlobFault, col(BlobFault.sha256) == BaseModelFile.blob_sha256)
        .join(BaseModelRecord, col(BaseModelRecord.id) == BaseModelFile.base_model_id)
    ).all()
    for name, path in base_rows:
        found.setdefault(("base_model", name), set()).add(path)
    return [
        {"kind": kind, "ref": ref, "missing": sorted(paths)}
        for (kind, ref), paths in sorted(found.items(), key=lambda item: item[0][1])
    ]


def scrub(ctx: Context, *, verify_hashes: bool = False, threads: int = MAX_THREADS) -> dict:
    """Check every blob the database lists against the store; mark and unmark; report.

    Presence and size come from one listing of the store (confirmed with a stat for
    each blob found wrong, so a concurrent upload is never misreported); with
    ``verify_hashes`` each intact-looking blob is also streamed and hashed. Returns
    ``ok``, counts, ``problems`` (every blob marked after this pass) and
    ``versions`` (``kind``, ``ref``, ``missing`` paths) that now resolve 409.
    """
    started = time.monotonic()
    with Session(ctx.engine) as session:
        sizes = dict(session.exec(select(Blob.sha256, Blob.size)).all())
        before = dict(session.exec(select(BlobFault.sha256, BlobFault.problem)).all())
    # Rows first, then the listing: a blob's object is stored before its row is written.
    listed = {key: size for key, size, _ in ctx.store.list("blobs/sha256/")}
    suspects = {sha: size for sha, size in sizes.items() if listed.get(blob_key(sha)) != size}
    found = stat_blobs(ctx.store, suspects, threads) if suspects else {}
    hashed_bytes = 0
    if verify_hashes:
        intact = [sha for sha in sizes if sha not in found]
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(intact)))) as pool:
            digests = list(pool.map(lambda s: _hash_one(ctx.store, s), intact))
        for sha, actual in zip(intact, digests, strict=True):
            if actual is None:
                found[sha] = ("missing", None)
                continue
            hashed_bytes += sizes[sha]
            if actual != sha:
                found[sha] = (HASH_PROBLEM, sizes[sha])
    healed = [
        sha
        for sha, problem in before.items()
        if sha in sizes and sha not in found and (verify_hashes or problem != HASH_PROBLEM)
    ]
    marked = mark(ctx.engine, found)
    with Session(ctx.engine) as session:
        cleared = clear_faults(session, healed)
        session.commit()
        problems = [
            {
                "sha256": fault.sha256,
                "problem": fault.problem,
                "expected_size": sizes.get(fault.sha256),
                "found_size": fault.found_size,
            }
            for fault in session.exec(select(BlobFault).order_by(col(BlobFault.sha256))).all()
        ]
        versions = _marked_versions(session)
    report = {
        "ok": not problems,
        "verify_hashes": verify_hashes,
        "blobs_checked": len(sizes),
        "bytes_checked": sum(sizes.values()),
        "bytes_hashed": hashed_bytes,
        "marked": marked,
        "cleared": cleared,
        "problems": problems,
        "versions": versions,
        "duration_s": round(time.monotonic() - started, 3),
    }
    if problems:
        log.warning(
            "fsck: %d blob(s) missing or damaged, %d version(s) affected",
            len(problems),
            len(versions),
        )
    return report


def format_report(report: dict[str, Any]) -> str:
    """The human-readable form of a :func:`scrub` report (``loreg fsck`` without --json)."""
    checks = "presence, size and sha256" if report["verify_hashes"] else "presence and size"
    lines = [
        f"checked {report['blobs_checked']} blob(s), {report['bytes_checked']} bytes "
        f"({checks}) in {report['duration_s']} s"
    ]
    for p in report["problems"]:
        what = {
            "missing": "missing",
            "size": f"{p['found_size']} bytes, expected {p['expected_size']}",
            HASH_PROBLEM: "content does not match its sha256",
        }
        lines.append(f"  blob {p['sha256']}: {what.get(p['problem'], p['problem'])}")
    for v in report["versions"]:
        lines.append(f"  {v['kind']} {v['ref']}: missing {', '.join(v['missing'])}")
    if report["cleared"]:
        lines.append(f"  {report['cleared']} blob(s) found intact again and unmarked")
    lines.append(
        "ok: every blob is intact"
        if report["ok"]
        else f"{len(report['problems'])} blob(s) damaged in {len(report['versions'])} "
        "version(s): they answer 409 files_missing until the files are pushed again"
    )
    return "\n".join(lines) + "\n"


def run_from_env(data_dir: str | Path | None = None, *, verify_hashes: bool = False) -> dict:
    """``loreg fsck``: scrub the registry the ``LOREG_*`` settings (or ``data_dir``) name.

    Raises :class:`registry.settings.ConfigError` when there is no migrated registry
    database there.
    """
    ctx = open_existing(data_dir, table=BlobFault.__tablename__)
    try:
        return scrub(ctx, verify_hashes=verify_hashes)
    finally:
        ctx.close()


# --------------------------------------------------------------------------- schedule


class PeriodicFsck(PeriodicThread):
    """A daemon thread running :func:`scrub` every ``interval_s`` seconds, in whichever
    process holds the ``fsck`` lease (:mod:`registry.services.leases`).

    Every ``loreg worker`` runs one; the lease makes one of them scrub per interval
    (the holder renews it at each pass, for :data:`LEASE_INTERVALS` intervals), and
    another takes over once the holder has stopped for that long, or at once when it
    stopped cleanly (:meth:`stop` gives the lease up). The first pass runs one
    interval after :meth:`start` (a restart does not re-scan the whole store). Errors
    (store or database down) are logged and the next pass tries again.
    """

    def __init__(self, ctx: Context, interval_s: float, *, verify_hashes: bool = False):
        super().__init__(interval_s, name="fsck", first_pass_now=False)
        self.ctx = ctx
        self.verify_hashes = verify_hashes
        self.last_report: dict[str, Any] | None = None
        self.holder = leases.new_holder()
        #: passes left to another process, which held the lease
        self.skipped = 0

    def run_once(self) -> dict[str, Any] | None:
        """One pass if this process holds the lease; its report, or None when it failed
        or another process holds the lease."""
        try:
            lifetime = self.interval_s * LEASE_INTERVALS
            if not leases.claim(self.ctx.engine, LEASE_NAME, self.holder, lifetime):
                self.skipped += 1
                return None
            self.last_report = scrub(self.ctx, verify_hashes=self.verify_hashes)
            return self.last_report
        except Exception as exc:  # noqa: BLE001 - keep scrubbing after outages
            log.warning("fsck pass failed: %s", exc)
            return None
        finally:
            self.passes += 1

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, then give the lease up so another process scrubs next."""
        super().stop(timeout)
        try:
            leases.release(self.ctx.engine, LEASE_NAME, self.holder)
        except Exception as exc:  # noqa: BLE001 - the lease then lapses on its own
            log.warning("fsck lease not released (it expires on its own): %s", exc)


def start_periodic(ctx: Context) -> PeriodicFsck | None:
    """The scheduled scrub of ``LOREG_FSCK_INTERVAL`` seconds, started; None when it is 0."""
    interval = ctx.settings.fsck_interval_s
    return PeriodicFsck(ctx, interval).start() if interval > 0 else None
