"""The ``loreg`` CLI in-process: --json output, one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from loreg import cli
from loreg.errors import NotFoundError
from tests.support.fake_registry import FakeRegistry, make_adapter_dir, make_registry


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOREG_OFFLINE", "LOREG_DEBUG", "LOREG_TOKEN", "LOREG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOREG_RETRIES", "1")


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def run(fake: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Run ``loreg ARGS`` against the fake; returns (exit code, stdout, stderr)."""

    def factory(args):
        return make_registry(fake, tmp_path / "cache", token=getattr(args, "token", None) or "t")

    def runner(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv), registry_factory=factory)
        out, err = capsys.readouterr()
        return code, out, err

    return runner


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_push_pull_show_ls_alias_with_json(run, tmp_path: Path) -> None:
    folder = make_adapter_dir(tmp_path / "adapter")
    code, out, err = run("push", str(folder), "--name", "medical", "--base-model", "tiny", "--json")
    assert code == 0, err
    pushed = json.loads(out)
    assert pushed["ref"] == "default/medical-v1" and pushed["created"] is True
    assert sorted(pushed["uploaded"]) == sorted(p.name for p in folder.iterdir())

    code, out, _ = run("--json", "push", str(folder), "--name", "medical")
    assert code == 0
    assert json.loads(out)["created"] is False

    code, out, _ = run("pull", "medical-v1")
    assert code == 0
    path = Path(out.strip())
    assert (path / "adapter_config.json").read_bytes() == (
        folder / "adapter_config.json"
    ).read_bytes()
    code, out, _ = run("pull", "medical", "--json")
    assert json.loads(out) == {
        "ref": "default/medical-v1",
        "digest": pushed["digest"],
        "path": str(path),
    }

    code, out, _ = run("show", "medical-v1", "--json")
    shown = json.loads(out)
    assert shown["digest"] == pushed["digest"]
    assert shown["versions"][0]["version"] == 1  # the versions listed, newest first
    assert shown["adapter"]["versions"] == 1  # the adapter summary's count
    code, out, _ = run("show", "medical-v1")
    assert code == 0 and "default/medical-v1" in out and "adapter_model.safetensors" in out

    code, out, _ = run("ls", "--json")
    assert [a["name"] for a in json.loads(out)] == ["medical"]
    code, out, _ = run("ls")
    assert "default/medical" in out and "v1" in out

    code, out, _ = run("alias", "medical-v1", "prod", "--json")
    assert json.loads(out)["version"] == 1
    code, out, _ = run("alias", "--rm", "medical", "prod")
    assert code == 0 and "removed alias prod" in out and "was v1" in out


def test_listings_show_limit_rows_and_say_how_to_see_more(run, fake, tmp_path: Path) -> None:
    for i, name in enumerate(("alpha", "beta", "gamma")):
        assert run("push", str(make_adapter_dir(tmp_path / name, seed=i)), "--name", name)[0] == 0
    for seed in (10, 11):
        assert (
            run("push", str(make_adapter_dir(tmp_path / f"a{seed}", seed=seed)), "--name", "alpha")[
                0
            ]
            == 0
        )
    code, out, err = run("ls", "--limit", "2", "--json")
    assert code == 0 and [a["name"] for a in json.loads(out)] == ["alpha", "beta"]
    assert "first 2 adapters" in err and "--limit 4" in err
    lists = [s.url for s in fake.seen if "/v1/adapters?" in s.url]
    assert len(lists) == 1 and "limit=3" in lists[0]  # one page: 2 shown + 1 to know
    code, out, err = run("ls", "--limit", "3")
    assert code == 0 and "gamma" in out and err == ""

    code, out, err = run("show", "alpha", "--limit", "2", "--json")
    assert [v["version"] for v in json.loads(out)["versions"]] == [3, 2]
    assert "first 2 versions" in err
    code, out, err = run("show", "alpha")
    assert "versions (newest first):" in out and "  v3 " in out and "  v1 " in out and err == ""

    code, _, err = run("ls", "--limit", "0")
    assert code == 2 and "positive number" in err


def test_whoami_token_create_and_gc(run) -> None:
    code, out, _ = run("whoami", "--json")
    assert code == 0 and json.loads(out)["default_namespace"] == "default"
    code, out, err = run("token", "create", "ci", "--grant", "acme:write", "--grant", "*:read")
    assert code == 0
    assert out.strip() == "lrg_secret"  # the secret alone on stdout
    assert "shown only once" in err
    code, out, _ = run("token", "create", "ci", "--grant", "acme:read", "--json")
    assert json.loads(out)["grants"] == [{"namespace": "acme", "scope": "read"}]
    code, out, _ = run("gc", "--json")
    assert code == 0 and "deleted_blobs" in json.loads(out)


