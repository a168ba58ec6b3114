"""Tests for hardflow.run.runner: run options, the password files, and (marked podman) start /
wait_healthy / stop with a tiny busybox image. The REST client is test_run_airflow_api.py; name
checks and ownership labels are test_run_names.py."""

from __future__ import annotations

import socket
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardflow.errors import EngineError
from hardflow.run import engine as eng
from hardflow.run import runner
from hardflow.run.engine import Engine
from hardflow.run.runner import RunRequest
from helpers.podman import free_port, podman_or_skip

# --------------------------------------------------------------------------------------------
# run options (pure)


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_run_options_are_hardened_and_mount_home_and_dags(tmp_path: Path) -> None:
    req = RunRequest(image="localhost/hardflow/airflow:3.3.2", dags=tmp_path, port=18081)
    argv = eng.run_argv(Engine("podman", "podman"), runner.run_options(req))
    assert "--read-only" in argv and "--cap-drop=ALL" in argv
    assert _pairs(argv, "--security-opt") == ["no-new-privileges"]
    assert _pairs(argv, "--user") == ["50000:0"]
    assert _pairs(argv, "--tmpfs") == ["/tmp:rw,nosuid,nodev,mode=1777"]
    assert _pairs(argv, "--publish") == ["127.0.0.1:18081:8080/tcp"]
    assert _pairs(argv, "--mount") == [
        "type=volume,source=hardflow-home,target=/opt/airflow",
        f"type=bind,source={tmp_path.resolve()},target=/opt/airflow/dags,readonly=true",
    ]
    # the image's own HEALTHCHECK is used: podman 4.3 would turn a one-element --health-cmd
    # into CMD-SHELL, which needs a /bin/sh the image does not have
    assert _pairs(argv, "--health-cmd") == []
    assert _pairs(argv, "--pids-limit") and _pairs(argv, "--memory")
    assert argv[-2:] == ["localhost/hardflow/airflow:3.3.2", "standalone"]


def test_run_options_volume_follows_container_name() -> None:
    opts = runner.run_options(RunRequest(image="i", name="af2"))
    assert dict(opts.volumes) == {"af2-home": "/opt/airflow"}
    assert opts.binds == ()


def test_run_options_rejects_missing_dags_and_bad_port(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="DAG folder"):
        runner.run_options(RunRequest(image="i", dags=tmp_path / "nope"))
    with pytest.raises(EngineError, match="out of range"):
        runner.run_options(RunRequest(image="i", port=70000))


def test_port_free_detects_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not runner.port_free(port)
    assert runner.port_free(port)


def test_parse_password() -> None:
    assert runner.parse_password(b'{"admin": "pw1"}\n') == "pw1"
    with pytest.raises(EngineError, match="no password for user 'admin'"):
        runner.parse_password(b'{"other": "x"}')
    with pytest.raises(EngineError, match="not JSON"):
        runner.parse_password(b"admin:pw")


# --------------------------------------------------------------------------------------------
# real podman: the whole host side with a busybox stand-in for Airflow


IMAGE = "localhost/hf-runner-busybox:test"
# A stand-in entrypoint: writes the password file like the real one, then becomes healthy.
FAKE_AIRFLOW = (
    'trap "exit 0" TERM; echo starting; '
    'echo \'{"admin": "s3cret"}\' > /opt/airflow/simple_auth_manager_passwords.json.generated; '
    "/bin/busybox sleep 2; echo > /tmp/ok; echo ready; "
    "while true; do /bin/busybox sleep 1; done"
)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    if not Path("/bin/busybox").is_file():
        pytest.skip("busybox-static is not installed")
    engine = podman_or_skip()
    rootfs = tmp_path_factory.mktemp("rbb") / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        for d, mode, uid in (("bin", 0o755, 0), ("tmp", 0o1777, 0), ("opt", 0o755, 0),
                             ("opt/airflow", 0o775, 50000)):  # fmt: skip
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.uid = tarfile.DIRTYPE, mode, uid
            tar.addfile(info)
        tar.add("/bin/busybox", arcname="bin/busybox")
    subprocess.run([engine.path, "import", "-q", str(rootfs), IMAGE], check=True,
                   capture_output=True)  # fmt: skip
    return engine


