"""Tests for hardflow.run.engine: pure argv building and parsing, engine detection with fake
CLIs on PATH, and (marked podman) a real hardened container."""

from __future__ import annotations

import json
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.errors import EngineError
from hardflow.run import engine as eng
from hardflow.run.engine import (
    BindMount,
    Engine,
    HealthCheck,
    PortMapping,
    RunOptions,
    parse_loaded_ref,
    parse_state,
    run_argv,
)

PODMAN = Engine("podman", "/usr/bin/podman")
DOCKER = Engine("docker", "/usr/bin/docker")


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


# --------------------------------------------------------------------------------------------
# run_argv


def test_run_argv_has_every_hardening_flag_by_default() -> None:
    argv = run_argv(PODMAN, RunOptions(image="localhost/x:1", name="c1", user="50000:0"))
    assert argv[:2] == ["/usr/bin/podman", "run"]
    assert "--read-only" in argv
    assert "--cap-drop=ALL" in argv
    assert _pairs(argv, "--security-opt") == ["no-new-privileges"]
    assert _pairs(argv, "--user") == ["50000:0"]
    assert _pairs(argv, "--tmpfs") == ["/tmp:rw,nosuid,nodev,mode=1777"]
    assert _pairs(argv, "--pull") == ["never"]
    assert "--detach" in argv
    assert argv[-1] == "localhost/x:1"


def test_run_argv_can_turn_hardening_off_explicitly() -> None:
    opts = RunOptions(
        image="i", name="c", read_only=False, cap_drop_all=False, no_new_privileges=False, tmpfs=()
    )
    argv = run_argv(PODMAN, opts)
    for flag in ("--read-only", "--cap-drop=ALL", "--security-opt", "--tmpfs"):
        assert flag not in argv


def test_run_argv_mounts_ports_limits_and_command_order() -> None:
    opts = RunOptions(
        image="localhost/hf:1",
        name="hf",
        command=("standalone", "--x"),
        volumes={"hf-home": "/opt/airflow"},
        binds=(BindMount(Path("/srv/dags"), "/opt/airflow/dags"),),
        ports=(PortMapping(18080, 8080),),
        labels={"io.hardflow.managed": "true"},
        stop_timeout=40,
        pids_limit=2048,
        memory="4g",
    )
    argv = run_argv(PODMAN, opts)
    assert _pairs(argv, "--mount") == [
        "type=volume,source=hf-home,target=/opt/airflow",
        "type=bind,source=/srv/dags,target=/opt/airflow/dags,readonly=true",
    ]
    assert _pairs(argv, "--publish") == ["127.0.0.1:18080:8080/tcp"]
    assert _pairs(argv, "--stop-timeout") == ["40"]
    assert _pairs(argv, "--pids-limit") == ["2048"]
    assert _pairs(argv, "--memory") == ["4g"]
    assert _pairs(argv, "--label") == ["io.hardflow.managed=true"]
    # image, then the command, at the very end
    assert argv[-3:] == ["localhost/hf:1", "standalone", "--x"]


def test_run_argv_writable_bind_has_no_readonly() -> None:
    opts = RunOptions(image="i", name="c", binds=(BindMount(Path("/a"), "/b", read_only=False),))
    assert _pairs(run_argv(PODMAN, opts), "--mount") == ["type=bind,source=/a,target=/b"]


def test_run_argv_env_values_never_on_the_command_line() -> None:
    opts = RunOptions(image="i", name="c", env={"SECRET_B": "hunter2", "A": "1"})
    argv = run_argv(PODMAN, opts)
    assert _pairs(argv, "--env") == ["A", "SECRET_B"]
    assert not any("hunter2" in a for a in argv)


def test_run_argv_health_exec_form_for_podman_shell_form_for_docker() -> None:
    hc = HealthCheck(("/usr/local/bin/hardflow-health", "--quick"), interval_s=5, retries=2)
    p = run_argv(PODMAN, RunOptions(image="i", name="c", healthcheck=hc))
    assert json.loads(_pairs(p, "--health-cmd")[0]) == ["/usr/local/bin/hardflow-health", "--quick"]
    assert _pairs(p, "--health-interval") == ["5s"]
    assert _pairs(p, "--health-retries") == ["2"]
    d = run_argv(DOCKER, RunOptions(image="i", name="c", healthcheck=hc))
    assert _pairs(d, "--health-cmd") == ["/usr/local/bin/hardflow-health --quick"]