@pytest.mark.parametrize(
    ("argv", "exit_code", "fragment"),
    [
        (["pull", "missing"], NotFoundError.exit_code, "not found"),
        (["pull", "Bad_Ref!"], 2, "invalid ref"),
        (["push", "/nonexistent-folder", "--name", "x"], 5, "not a folder"),
        (["alias", "medical", "v2"], 2, "alias"),
        (["token", "create", "ci", "--grant", "acme"], 2, "NAMESPACE:SCOPE"),
        (["push", "somewhere"], 2, "--name"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line_with_exit_codes(run, argv, exit_code, fragment) -> None:
    code, out, err = run(*argv)
    assert code == exit_code
    assert fragment in _one_error_line(err)
    assert out == ""


def test_unreachable_registry(capsys) -> None:
    code = cli.main(["--url", "http://127.0.0.1:1", "ls"])
    _, err = capsys.readouterr()
    assert code == 7
    line = _one_error_line(err)
    assert "cannot reach the registry at http://127.0.0.1:1" in line
    assert "loreg serve" in line


def test_json_flag_is_accepted_by_every_command() -> None:
    parser = cli.build_parser()
    commands = [
        ["push", "d", "--name", "n"],
        ["pull", "r"],
        ["ls"],
        ["show", "r"],
        ["alias", "r", "prod"],
        ["base", "push", "d", "--name", "n"],
        ["base", "pull", "n"],
        ["base", "ls"],
        ["token", "create", "n", "--grant", "a:read"],
        ["whoami"],
        ["serve"],
        ["db", "upgrade"],
        ["gc"],
    ]
    for argv in commands:
        args = parser.parse_args([*argv, "--json", "--url", "http://x:1", "--token", "t"])
        assert args.json is True and args.url == "http://x:1" and args.token == "t", argv
        assert callable(args.handler), argv


def test_help_and_version(capsys) -> None:
    assert cli.main(["--help"]) == 0
    assert "push" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert "loreg" in capsys.readouterr().out


def test_ctrl_c_exits_130_without_traceback(capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    assert cli.main(["ls"], registry_factory=interrupted) == 130
    _, err = capsys.readouterr()
    assert _one_error_line(err) == "error: interrupted"


def test_unexpected_errors_are_one_line_unless_debug(capsys, monkeypatch) -> None:
    def broken(args):
        raise RuntimeError("boom")

    assert cli.main(["ls"], registry_factory=broken) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "RuntimeError: boom" in line and "LOREG_DEBUG=1" in line
    monkeypatch.setenv("LOREG_DEBUG", "1")
    assert cli.main(["ls"], registry_factory=broken) == 1
    assert "Traceback" in capsys.readouterr().err


def test_serve_and_db_upgrade_call_the_server_lazily(monkeypatch, tmp_path, capsys) -> None:
    calls: list[tuple[str, dict]] = []
    serve_mod = types.ModuleType("registry.serve")
    serve_mod.serve = lambda **kw: calls.append(("serve", kw))
    migrate_mod = types.ModuleType("registry.migrate")
    migrate_mod.upgrade = lambda **kw: calls.append(("upgrade", kw))
    monkeypatch.setitem(sys.modules, "registry.serve", serve_mod)
    monkeypatch.setitem(sys.modules, "registry.migrate", migrate_mod)

    def no_registry(args):
        raise AssertionError("serve must not build a client")

    argv = ["serve", "--data-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "9000"]
    assert cli.main(argv, registry_factory=no_registry) == 0
    assert cli.main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    assert cli.main([*argv, "--json"], registry_factory=no_registry) == 0
    limits = ["--header-timeout", "2.5", "--keepalive-timeout", "3", "--limit-concurrency", "40"]
    limits += ["--workers", "2"]
    assert cli.main([*argv, *limits], registry_factory=no_registry) == 0
    where = {"data_dir": tmp_path, "host": "0.0.0.0", "port": 9000}
    unset = {
        "header_timeout": None,
        "keepalive_timeout": None,
        "limit_concurrency": None,
        "workers": None,
    }
    assert calls == [
        ("serve", {**where, "json_output": False, **unset}),
        ("upgrade", {"data_dir": tmp_path}),
        ("serve", {**where, "json_output": True, **unset}),
        (
            "serve",
            {
                **where,
                "json_output": False,
                "header_timeout": 2.5,
                "keepalive_timeout": 3,
                "limit_concurrency": 40,
                "workers": 2,
            },
        ),
    ]
    capsys.readouterr()


def test_help_does_not_import_httpx_or_peft() -> None:
    code = (
        "import sys; from loreg import cli; cli.build_parser(); "
        "bad = [m for m in ('httpx', 'peft', 'torch', 'transformers') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_help_loads_no_command_module() -> None:
    code = (
        "import sys; from loreg import cli; cli.build_parser().format_help(); "
        "print(','.join(sorted(m for m in sys.modules if m.startswith('loreg.cli'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "loreg.cli,loreg.cli.main,loreg.cli.output"


def test_every_command_sets_up_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from loreg.cli.main import COMMANDS

    for name, _, help_text in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args([name, "--help"])
        out = capsys.readouterr().out
        assert exc.value.code == 0, name
        assert out.startswith(f"usage: loreg {name} ") and help_text in out, name


@pytest.mark.parametrize("argv", [["db", "upgrade"], ["worker", "--queues", "cpu"]])
def test_a_bad_server_configuration_is_one_line_and_exit_2(
    argv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOREG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOREG_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("LOREG_S3_BUCKET", raising=False)
    monkeypatch.setenv("LOREG_REDIS_URL", "redis://127.0.0.1:9/0")
    code = cli.main(argv)
    _, err = capsys.readouterr()
    line = _one_error_line(err)
    assert code == 2, err
    assert line.startswith("error: configuration: ") and "LOREG_S3_BUCKET" in line
    assert "LOREG_S3_ENDPOINT_URL" in line
    assert not (tmp_path / "data").exists()  # nothing written before the check