@pytest.fixture
def name(podman: Engine) -> Iterator[str]:
    n = f"hf-run-{uuid.uuid4().hex[:8]}"
    yield n
    subprocess.run([podman.path, "rm", "--force", "--time", "0", n], capture_output=True)
    subprocess.run([podman.path, "volume", "rm", "--force", f"{n}-home"], capture_output=True)


def _request(name: str, script: str, **kw: Any) -> RunRequest:
    return RunRequest(
        image=IMAGE,
        name=name,
        port=free_port(),
        command=("/bin/busybox", "sh", "-c", script),
        health_command=("/bin/busybox", "test", "-f", "/tmp/ok"),
        health_timeout=60,
        memory="256m",
        stop_timeout=5,
        **kw,
    )


@pytest.mark.podman
def test_start_wait_password_stop(podman: Engine, name: str, tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    progress: list[str] = []
    req = _request(name, FAKE_AIRFLOW, dags=tmp_path / "dags")
    result = runner.start(podman, req, progress.append)
    assert result.password == "s3cret"
    assert result.url == f"http://127.0.0.1:{req.port}"
    assert result.volume == f"{name}-home"
    assert result.seconds_to_healthy >= 1.5  # the stand-in sleeps 2 s before it is healthy
    assert eng.container_state(podman, name).running
    assert any("waiting" in p for p in progress)
    assert "ready" in runner.show_logs(podman, name)

    # a second run with the same name is refused with a hint
    with pytest.raises(EngineError, match="already exists") as info:
        runner.start(podman, req)
    assert "hardflow stop" in info.value.diagnostics()

    assert runner.stop_container(podman, name, timeout=5, remove_volume=True) == 0
    assert not eng.container_exists(podman, name)
    assert not eng.volume_exists(podman, f"{name}-home")


@pytest.mark.podman
def test_start_refuses_a_taken_port(podman: Engine, name: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        req = RunRequest(image=IMAGE, name=name, port=sock.getsockname()[1])
        with pytest.raises(EngineError, match="already in use"):
            runner.start(podman, req)
    assert not eng.container_exists(podman, name)


@pytest.mark.podman
def test_start_reports_early_exit_with_logs(podman: Engine, name: str) -> None:
    req = _request(name, "echo 'fatal: database is locked' >&2; exit 4")
    with pytest.raises(EngineError) as info:
        runner.start(podman, req)
    msg = info.value.message
    assert "exit code 4" in msg
    assert "database is locked" in msg


@pytest.mark.podman
def test_wait_healthy_times_out(podman: Engine, name: str) -> None:
    req = _request(name, 'trap "exit 0" TERM; while true; do /bin/busybox sleep 1; done')
    eng.run_container(podman, runner.run_options(req))
    with pytest.raises(EngineError, match="did not become healthy within 3s"):
        runner.wait_healthy(podman, name, timeout=3, interval=0.5)


@pytest.mark.podman
def test_missing_image_and_missing_container(podman: Engine, name: str) -> None:
    with pytest.raises(EngineError, match="not in podman's local storage"):
        runner.start(podman, RunRequest(image="localhost/hf-nothing:0", name=name))
    with pytest.raises(EngineError, match="no container named"):
        runner.stop_container(podman, name)
    with pytest.raises(EngineError, match="no container named"):
        runner.show_logs(podman, name)


@pytest.mark.podman
def test_attach_streams_until_exit_and_cleans_up(
    podman: Engine, name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    req = _request(name, "echo line-one; /bin/busybox sleep 1; echo line-two; exit 5")
    eng.run_container(podman, runner.run_options(req))
    assert runner.attach(podman, name, stop_timeout=5) == 5
    out = capfd.readouterr().out
    assert "line-one" in out and "line-two" in out
    assert not eng.container_exists(podman, name)
