"""Schema migrations (alembic) run from code: ``loreg db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from registry.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at the repository's migrations for this database."""
    if not MIGRATIONS_DIR.is_dir():  # pragma: no cover - packaging error
        raise RuntimeError(f"migrations folder not found at {MIGRATIONS_DIR}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
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
