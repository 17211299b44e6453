"""The service context: settings, database engine and object store, built once per app."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.db import make_engine
from registry.services.async_lookup import AsyncLookup, async_lookup_for
from registry.services.caching import HotCaches
from registry.settings import ConfigError, Settings
from registry.storage.base import ObjectStore

if TYPE_CHECKING:
    from registry.services.dispatch import Dispatcher


def make_store(settings: Settings, *, create_bucket: bool = False) -> ObjectStore:
    """The object store the settings ask for: S3 when a bucket is set, else a local folder.

    Building it makes no network call unless ``create_bucket`` is set (the API does it
    once at start-up when ``settings.s3_create_bucket``); workers never need to, so a
    worker starts, and reports its jobs' errors, while S3 is unreachable.
    """
    if settings.s3_bucket:
        from registry.storage.s3 import S3Store

        store = S3Store(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
            trust_checksums=settings.s3_trust_checksums,
        )
        if create_bucket and settings.s3_create_bucket:
            store.ensure_bucket()
        return store
    from registry.storage.local import LocalStore

    return LocalStore(settings.blob_dir)


@dataclass
class Context:
    """Everything a service function needs besides the request's session and caller."""

    settings: Settings
    engine: Engine
    store: ObjectStore
    # the resolve hot path's engine: autocommit, no pre-ping (registry.services.resolve);
    # the main engine when None (SQLite, or a context built by hand)
    hot_engine: Engine | None = field(default=None, repr=False)
    hot: HotCaches = field(default_factory=HotCaches, repr=False)
    # the hot path's lookup on the event loop (Postgres on psycopg 3), else None
    async_lookup: AsyncLookup | None = field(default=None, repr=False)
    # embedded mode's job executor, ``run_job(settings, job_id)`` in a child process: set by
    # the composition root (``registry.serve``); unused when a broker is configured
    run_job: Callable[[Settings, str], Any] | None = field(default=None, repr=False)
    _dispatcher: Dispatcher | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dispatcher(self) -> Dispatcher:
        """The job dispatcher (Celery, or local running :attr:`run_job`), created on first use."""
        with self._lock:
            if self._dispatcher is None:
                from registry.services.dispatch import make_dispatcher

                self._dispatcher = make_dispatcher(self.settings, self.run_job)
            return self._dispatcher

    @property
    def read_engine(self) -> Engine:
        """The engine of single-statement reads on the hot path."""
        return self.hot_engine or self.engine

    def close(self) -> None:
        """Dispose of the engines and stop the dispatcher."""
        if self._dispatcher is not None:
            self._dispatcher.close()
        if self.hot_engine is not None:
            self.hot_engine.dispose()
        if self.async_lookup is not None:
            self.async_lookup.close()
        self.engine.dispose()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        create_bucket: bool = False,
        run_job: Callable[[Settings, str], Any] | None = None,
    ) -> Context:
        """Build the engines and store from settings (see :func:`make_store`)."""

        def engine(hot_path: bool) -> Engine:
            return make_engine(
                settings.database_url,
                connect_timeout=settings.db_connect_timeout_s,
                statement_timeout=settings.db_statement_timeout_s,
                hot_path=hot_path,
            )

        sqlite = settings.database_url.startswith("sqlite")
        main = engine(False)
        return cls(
            run_job=run_job,
            settings=settings,
            engine=main,
            hot_engine=None if sqlite else engine(True),
            async_lookup=async_lookup_for(settings, main.dialect),
            store=make_store(settings, create_bucket=create_bucket),
        )


def open_existing(data_dir: str | Path | None, *, table: str) -> Context:
    """The context of the migrated registry the ``LOREG_*`` settings (or ``data_dir``)
    name, for the server-side commands (``loreg fsck``, ``loreg db admin-token``).

    Raises :class:`registry.settings.ConfigError` when there is no registry database
    there, or it lacks ``table`` (not migrated yet).
    """
    settings = Settings.from_env(data_dir)
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"no registry database at {url.removeprefix('sqlite:///')}: pass the server's "
            "--data-dir or set LOREG_DATA_DIR / LOREG_DATABASE_URL"
        )
    ctx = Context.from_settings(settings)
    if not sa.inspect(ctx.engine).has_table(table):
        ctx.close()
        raise ConfigError(
            f"the database {settings.database_kind} is not migrated: run `loreg db upgrade` first"
        )
    return ctx