@pytest.mark.parametrize(
    "opts",
    [
        RunOptions(image="i", name="bad name"),
        RunOptions(image="i", name="-c"),
        RunOptions(image="i", name="c", env={"A-B": "x"}),
        RunOptions(image="i", name="c", binds=(BindMount(Path("rel/dir"), "/d"),)),
        RunOptions(image="i", name="c", binds=(BindMount(Path("/a,b"), "/d"),)),
        RunOptions(image="i", name="c", volumes={"../x": "/d"}),
    ],
)
def test_run_argv_rejects_bad_input(opts: RunOptions) -> None:
    with pytest.raises(EngineError):
        run_argv(PODMAN, opts)


# --------------------------------------------------------------------------------------------
# parsing


def test_parse_loaded_ref_formats() -> None:
    assert parse_loaded_ref("Loaded image: localhost/hf:1\n") == "localhost/hf:1"
    assert parse_loaded_ref("Loaded image(s): localhost/a:1,localhost/b:2") == "localhost/a:1"
    assert parse_loaded_ref("noise\nLoaded image ID: sha256:abc\n") == "sha256:abc"
    with pytest.raises(EngineError):
        parse_loaded_ref("Storing signatures\n")


def test_parse_state_podman_running_starting() -> None:
    doc = [
        {
            "State": {
                "Status": "running",
                "Running": True,
                "ExitCode": 0,
                "OOMKilled": False,
                "Health": {"Status": "starting", "FailingStreak": 0},
            }
        }
    ]
    st = parse_state("c", json.dumps(doc))
    assert (st.running, st.status, st.exit_code, st.health) == (True, "running", None, "starting")


def test_parse_state_exited_without_health() -> None:
    doc = [{"State": {"Status": "exited", "Running": False, "ExitCode": 137, "OOMKilled": True,
                      "Health": {"Status": "", "FailingStreak": 0}}}]  # fmt: skip
    st = parse_state("c", json.dumps(doc))
    assert (st.running, st.exit_code, st.health, st.oom_killed) == (False, 137, None, True)


def test_parse_state_created_has_no_exit_code() -> None:
    st = parse_state("c", json.dumps([{"State": {"Status": "created", "Running": False}}]))
    assert st.exit_code is None


def test_parse_state_bad_json() -> None:
    with pytest.raises(EngineError, match="could not parse"):
        parse_state("c", "not json")
    with pytest.raises(EngineError, match="no container"):
        parse_state("c", "[]")


# --------------------------------------------------------------------------------------------
# detection and error reporting, with fake engines on PATH


