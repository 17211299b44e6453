"""registry.settings: the LOREG_* environment, and the mistakes it refuses."""

from __future__ import annotations

import pytest

from registry.settings import S3_OPTION_VARS, ConfigError, Settings


@pytest.fixture
def env(monkeypatch):
    """A clean LOREG_* environment; returns monkeypatch to set variables."""
    import os

    for name in list(os.environ):
        if name.startswith("LOREG_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_are_the_embedded_mode(env, tmp_path):
    settings = Settings.from_env(tmp_path)
    assert settings.storage_kind == "local" and settings.database_kind == "sqlite"
    assert settings.s3_endpoint_url is None and settings.s3_public_endpoint_url is None


def test_s3_settings_are_read(env, tmp_path):
    env.setenv("LOREG_S3_BUCKET", "blobs")
    env.setenv("LOREG_S3_ENDPOINT_URL", "http://minio:9000")
    env.setenv("LOREG_S3_PUBLIC_ENDPOINT_URL", "http://localhost:9000")
    env.setenv("LOREG_S3_TRUST_CHECKSUMS", "0")
    settings = Settings.from_env(tmp_path)
    assert settings.storage_kind == "s3" and settings.s3_bucket == "blobs"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_public_endpoint_url == "http://localhost:9000"
    assert settings.s3_trust_checksums is False


@pytest.mark.parametrize("name", S3_OPTION_VARS)
def test_an_s3_option_without_a_bucket_is_a_config_error(env, tmp_path, name):
    env.setenv(name, "http://minio:9000" if name.endswith("_URL") else "x")
    with pytest.raises(ConfigError) as info:
        Settings.from_env(tmp_path / "data")
    message = str(info.value)
    assert name in message and "LOREG_S3_BUCKET" in message
    assert not (tmp_path / "data").exists()  # refused before anything was written


def test_the_error_names_every_s3_option_given(env, tmp_path):
    env.setenv("LOREG_S3_ENDPOINT_URL", "http://minio:9000")
    env.setenv("LOREG_S3_REGION", "eu-west-1")
    env.setenv("LOREG_S3_BUCKET", "")  # empty counts as unset
    with pytest.raises(ConfigError, match="LOREG_S3_ENDPOINT_URL, LOREG_S3_REGION are set"):
        Settings.from_env(tmp_path)


def test_empty_s3_options_are_ignored(env, tmp_path):
    env.setenv("LOREG_S3_ENDPOINT_URL", "")
    assert Settings.from_env(tmp_path).storage_kind == "local"


def test_an_endpoint_without_a_bucket_is_refused_in_code_too(tmp_path):
    base = Settings(data_dir=tmp_path, database_url="sqlite://")
    with pytest.raises(ConfigError, match="s3_endpoint_url is set but s3_bucket is not"):
        base.with_overrides(s3_endpoint_url="http://minio:9000")
    with pytest.raises(ConfigError, match="s3_public_endpoint_url"):
        Settings(data_dir=tmp_path, database_url="sqlite://", s3_public_endpoint_url="http://x")


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [("LOREG_PRESIGN_EXPIRY", "soon", "an integer"), ("LOREG_JOB_HEARTBEAT", "fast", "a number")],
)
def test_bad_numbers_name_the_variable(env, tmp_path, name, value, kind):
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name} must be {kind}, got '{value}'"):
        Settings.from_env(tmp_path)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)  # callers catching ValueError keep working


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u@db.example:5432/reg", "postgresql+psycopg2://u@db.example:5432/reg"),
        ("postgres://u:pw@db.example/reg", "postgresql+psycopg2://u:pw@db.example/reg"),
        ("postgresql+psycopg2://u@h/reg", "postgresql+psycopg2://u@h/reg"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls_as_platforms_write_them_use_the_installed_driver(
    env, tmp_path, given, used
):
    env.setenv("LOREG_DATABASE_URL", given)
    settings = Settings.from_env(tmp_path)
    assert settings.database_url == used
    assert settings.database_kind in ("postgresql", "sqlite")


def test_psycopg3_url_without_psycopg3_names_both_ways_out(env, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    env.setenv("LOREG_DATABASE_URL", "postgresql+psycopg://u@h/reg")
    with pytest.raises(ConfigError, match=r"postgresql://.*pip install psycopg"):
        Settings.from_env(tmp_path)
