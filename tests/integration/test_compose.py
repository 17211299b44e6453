"""docker-compose.yml: valid against the Compose specification, and wired as documented.

No Docker engine is needed: the file is validated with ``check-jsonschema``'s
vendored Compose schema, and its services are read with PyYAML.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """Run check-jsonschema with the built-in Compose schema on ``path``."""
    assert CHECK_JSONSCHEMA.exists(), f"check-jsonschema is not installed next to {sys.executable}"
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed docker-compose.yml (anchors and aliases resolved)."""
    import yaml

    return yaml.safe_load(COMPOSE_FILE.read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever form (mapping or list) the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command_text(service: dict[str, Any]) -> str:
    """The entrypoint and command of a service as one shell-like string."""
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if isinstance(value, list):
            parts.append(" ".join(str(v) for v in value))
        elif value:
            parts.append(str(value))
    return " ".join(parts)


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """``depends_on`` as {service: condition} (the short list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def makes_bucket(command: str, bucket: str) -> bool:
    """True when a shell command runs ``mc mb`` on a target ending in ``/<bucket>``."""
    words = shlex.split(command)
    return "mb" in words and any(w == bucket or w.endswith(f"/{bucket}") for w in words)


def test_compose_file_matches_the_compose_schema():
    proc = validate_compose(COMPOSE_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_broken_compose_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  api:\n    image: loreg\n    ports: 5\n")
    proc = validate_compose(broken)
    assert proc.returncode != 0
    assert "ports" in proc.stdout + proc.stderr


def test_stack_has_postgres_redis_minio_and_api(compose):
    services = compose["services"]
    assert {"postgres", "redis", "minio", "api"} <= set(services)
    for name in ("postgres", "redis", "minio"):
        assert services[name].get("image"), f"{name} needs an image"
    assert services["api"].get("build") or services["api"].get("image")


def test_api_is_wired_to_postgres_minio_and_redis(compose):
    services = compose["services"]
    api_env = environment(services["api"])
    db = urlsplit(api_env["LOREG_DATABASE_URL"])
    assert db.scheme.startswith("postgresql")
    assert db.hostname == "postgres"
    pg_env = environment(services["postgres"])
    assert db.username == pg_env["POSTGRES_USER"]
    assert db.password == pg_env["POSTGRES_PASSWORD"]
    assert db.path.lstrip("/") == pg_env["POSTGRES_DB"]

    assert urlsplit(api_env["LOREG_S3_ENDPOINT_URL"]).hostname == "minio"
    minio_env = environment(services["minio"])
    assert api_env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert api_env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    assert urlsplit(api_env["LOREG_REDIS_URL"]).hostname == "redis"


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """``ports`` as {container port: host port}, short ("9000:9000") or long form."""
    mapping: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            target, published = entry["target"], entry.get("published", entry["target"])
        else:
            *_, published, target = str(entry).split("/", 1)[0].split(":")
        mapping[int(target)] = int(published)
    return mapping


def test_presigned_urls_point_at_minio_as_the_host_reaches_it(compose):
    services = compose["services"]
    api_env = environment(services["api"])
    inside = urlsplit(api_env["LOREG_S3_ENDPOINT_URL"])
    public = urlsplit(api_env["LOREG_S3_PUBLIC_ENDPOINT_URL"])
    assert public.scheme == inside.scheme == "http"
    assert public.hostname in ("localhost", "127.0.0.1")
    ports = published_ports(services["minio"])
    assert inside.port in ports, f"minio does not publish its S3 port {inside.port}"
    assert public.port == ports[inside.port]
    # workers never hand out URLs: they keep the in-network endpoint only
    assert "LOREG_S3_PUBLIC_ENDPOINT_URL" not in environment(services["worker"])


def test_published_ports_reads_both_forms():
    service = {"ports": ["9000:9000", "127.0.0.1:9100:9001/tcp", {"target": 80, "published": 8}]}
    assert published_ports(service) == {9000: 9000, 9001: 9100, 80: 8}


def test_the_bucket_is_created_before_the_api_starts(compose):
    services = compose["services"]
    bucket = environment(services["api"])["LOREG_S3_BUCKET"]
    creators = [
        name
        for name, service in services.items()
        if "minio" in depends_on(service) and makes_bucket(command_text(service), bucket)
    ]
    assert creators, f"no service creates the bucket {bucket!r} on minio"
    api_deps = depends_on(services["api"])
    assert any(api_deps.get(name) == "service_completed_successfully" for name in creators)
    assert api_deps.get("postgres") == "service_healthy"


def test_api_runs_migrations_then_serves(compose):
    text = command_text(compose["services"]["api"])
    assert "db upgrade" in text and "serve" in text
    assert text.index("db upgrade") < text.index("serve")
    assert "0.0.0.0" in text


def test_worker_consumes_both_queues_with_the_api_settings(compose):
    services = compose["services"]
    worker = services["worker"]
    text = command_text(worker)
    assert "loreg worker" in text and "gpu,cpu" in text
    worker_env, api_env = environment(worker), environment(services["api"])
    for key in (
        "LOREG_DATABASE_URL",
        "LOREG_S3_ENDPOINT_URL",
        "LOREG_S3_BUCKET",
        "LOREG_REDIS_URL",
    ):
        assert worker_env[key] == api_env[key], key
    deps = depends_on(worker)
    assert deps.get("redis") == "service_healthy"
    assert deps.get("api") == "service_healthy"  # the api ran the migrations
    dockerfile = worker["build"]["dockerfile"]
    assert "torch" in (REPO_ROOT / dockerfile).read_text()