def _fake(bindir: Path, name: str, script: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", str(d))
    monkeypatch.delenv(eng.ENGINE_ENV, raising=False)
    return d


def test_detect_prefers_podman(bindir: Path) -> None:
    _fake(bindir, "podman", "exit 0\n")
    _fake(bindir, "docker", "exit 0\n")
    assert eng.detect_engine() == Engine("podman", str(bindir / "podman"))


def test_detect_skips_docker_without_daemon_and_explains(bindir: Path) -> None:
    _fake(bindir, "docker", "echo 'Cannot connect to the Docker daemon at unix:///x' >&2\nexit 1\n")
    with pytest.raises(EngineError) as info:
        eng.detect_engine()
    text = info.value.diagnostics()
    assert "podman: not found on PATH" in text
    assert "Cannot connect to the Docker daemon" in text
    assert "HARDFLOW_ENGINE" in text


def test_detect_falls_back_to_working_docker(bindir: Path) -> None:
    _fake(bindir, "podman", "echo broken >&2\nexit 125\n")
    _fake(bindir, "docker", "exit 0\n")
    assert eng.detect_engine().name == "docker"


def test_detect_env_choice_is_honoured_and_not_overridden(
    bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake(bindir, "podman", "exit 0\n")
    _fake(bindir, "docker", "exit 1\n")
    monkeypatch.setenv(eng.ENGINE_ENV, "docker")
    with pytest.raises(EngineError, match="docker"):
        eng.detect_engine()
    monkeypatch.setenv(eng.ENGINE_ENV, "lxc")
    with pytest.raises(EngineError, match="unknown container engine"):
        eng.detect_engine()
    assert eng.detect_engine("podman").name == "podman"


def test_failure_names_command_and_trims_stderr(bindir: Path) -> None:
    noise = 'level=error msg="unable to get systemd connection to add healthchecks"\n'
    _fake(bindir, "podman", f"printf '{noise}' >&2\necho 'Error: boom happened' >&2\nexit 125\n")
    engine = Engine("podman", str(bindir / "podman"))
    with pytest.raises(EngineError) as info:
        eng.stop(engine, "c1", timeout=3)
    msg = info.value.message
    assert "podman stop --time 3 -- c1" in msg
    assert "exit status 125" in msg
    assert "boom happened" in msg
    assert "systemd connection" not in msg


def test_run_container_removes_half_created_container(bindir: Path, tmp_path: Path) -> None:
    # a fake podman that "creates" the container and then fails to start it, like a taken port
    calls, state = tmp_path / "calls", tmp_path / "state"
    state.write_text("none\n")
    _fake(  # shell built-ins only: PATH holds nothing but the fakes
        bindir,
        "podman",
        f'echo "$@" >> {calls}\n'
        f"read -r st < {state}\n"
        'case "$1 $2" in\n'
        '  "container inspect") [ "$st" = created ] && exit 0 || exit 125 ;;\n'
        f'  "run --name") echo created > {state}; echo "Error: cannot listen on the TCP port: '
        'address already in use" >&2; exit 126 ;;\n'
        f'  "rm --force") echo none > {state}; exit 0 ;;\n'
        "esac\n",
    )
    engine = Engine("podman", str(bindir / "podman"))
    with pytest.raises(EngineError, match="address already in use"):
        eng.run_container(engine, RunOptions(image="i", name="c1"))
    assert "rm --force -- c1" in calls.read_text()
    assert state.read_text() == "none\n"


def test_run_container_passes_env_through_environment(bindir: Path, tmp_path: Path) -> None:
    out = tmp_path / "env"
    _fake(
        bindir,
        "podman",
        'case "$1" in\n  container) exit 125 ;;\n'
        f'  run) printf %s "$HF_SECRET" > {out}; echo abc123 ;;\nesac\n',
    )
    engine = Engine("podman", str(bindir / "podman"))
    cid = eng.run_container(engine, RunOptions(image="i", name="c1", env={"HF_SECRET": "s3"}))
    assert cid == "abc123"
    assert out.read_text() == "s3"


def test_probe_health_maps_podman_exit_codes(bindir: Path) -> None:
    engine = Engine("podman", str(bindir / "podman"))
    _fake(bindir, "podman", "exit 0\n")
    assert eng.probe_health(engine, "c") == "healthy"
    _fake(bindir, "podman", "echo unhealthy\nexit 1\n")
    assert eng.probe_health(engine, "c") == "unhealthy"
    _fake(
        bindir, "podman", "echo 'Error: container abc has no defined healthcheck' >&2\nexit 125\n"
    )
    assert eng.probe_health(engine, "c") == "none"
    _fake(bindir, "podman", "echo 'Error: container abc is not running' >&2\nexit 125\n")
    with pytest.raises(EngineError, match="not running"):
        eng.probe_health(engine, "c")


def test_load_archive_missing_file() -> None:
    with pytest.raises(EngineError, match="does not exist"):
        eng.load_archive(PODMAN, Path("/nonexistent/image.tar"))


# --------------------------------------------------------------------------------------------
# real podman


BUSYBOX = Path("/bin/busybox")
BUSYBOX_REF = "localhost/hf-busybox:test"


# the shared session fixture ``podman`` (tests/conftest.py) gives the engine or skips


@pytest.fixture(scope="module")
def busybox_image(podman: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-binary image made here (no registry): /bin/busybox, saved and loaded back."""
    if not BUSYBOX.is_file():
        pytest.skip("busybox-static is not installed")
    work = tmp_path_factory.mktemp("busybox")
    rootfs = work / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
    subprocess.run([podman.path, "import", "-q", str(rootfs), BUSYBOX_REF], check=True,
                   capture_output=True)  # fmt: skip
    # round trip through a docker-archive, as `hardflow run` loads built images
    archive = work / "image.tar"
    subprocess.run([podman.path, "save", "-q", "-o", str(archive), BUSYBOX_REF], check=True,
                   capture_output=True)  # fmt: skip
    assert eng.load_archive(podman, archive) == BUSYBOX_REF
    assert eng.image_exists(podman, BUSYBOX_REF)
    assert not eng.image_exists(podman, "localhost/hf-no-such-image:0")
    return BUSYBOX_REF


@pytest.fixture
def container_name(podman: Engine) -> Iterator[str]:
    name = f"hf-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run([podman.path, "rm", "--force", "--time", "0", name], capture_output=True)


@pytest.mark.podman
def test_hardened_container_really_is_hardened(
    podman: Engine, busybox_image: str, container_name: str, tmp_path: Path
) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "d.py").write_text("x = 1\n")
    volume = f"{container_name}-home"
    script = 'trap "exit 7" TERM; echo ready; while true; do /bin/busybox sleep 1; done'
    opts = RunOptions(
        image=busybox_image,
        name=container_name,
        command=("/bin/busybox", "sh", "-c", script),
        user="50000:0",
        volumes={volume: "/data"},
        binds=(BindMount(tmp_path / "dags", "/dags"),),
        env={"HF_TEST_VALUE": "v1"},
        healthcheck=HealthCheck(("/bin/busybox", "test", "-f", "/tmp/ok"), interval_s=1),
        stop_timeout=5,
        pids_limit=64,
        memory="128m",
    )
    try:
        cid = eng.run_container(podman, opts)
        assert len(cid) == 64
        st = eng.container_state(podman, container_name)
        assert st.running and st.exit_code is None

        def sh(cmd: str) -> subprocess.CompletedProcess[str]:
            return eng.exec_in(podman, container_name, ["/bin/busybox", "sh", "-c", cmd],
                               check=False)  # fmt: skip

        status = sh("/bin/busybox cat /proc/1/status").stdout
        cap_eff = next(ln for ln in status.splitlines() if ln.startswith("CapEff:"))
        assert int(cap_eff.split()[1], 16) == 0
        no_new = next(ln for ln in status.splitlines() if ln.startswith("NoNewPrivs:"))
        assert no_new.split()[1] == "1"
        assert sh("/bin/busybox id -u").stdout.strip() == "50000"
        # read-only root, read-only DAG bind, writable tmpfs and volume
        assert sh("echo x > /etc/hf").returncode != 0
        assert sh("echo x > /dags/new.py").returncode != 0
        assert sh("/bin/busybox cat /dags/d.py").stdout == "x = 1\n"
        assert sh("echo x > /tmp/ok").returncode == 0
        assert sh("echo pw > /data/secret").returncode == 0
        assert sh('echo "$HF_TEST_VALUE"').stdout.strip() == "v1"
        assert eng.read_file(podman, container_name, "/data/secret") == b"pw\n"
        # health checks run by hand (no systemd timers here)
        assert eng.probe_health(podman, container_name) == "healthy"
        assert eng.container_state(podman, container_name).health == "healthy"
        assert "ready" in eng.logs(podman, container_name)

        eng.stop(podman, container_name, timeout=5)
        st = eng.container_state(podman, container_name)
        assert not st.running
        assert st.exit_code == 7  # our SIGTERM trap ran: the signal reached PID 1
        eng.remove(podman, container_name)
        assert not eng.container_exists(podman, container_name)
    finally:
        subprocess.run([podman.path, "rm", "--force", "--time", "0", container_name],
                       capture_output=True)  # fmt: skip
        if eng.volume_exists(podman, volume):
            eng.volume_remove(podman, volume, force=True)


@pytest.mark.podman
def test_exit_code_and_missing_container(
    podman: Engine, busybox_image: str, container_name: str
) -> None:
    eng.run_container(
        podman,
        RunOptions(image=busybox_image, name=container_name,
                   command=("/bin/busybox", "sh", "-c", "exit 3")),
    )  # fmt: skip
    assert eng.wait(podman, container_name, timeout=60) == 3
    st = eng.container_state(podman, container_name)
    assert (st.running, st.status, st.exit_code) == (False, "exited", 3)
    with pytest.raises(EngineError, match="no container named"):
        eng.container_state(podman, container_name + "-nope")


@pytest.mark.podman
def test_volume_lifecycle(podman: Engine) -> None:
    name = f"hf-test-vol-{uuid.uuid4().hex[:8]}"
    assert not eng.volume_exists(podman, name)
    eng.volume_create(podman, name, {"io.hardflow.test": "1"})
    try:
        assert eng.volume_exists(podman, name)
    finally:
        eng.volume_remove(podman, name)
    assert not eng.volume_exists(podman, name)
