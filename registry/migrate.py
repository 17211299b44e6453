"""Schema migrations (alembic) run from code: ``loreg db upgrade``."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from registry.settings import Settings


def migrations_dir() -> Path:
    """The alembic scripts: the checkout's ``migrations/`` (source or editable install),
    else the copy a wheel installs under ``<prefix>/share/loreg/migrations``."""
    candidates = [
        Path(__file__).resolve().parent.parent / "migrations",
        Path(sys.prefix) / "share" / "loreg" / "migrations",
    ]
    for folder in candidates:
        if (folder / "env.py").is_file():
            return folder
    raise RuntimeError(
        "alembic migrations not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "): reinstall loreg"
    )


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at loreg's migrations for this database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str | None = None, *, data_dir: str | Path | None = None) -> str:
    """Bring the database schema to the newest revision; returns the database URL used."""
    url = database_url or Settings.from_env(data_dir).database_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
    return url


def check(database_url: str) -> None:
    """Raise if the models differ from the migrations (``alembic check``)."""
    command.check(alembic_config(database_url))
