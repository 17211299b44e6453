"""docker-compose.yml: valid against the Compose specification, and wired as documented.

No Docker engine is needed: the file is validated with ``check-jsonschema``'s
vendored Compose schema, and its services are read with PyYAML.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
HEAVY = {"torch", "peft", "transformers", "accelerate"}


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


def image_extras(dockerfile: Path) -> set[str]:
    """The extras of the project that a Dockerfile's ``pip install -e ".[a,b]"`` names."""
    found = re.findall(r"pip install[^\n]*?\.\[([a-z0-9_,\s-]+)\]", dockerfile.read_text())
    assert found, f"{dockerfile.name} does not pip-install the project with extras"
    return {extra.strip() for group in found for extra in group.split(",")}


def extra_packages(extras: set[str]) -> set[str]:
    """Distribution names the project's extras install, ``loreg[...]`` self-references expanded."""
    table = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    optional = table["optional-dependencies"]
    packages: set[str] = set()
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"pyproject.toml has no extra {extra!r}"
        for requirement in optional[extra]:
            name, _, nested = re.match(r"([A-Za-z0-9_.-]+)(\[([^\]]*)\])?", requirement).groups()
            if name == table["name"]:
                todo.extend(e.strip() for e in (nested or "").split(",") if e.strip())
            else:
                packages.add(name.lower())
    return packages


def test_api_image_installs_the_celery_client_but_no_torch(compose):
    api = compose["services"]["api"]
    assert environment(api).get("LOREG_REDIS_URL"), "the api sends jobs through Redis"
    build = api["build"]
    dockerfile = REPO_ROOT / (
        build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    )
    packages = extra_packages(image_extras(dockerfile))
    assert {"fastapi", "celery", "redis", "boto3", "psycopg", "psycopg2-binary"} <= packages
    assert not packages & HEAVY, sorted(packages & HEAVY)


def test_worker_image_installs_celery_and_torch(compose):
    dockerfile = REPO_ROOT / compose["services"]["worker"]["build"]["dockerfile"]
    packages = extra_packages(image_extras(dockerfile))
    assert {"celery", "redis", "torch", "peft", "fastapi"} <= packages


def test_image_extras_parser():
    assert extra_packages({"queue"}) >= {"celery", "redis"}
    assert not extra_packages({"server", "queue"}) & HEAVY


ENQUEUE_SCRIPT = textwrap.dedent(
    """
    import json, secrets, sys
    from pathlib import Path

    from registry.services.dispatch import make_dispatcher
    from registry.settings import Settings

    settings = Settings(
        data_dir=Path(sys.argv[1]),
        database_url="sqlite://",
        secret_key=secrets.token_hex(16),
        redis_url=sys.argv[2],
    )
    dispatcher = make_dispatcher(settings)
    dispatcher.enqueue("job-1", sys.argv[3])
    dispatcher.close()
    json.dump({"kind": type(dispatcher).__name__, "modules": sorted(sys.modules)}, sys.stdout)
    """
)


def test_the_api_enqueues_to_celery_without_importing_torch(tmp_path):
    """What the api process does on a job submission with LOREG_REDIS_URL set."""
    from tests.support.fixtures_worker import RedisServer

    queue = "compose-test"
    with RedisServer() as redis_server:
        proc = subprocess.run(
            [sys.executable, "-c", ENQUEUE_SCRIPT, str(tmp_path), redis_server.url, queue],
            cwd=str(REPO_ROOT),
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        messages = redis_server.client().lrange(queue, 0, -1)
    answer = json.loads(proc.stdout)
    assert answer["kind"] == "CeleryDispatcher"
    assert len(messages) == 1 and b"loreg.run_job" in messages[0]
    heavy = sorted(n for n in answer["modules"] if n.split(".", 1)[0] in HEAVY)
    assert heavy == []
