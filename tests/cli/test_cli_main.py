"""The ``hardflow`` program as a whole: its entry points, its registry of commands, the one
error handler in ``main`` and the shape of the ``cli`` package (thin modules, one console)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import hardflow.cli
from hardflow.cli import cli, main

CLI_DIR = Path(hardflow.cli.__file__).parent
MAX_LINES = 400
COMMANDS = {
    "lock", "build", "run", "stop", "logs", "password", "demo", "sbom", "keygen", "sign",
    "verify", "push", "audit", "deploy", "bench", "check-dags", "diff",
}  # fmt: skip
GROUP_MODULES = ("audit", "bench", "build", "checkdags", "deploy", "diff", "run", "sbom", "sign")


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``main()`` as the console script runs it: exit status, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["hardflow", *args])
    with pytest.raises(SystemExit) as exited:
        main()
        sys.exit(0)  # main() returns normally on success
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def test_every_command_is_registered_when_the_package_is_imported() -> None:
    assert set(cli.commands) == COMMANDS
    help_text = CliRunner().invoke(cli, ["--help"]).output
    for name in COMMANDS:
        assert f"\n  {name} " in help_text


def test_group_modules_stay_modules_of_the_package() -> None:
    # `hardflow.cli.build` must be the module, not the `build` command, or dotted look-ups
    # (monkeypatch, mock.patch) of names in it would land on the click command
    for name in GROUP_MODULES:
        assert isinstance(getattr(hardflow.cli, name), types.ModuleType), name
        assert importlib.import_module(f"hardflow.cli.{name}") is getattr(hardflow.cli, name)


def test_python_dash_m_runs_the_same_program() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "hardflow.cli", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: ")
    assert "check-dags" in r.stdout and "deploy" in r.stdout


def test_a_hardflow_error_is_one_message_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntag = "1"\nflavour = "vanilla"\n')
    code, out, err = run_main(monkeypatch, capsys, "lock", "--spec", str(bad))
    assert code == 1
    assert out == ""
    assert err.startswith("error: ") and "flavour" in err and str(bad) in err
    assert "Traceback" not in err


def test_usage_errors_keep_clicks_exit_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "build", "--compression", "xz")
    assert code == 2 and "xz" in err
    code, _, err = run_main(monkeypatch, capsys, "no-such-command")
    assert code == 2 and "no-such-command" in err


def test_version_and_short_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "--version")
    assert code == 0 and out.startswith(f"hardflow, version {hardflow.__version__}")
    code, out, _ = run_main(monkeypatch, capsys, "deploy", "compose", "-h")
    assert code == 0 and "--airflow-image REF" in out


def _modules() -> list[Path]:
    return sorted(CLI_DIR.glob("*.py"))


def _constructs_console(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name == "Console":
                return True
    return False


def test_only_console_py_makes_a_console() -> None:
    makers = {p.name for p in _modules() if _constructs_console(p)}
    assert makers == {"console.py"}


def test_modules_are_thin() -> None:
    long = [
        f"{p.name}: {n}" for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert long == []


@pytest.mark.parametrize("literal", ["localhost/", "8080", "/opt/airflow"])
def test_the_image_contract_is_not_restated(literal: str) -> None:
    # these come from hardflow.contract (local_reference, API_PORT, DAGS_DIR)
    found = [p.name for p in _modules() if literal in p.read_text(encoding="utf-8")]
    assert found == []


def test_commands_are_click_commands_with_help() -> None:
    for name, command in cli.commands.items():
        assert isinstance(command, click.Command)
        assert command.help, f"{name} has no help text"


def test_short_help_survives_a_command_invoked_on_its_own(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """click keeps a command's help option from the first context it sees: a command invoked
    alone (as tests do) must not lose ``-h`` for the later ``hardflow`` invocations."""
    from click.testing import CliRunner

    from hardflow.cli.diff import diff

    assert CliRunner().invoke(diff, ["--help"]).exit_code == 0
    code, out, _ = run_main(monkeypatch, capsys, "diff", "-h")
    assert code == 0 and "--exit-code" in out
