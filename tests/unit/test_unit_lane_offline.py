"""The fast lane (tests/unit) asks for no service: a static check of the unit tests' source.

It fails if a unit test requests a fixture that starts Postgres, Redis, moto_server,
a worker or a registry server, imports one of the tests/support helpers that start
them, or imports a client library of those services. It reads source only (cheap,
no false alarms); it cannot see a connection that product code opens at run time.
Loopback fakes (tests.support.http_peer, tests.support.tcpproxy) are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

UNIT = Path(__file__).parent
SUPPORT = UNIT.parent / "support"
FIXTURE_PLUGINS = ("fixtures_registry", "fixtures_s3", "fixtures_worker")

SERVICE_FIXTURES = frozenset(
    {
        "registry_server",
        "worker_stack",
        "s3_endpoint",
        "s3_boto_session",
        "s3_admin_client",
        "s3_bucket",
        "s3_store",
    }
)
PLAIN_FIXTURES = frozenset({"registry_settings_overrides"})  # a dict of settings
SERVICE_HELPERS = frozenset(
    {
        "ServerThread",
        "RunningRegistry",
        "temp_pg_database",
        "MotoServer",
        "RedisServer",
        "WorkerProcess",
        "JobStack",
        "job_stack",
        "PgCluster",
        "make_settings",
        "fuzz_backend",
    }
)
SERVICE_LIBRARIES = frozenset({"psycopg", "psycopg2", "redis", "boto3", "botocore", "moto"})


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "fixture"


def fixtures_defined(source: str) -> set[str]:
    """Names of the functions decorated with ``pytest.fixture`` in ``source``."""
    return {
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and any(map(_is_fixture, node.decorator_list))
    }


def service_uses(source: str) -> list[str]:
    """What in ``source`` (a unit test module) needs a service; empty when nothing does."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"import {a.name}" for a in node.names if a.name.split(".")[0] in SERVICE_LIBRARIES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in SERVICE_LIBRARIES:
                found.append(f"from {node.module} import ...")
            elif node.module.startswith("tests.support"):
                found += [
                    f"from {node.module} import {a.name}"
                    for a in node.names
                    if a.name in SERVICE_HELPERS
                ]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("test") or any(map(_is_fixture, node.decorator_list)):
                params = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                found += [f"{node.name}({p.arg})" for p in params if p.arg in SERVICE_FIXTURES]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("getfixturevalue", "usefixtures")
        ):
            found += [
                f"{node.func.attr}({a.value!r})"
                for a in node.args
                if isinstance(a, ast.Constant) and a.value in SERVICE_FIXTURES
            ]
    return found


def test_every_shared_fixture_is_classified():
    defined: set[str] = set()
    for plugin in FIXTURE_PLUGINS:
        defined |= fixtures_defined((SUPPORT / f"{plugin}.py").read_text())
    assert defined == SERVICE_FIXTURES | PLAIN_FIXTURES, (
        "classify the shared fixtures as SERVICE_FIXTURES or PLAIN_FIXTURES: "
        f"new {sorted(defined - SERVICE_FIXTURES - PLAIN_FIXTURES)}, "
        f"gone {sorted(SERVICE_FIXTURES | PLAIN_FIXTURES - defined)}"
    )


def test_the_service_helpers_still_exist():
    names: set[str] = set()
    for path in SUPPORT.glob("*.py"):
        tree = ast.parse(path.read_text())
        names |= {
            n.name
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
        }
    assert names >= SERVICE_HELPERS, sorted(SERVICE_HELPERS - names)


def test_no_unit_test_needs_a_service():
    offenders = {
        path.name: uses
        for path in sorted(UNIT.rglob("*.py"))
        if (uses := service_uses(path.read_text()))
    }
    assert offenders == {}, (
        "tests/unit is the fast lane: move these tests to tests/integration or tests/e2e"
    )


def test_the_check_sees_each_way_in():
    source = """
import redis
from botocore.config import Config
from tests.support.servers import ServerThread, temp_pg_database
from tests.support.fixtures_worker import write_adapter

def test_a(registry_server, tmp_path):
    pass

@pytest.fixture
def store(s3_store):
    return s3_store

def helper(s3_bucket):
    pass

def test_b(request):
    request.getfixturevalue("worker_stack")
"""
    assert service_uses(source) == [
        "import redis",
        "from botocore.config import ...",
        "from tests.support.servers import ServerThread",
        "from tests.support.servers import temp_pg_database",
        "test_a(registry_server)",
        "store(s3_store)",
        "getfixturevalue('worker_stack')",
    ]
