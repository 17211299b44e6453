"""registry.settings: the LOREG_* environment, and the mistakes it refuses."""

from __future__ import annotations

import pytest

from loreg import constants
from loreg.errors import LoregError
from registry.settings import S3_OPTION_VARS, ConfigError, Settings, env_names


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
        ("postgresql://u@db.example:5432/reg", "postgresql+psycopg://u@db.example:5432/reg"),
        ("postgres://u:pw@db.example/reg", "postgresql+psycopg://u:pw@db.example/reg"),
        ("postgresql+psycopg://u@h/reg", "postgresql+psycopg://u@h/reg"),
        ("postgresql+psycopg2://u@h/reg", "postgresql+psycopg2://u@h/reg"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls_as_platforms_write_them_use_the_installed_driver(env, tmp_path, given, used):
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


def _without(monkeypatch, *modules: str) -> None:
    """Make ``importlib.util.find_spec`` report ``modules`` as not installed."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a)
    )


def test_psycopg2_url_without_psycopg2_is_refused(env, tmp_path, monkeypatch):
    _without(monkeypatch, "psycopg2")
    env.setenv("LOREG_DATABASE_URL", "postgresql+psycopg2://u@h/reg")
    with pytest.raises(ConfigError, match=r"LOREG_DATABASE_URL .*psycopg2.*not installed"):
        Settings.from_env(tmp_path)


def test_plain_url_uses_psycopg2_where_only_it_is_installed(env, tmp_path, monkeypatch):
    _without(monkeypatch, "psycopg")
    env.setenv("LOREG_DATABASE_URL", "postgresql://u@h/reg")
    assert Settings.from_env(tmp_path).database_url == "postgresql+psycopg2://u@h/reg"


def test_plain_url_without_any_driver_is_refused(env, tmp_path, monkeypatch):
    _without(monkeypatch, "psycopg", "psycopg2")
    env.setenv("LOREG_DATABASE_URL", "postgres://u@h/reg")
    with pytest.raises(ConfigError, match=r"no Postgres driver.*pip install psycopg"):
        Settings.from_env(tmp_path)


def test_database_url_given_in_code_is_normalised_too(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="postgres://u@h/reg")
    assert settings.database_url == "postgresql+psycopg://u@h/reg"
    assert settings.with_overrides(retry_after_s=1).database_url == settings.database_url


# ---------------------------------------------------------------- booleans: the client's rule

ACCEPTED = ["1", "true", "YES", " on ", "0", "false", "No", "OFF"]


@pytest.mark.parametrize("word", ACCEPTED)
def test_server_and_client_read_a_boolean_the_same_way(env, tmp_path, word):
    env.setenv("LOREG_S3_BUCKET", "b")
    env.setenv("LOREG_S3_TRUST_CHECKSUMS", word)
    env.setenv("LOREG_OFFLINE", word)
    expected = word.strip().lower() in ("1", "true", "yes", "on")
    assert Settings.from_env(tmp_path).s3_trust_checksums is expected
    assert constants.offline_mode() is expected
    assert constants.parse_flag(word) is expected


@pytest.mark.parametrize("word", ["maybe", "2", "enabled", "y", "-1"])
def test_an_unknown_boolean_is_refused_on_both_sides_in_the_same_words(env, tmp_path, word):
    env.setenv("LOREG_S3_BUCKET", "b")
    env.setenv("LOREG_S3_CREATE_BUCKET", word)
    env.setenv("LOREG_OFFLINE", word)
    rule = f"must be 1/true or 0/false, got {word!r}"
    with pytest.raises(ConfigError) as server:
        Settings.from_env(tmp_path)
    assert str(server.value) == f"LOREG_S3_CREATE_BUCKET {rule}"
    with pytest.raises(LoregError) as client:
        constants.offline_mode()
    assert str(client.value) == f"LOREG_OFFLINE {rule}"


def test_an_unknown_boolean_in_code_names_the_field(tmp_path):
    named = r"s3_create_bucket \(LOREG_S3_CREATE_BUCKET\) must be 1/true"
    with pytest.raises(ConfigError, match=named):
        Settings(data_dir=tmp_path, database_url="sqlite://", s3_create_bucket="perhaps")


def test_an_empty_boolean_counts_as_unset(env, tmp_path):
    env.setenv("LOREG_S3_CREATE_BUCKET", "")
    assert Settings.from_env(tmp_path).s3_create_bucket is True


# ---------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOREG_LIMIT_CONCURRENCY", "1", "LOREG_LIMIT_CONCURRENCY must be at least 2, got '1'"),
        ("LOREG_DB_CONNECT_TIMEOUT", "0", "LOREG_DB_CONNECT_TIMEOUT must be greater than 0"),
        ("LOREG_HEADER_TIMEOUT_S", "-3", "LOREG_HEADER_TIMEOUT_S must be greater than 0"),
        ("LOREG_JOB_HEARTBEAT", "nan", "LOREG_JOB_HEARTBEAT must be a finite number"),
        ("LOREG_PRESIGN_EXPIRY", "864000", "LOREG_PRESIGN_EXPIRY must be at most 604800"),
        ("LOREG_MULTIPART_PART_SIZE", "1024", "LOREG_MULTIPART_PART_SIZE must be at least"),
        ("LOREG_JOB_MAX_ATTEMPTS", "0", "LOREG_JOB_MAX_ATTEMPTS must be at least 1"),
        ("LOREG_FSCK_INTERVAL", "-1", "LOREG_FSCK_INTERVAL must be at least 0"),
        ("LOREG_RESOLVE_CONNECTIONS", "0", "LOREG_RESOLVE_CONNECTIONS must be at least 1"),
    ],
)
def test_an_out_of_range_value_is_refused_naming_the_variable(env, tmp_path, name, value, message):
    env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        Settings.from_env(tmp_path)
    assert str(info.value).startswith(message), str(info.value)


def test_out_of_range_in_code_names_field_and_variable(tmp_path):
    base = Settings(data_dir=tmp_path, database_url="sqlite://")
    named = r"^limit_concurrency \(LOREG_LIMIT_CONCURRENCY\) must be at least 2"
    with pytest.raises(ConfigError, match=named):
        base.with_overrides(limit_concurrency=1)
    with pytest.raises(ConfigError, match=r"db_statement_timeout_s .* must be greater than 0"):
        base.with_overrides(db_statement_timeout_s=0)
    assert base.with_overrides(fsck_interval_s=0).fsck_interval_s == 0


def test_fields_hold_their_types_and_are_frozen(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="sqlite://", retry_after_s="7")
    assert settings.retry_after_s == 7 and isinstance(settings.job_heartbeat_s, float)
    with pytest.raises(ValueError):
        settings.retry_after_s = 1
    with pytest.raises(ConfigError, match="nonsense_s is not a setting"):
        Settings(data_dir=tmp_path, database_url="sqlite://", nonsense_s=1)
    assert "secret_key" not in repr(settings)


# ---------------------------------------------------------------- environment names


def test_every_field_is_read_from_loreg_and_its_name():
    for field in Settings.model_fields:
        assert env_names(field)[0] == f"LOREG_{field.upper()}", field


OLDER_NAMES = [
    ("presign_expiry_s", "LOREG_PRESIGN_EXPIRY", "60", 60),
    ("upload_expiry_s", "LOREG_UPLOAD_EXPIRY", "120", 120),
    ("gc_grace_s", "LOREG_GC_GRACE", "0", 0),
    ("max_json_body_bytes", "LOREG_MAX_JSON_BODY", "1000", 1000),
    ("max_file_bytes", "LOREG_MAX_FILE_SIZE", "2000", 2000),
    ("max_safetensors_header_bytes", "LOREG_MAX_HEADER_SIZE", "3000", 3000),
    ("multipart_threshold_bytes", "LOREG_MULTIPART_THRESHOLD", "6000000", 6000000),
    ("multipart_part_size_bytes", "LOREG_MULTIPART_PART_SIZE", "6000000", 6000000),
    ("job_heartbeat_s", "LOREG_JOB_HEARTBEAT", "1.5", 1.5),
    ("job_stale_after_s", "LOREG_JOB_STALE_AFTER", "5", 5.0),
    ("job_requeue_after_s", "LOREG_JOB_REQUEUE_AFTER", "3", 3.0),
    ("visibility_timeout_s", "LOREG_VISIBILITY_TIMEOUT", "10", 10),
    ("fsck_interval_s", "LOREG_FSCK_INTERVAL", "0.5", 0.5),
    ("db_connect_timeout_s", "LOREG_DB_CONNECT_TIMEOUT", "2", 2.0),
    ("db_statement_timeout_s", "LOREG_DB_STATEMENT_TIMEOUT", "9", 9.0),
    ("retry_after_s", "LOREG_RETRY_AFTER", "3", 3),
    ("header_timeout_s", "LOREG_HEADER_TIMEOUT", "4", 4.0),
    ("keepalive_timeout_s", "LOREG_KEEPALIVE_TIMEOUT", "2", 2),
]


@pytest.mark.parametrize(("field", "older", "raw", "value"), OLDER_NAMES)
def test_older_variable_names_still_work(env, tmp_path, field, older, raw, value):
    assert older in env_names(field)
    env.setenv(older, raw)
    assert getattr(Settings.from_env(tmp_path), field) == value


@pytest.mark.parametrize(("field", "older", "raw", "value"), OLDER_NAMES[:3])
def test_the_field_named_variable_wins_over_the_older_one(env, tmp_path, field, older, raw, value):
    env.setenv(older, raw)
    env.setenv(f"LOREG_{field.upper()}", "77")
    assert getattr(Settings.from_env(tmp_path), field) == 77


def test_every_documented_name_is_honoured(env, tmp_path):
    """The names README.md, docker-compose.yml and the tests set."""
    env.setenv("LOREG_S3_BUCKET", "b")
    env.setenv("LOREG_S3_ENDPOINT_URL", "http://minio:9000")
    env.setenv("LOREG_S3_PUBLIC_ENDPOINT_URL", "http://localhost:9000")
    env.setenv("LOREG_S3_PREFIX", "p/")
    env.setenv("LOREG_PUBLIC_URL", "http://localhost:8080")
    env.setenv("LOREG_SECRET_KEY", "s3cret")
    env.setenv("LOREG_REDIS_URL", "redis://redis:6379/0")
    env.setenv("LOREG_JOB_MAX_ATTEMPTS", "2")
    env.setenv("LOREG_LIMIT_CONCURRENCY", "30")
    env.setenv("LOREG_DATA_DIR", str(tmp_path / "d"))
    settings = Settings.from_env()
    assert settings.data_dir == (tmp_path / "d").resolve()
    assert settings.database_url == f"sqlite:///{(tmp_path / 'd').resolve() / 'loreg.db'}"
    assert (settings.s3_bucket, settings.s3_prefix, settings.secret_key) == ("b", "p/", "s3cret")
    assert settings.public_url == "http://localhost:8080"
    assert settings.redis_url == "redis://redis:6379/0"
    assert (settings.job_max_attempts, settings.limit_concurrency) == (2, 30)
    assert not (tmp_path / "d" / "secret_key").exists()  # LOREG_SECRET_KEY given


def test_s3_region_falls_back_to_the_aws_variable(env, tmp_path, monkeypatch):
    env.setenv("LOREG_S3_BUCKET", "b")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert Settings.from_env(tmp_path).s3_region == "eu-west-1"
    env.setenv("LOREG_S3_REGION", "us-east-1")
    assert Settings.from_env(tmp_path).s3_region == "us-east-1"


def test_settings_in_code_do_not_read_the_environment(env, tmp_path):
    env.setenv("LOREG_S3_BUCKET", "from-env")
    env.setenv("LOREG_RETRY_AFTER", "9")
    settings = Settings(data_dir=tmp_path, database_url="sqlite://")
    assert settings.s3_bucket is None and settings.retry_after_s == 5


def test_the_data_dir_argument_wins_over_loreg_data_dir(env, tmp_path):
    env.setenv("LOREG_DATA_DIR", str(tmp_path / "from-env"))
    assert Settings.from_env(tmp_path / "given").data_dir == (tmp_path / "given").resolve()
    assert Settings.from_env().data_dir == (tmp_path / "from-env").resolve()


def test_resolve_connections_is_read_from_the_environment(env, tmp_path):
    assert Settings.from_env(tmp_path).resolve_connections == 2
    env.setenv("LOREG_RESOLVE_CONNECTIONS", "6")
    assert Settings.from_env(tmp_path).resolve_connections == 6
