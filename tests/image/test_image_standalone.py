"""The standalone fork server (image/standalone.py), on the host with stand-in components."""

from __future__ import annotations

import os
import signal
import sys
import time
import types
from collections.abc import Iterator
from types import ModuleType
from typing import Any, ClassVar

import pytest


def component(argv: list[str]) -> int:
    """A stand-in component: writes its argv and pid to fd 1, then sleeps if asked to.

    (fd 1 rather than print: pytest has replaced ``sys.stdout`` in this process; in the image
    ``sys.stdout`` is fd 1 itself.)
    """
    os.write(1, f"argv={' '.join(argv)} pid={os.getpid()}\n".encode())
    if argv[:1] == ["sleep"]:
        time.sleep(60)
    if argv[:1] == ["fail"]:
        raise SystemExit(3)
    return 0


@pytest.fixture()
def server(sa: ModuleType) -> Iterator[Any]:
    sock = sa.start_server(component)
    yield sock
    sock.close()


def test_forked_component_output_comes_back_through_the_pipe(sa: ModuleType, server: Any) -> None:
    proc = sa.ForkedProcess(server, ["scheduler", "--x"])
    lines = proc.stdout.read().decode().splitlines()
    assert lines[0].startswith("argv=scheduler --x pid=")
    pid = int(lines[0].split("pid=")[1].split()[0])
    assert pid == proc.pid and pid != os.getpid()


def test_several_components_run_at_once_and_terminate_stops_them(
    sa: ModuleType, server: Any
) -> None:
    sleepers = [sa.ForkedProcess(server, ["sleep", str(i)]) for i in range(3)]
    first = [p.stdout.readline().decode() for p in sleepers]
    assert [line.split()[0] for line in first] == ["argv=sleep", "argv=sleep", "argv=sleep"]
    assert len({p.pid for p in sleepers}) == 3
    start = time.monotonic()
    for p in sleepers:
        p.terminate()
    for p in sleepers:
        assert p.stdout.read() == b""  # the pipe closes: the component is gone
    assert time.monotonic() - start < 10
    sleepers[0].terminate()  # an ended component: no error


def test_a_failing_component_does_not_take_the_server_down(sa: ModuleType, server: Any) -> None:
    sa.ForkedProcess(server, ["fail"]).stdout.read()
    again = sa.ForkedProcess(server, ["after"]).stdout.read().decode()
    assert again.startswith("argv=after ")


def test_server_ignores_sigterm_and_ends_when_standalone_closes_the_socket(
    sa: ModuleType,
) -> None:
    sock = sa.start_server(component)
    proc = sa.ForkedProcess(sock, ["x"])
    proc.stdout.read()
    # the server is the component's parent; find it through /proc
    with open(f"/proc/{proc.pid}/stat") as handle:
        server_pid = int(handle.read().rsplit(")", 1)[1].split()[1])
    os.kill(server_pid, signal.SIGTERM)
    time.sleep(0.2)
    assert os.waitpid(server_pid, os.WNOHANG) == (0, 0)  # still there
    sock.close()
    deadline = time.monotonic() + 10
    while os.waitpid(server_pid, os.WNOHANG) == (0, 0):
        assert time.monotonic() < deadline, "the fork server did not end"
        time.sleep(0.05)


class FakeSubCommand:
    """The shape of Airflow's standalone SubCommand (a thread running ``airflow CMD``)."""

    ran_original: ClassVar[list[str]] = []

    def __init__(self, parent: Any, name: str, command: list[str], env: dict[str, str]) -> None:
        self.parent, self.name, self.command, self.env = parent, name, command, env

    def run(self) -> None:
        FakeSubCommand.ran_original.append(self.name)


@pytest.fixture()
def fake_airflow(monkeypatch: pytest.MonkeyPatch) -> type[FakeSubCommand]:
    module = types.ModuleType("airflow.cli.commands.standalone_command")
    patched = type("SubCommand", (FakeSubCommand,), {})
    module.SubCommand = patched  # type: ignore[attr-defined]
    commands = types.ModuleType("airflow.cli.commands")
    commands.standalone_command = module  # type: ignore[attr-defined]
    for name, mod in {
        "airflow": types.ModuleType("airflow"),
        "airflow.cli": types.ModuleType("airflow.cli"),
        "airflow.cli.commands": commands,
        "airflow.cli.commands.standalone_command": module,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    FakeSubCommand.ran_original = []
    return patched


def test_patch_routes_components_with_the_servers_settings_to_the_server(
    sa: ModuleType, server: Any, fake_airflow: type[FakeSubCommand]
) -> None:
    env = {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "HOME": "/x"}
    assert sa.patch_standalone(server, env)
    parent = types.SimpleNamespace(output_queue=[])
    same = fake_airflow(parent, "scheduler", ["scheduler"], {**env, "HOME": "/elsewhere"})
    same.run()
    assert FakeSubCommand.ran_original == []
    assert parent.output_queue and parent.output_queue[0][0] == "scheduler"
    assert parent.output_queue[0][1].startswith(b"argv=scheduler pid=")
    # standalone forced another executor for its components: run them the usual way
    forced = {**env, "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor"}
    fake_airflow(parent, "triggerer", ["triggerer"], forced).run()
    assert FakeSubCommand.ran_original == ["triggerer"]


def test_patch_leaves_an_unexpected_standalone_alone(
    sa: ModuleType, server: Any, monkeypatch: pytest.MonkeyPatch, fake_airflow: Any
) -> None:
    module = sys.modules["airflow.cli.commands.standalone_command"]
    monkeypatch.delattr(module, "SubCommand")
    assert sa.patch_standalone(server, {}) is False


def test_config_env_keeps_only_settings(sa: ModuleType) -> None:
    env = {"AIRFLOW__X": "1", "_AIRFLOW_DB_MIGRATE": "t", "PYTHONPATH": "p", "HOME": "h"}
    assert sa.config_env(env) == {"AIRFLOW__X": "1", "_AIRFLOW_DB_MIGRATE": "t", "PYTHONPATH": "p"}
