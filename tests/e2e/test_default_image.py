"""End to end: build the embedded default image from the real archives, load it into podman and
run Airflow in it under the strictest settings (DESIGN.md §3).

These tests need the network (Debian archive, Python index) and a working podman. The build
is done once per session into a temporary directory with the user's download cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.build.pipeline import BuildOptions, BuildResult, build
from hardflow.build.rootfs import layer_order
from hardflow.contract import local_reference
from hardflow.lock.fetch import Cache
from hardflow.lock.model import read_lock
from hardflow.oci.layer import iter_tar_entries
from hardflow.run import engine as eng
from hardflow.run.airflow_api import trigger_dag
from hardflow.run.engine import Engine, RunOptions
from hardflow.run.runner import RunRequest, RunResult, start, stop_container
from hardflow.spec import resolve_spec_arg
from helpers.podman import HARDENED, free_port

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

HERE = Path(__file__).parent
FORBIDDEN = (
    "usr/bin/apt", "usr/bin/apt-get", "usr/bin/dpkg", "usr/bin/pip", "usr/local/bin/pip",
    "usr/local/bin/pip3", "usr/bin/gcc", "usr/bin/cc", "usr/bin/sudo", "usr/bin/su",
    "usr/bin/dash", "usr/bin/perl", "usr/sbin/sshd", "usr/bin/curl",
    "usr/bin/wget", "usr/bin/awk",
)  # fmt: skip


@pytest.fixture(scope="session")
def built(default_build: BuildResult, podman: Engine) -> BuildResult:
    """The session's build of the default image, loaded into podman."""
    assert default_build.image.archive_path is not None
    eng.load_archive(podman, default_build.image.archive_path)
    return default_build


@pytest.fixture(scope="session")
def image_ref(built: BuildResult) -> str:
    return local_reference(built.image.reference)


def run_in_image(
    image: str, argv: list[str], *, user: str = "50000:0", extra: tuple[str, ...] = (),
    timeout: int = 900,
) -> subprocess.CompletedProcess[str]:
    cmd = [
        "podman", "run", "--rm", "--pull=never", *HARDENED, "--user", user,
        "--tmpfs", "/tmp", *extra, image, *argv,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


# ---------------------------------------------------------------------------------------------
# the build itself


def test_second_independent_build_has_the_same_digest(
    built: BuildResult, tmp_path: Path
) -> None:
    spec, lock_path = resolve_spec_arg(None)
    again = build(
        spec, read_lock(lock_path), lock_path,
        BuildOptions(out_dir=tmp_path / "other-out", cache=Cache(), work_dir=tmp_path / "w",
                     layer_cache=False),
    )  # fmt: skip
    assert [layer.digest for layer in again.image.layers] == [
        layer.digest for layer in built.image.layers
    ]
    assert again.image.config_digest == built.image.config_digest
    assert again.image.manifest_digest == built.image.manifest_digest


def test_layers_follow_the_image_contract(built: BuildResult) -> None:
    names = [layer.name for layer in built.image.layers]
    assert names[:2] == ["debian-base", "python-runtime"] and names[-2:] == ["airflow", "hardflow"]
    assert names == [n for n in layer_order() if n in names] and len(names) > 5  # wheels-<i>
    seen: dict[str, tarfile.TarInfo] = {}
    for layer in built.image.layers:
        for info in iter_tar_entries(layer.path):
            assert not info.mode & 0o6000, f"set-id bit on {info.name}"
            assert info.mtime == built.source_date_epoch
            assert info.uname == "" and info.gname == ""
            if info.mode & 0o002 and not info.issym():
                assert info.name.rstrip("/") == "tmp", f"world-writable {info.name}"
            seen[info.name.rstrip("/")] = info
    for path in FORBIDDEN:
        assert path not in seen, f"{path} must not be in the image"
    # sh is there for the Helm chart's probes (`sh -c ...`): a link to bash, never a second shell
    sh = seen["usr/bin/sh"]
    assert sh.issym() and sh.linkname in ("bash", "/usr/bin/bash", "/bin/bash"), sh.linkname
    home = seen["opt/airflow"]
    assert (home.uid, home.gid) == (50000, 0) and home.mode & 0o070 == 0o070
    assert "etc/ssl/certs/ca-certificates.crt" in seen
    assert "var/lib/dpkg/status.d/python3.13" in seen
    assert any(n.endswith(".dist-info/METADATA") and "apache_airflow_core" in n for n in seen)
    site = "usr/local/lib/python3.13/dist-packages"
    assert f"{site}/airflow/__pycache__/__init__.cpython-313.pyc" in seen
    assert not any(n.startswith(("usr/share/man/", "usr/share/locale/")) for n in seen)


def test_config(built: BuildResult) -> None:
    layout = built.image.layout_dir
    config = json.loads(
        (layout / "blobs/sha256" / built.image.config_digest.split(":")[1]).read_text()
    )
    cfg = config["config"]
    assert cfg["User"] == "50000:0"
    assert cfg["Entrypoint"][0] == "/usr/bin/tini"
    assert "8080/tcp" in cfg["ExposedPorts"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["AIRFLOW_HOME"] == "/opt/airflow" and env["LANG"] == "C.UTF-8"
    assert not any(k.endswith(("KEY", "SECRET", "PASSWORD")) for k in env)
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/hardflow-health"]
    assert config["created"].startswith(time.strftime("%Y-%m-%d", time.gmtime(
        built.source_date_epoch)))


# ---------------------------------------------------------------------------------------------
# inside the image


def test_import_everything(image_ref: str) -> None:
    r = run_in_image(
        image_ref,
        ["/tmp/ie/import_everything.py", "--workers", "2"],
        extra=(
            "--entrypoint", "/usr/bin/python3.13",
            "-e", "AIRFLOW_HOME=/tmp/airflow",
            "-v", f"{HERE}:/tmp/ie:ro",
        ),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    print(
        f"imported {report['imported']} modules of {report['distributions']} distributions; "
        f"{len(report['optional'])} need optional packages; skipped: {report['skipped']}"
    )
    assert report["distributions"] > 100 and report["imported"] > 5000
    assert report["failures"] == {}


def test_database_unreachable_exits_with_clear_message(image_ref: str) -> None:
    password = "s3cr3t-" + uuid.uuid4().hex[:8]
    volume = f"hf-e2e-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    r = run_in_image(
        image_ref,
        ["scheduler"],
        extra=(
            "-v", f"{volume}:/opt/airflow",
            "-e", f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:{password}"
                  "@127.0.0.1:9/airflow",
            "-e", "CONNECTION_CHECK_MAX_COUNT=3",
            "-e", "CONNECTION_CHECK_SLEEP_TIME=1",
        ),
        timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    subprocess.run(["podman", "volume", "rm", "-f", volume], capture_output=True, check=False)
    output = r.stdout + r.stderr
    assert r.returncode != 0
    assert "127.0.0.1" in output and "9" in output
    assert password not in output
    assert elapsed < 60


@pytest.fixture(scope="module")
def standalone(podman: Engine, image_ref: str) -> Iterator[RunResult]:
    name = f"hf-e2e-{uuid.uuid4().hex[:6]}"
    req = RunRequest(image=image_ref, port=free_port(), name=name, detach=True)
    try:
        yield start(podman, req, print)
    finally:
        if eng.container_exists(podman, name):
            stop_container(podman, name, remove=True, remove_volume=True)


def test_example_dag_runs_and_says_hello(standalone: RunResult) -> None:
    assert standalone.password
    run = trigger_dag(standalone.url, standalone.username, standalone.password, "example", 600)
    print(f"healthy after {standalone.seconds_to_healthy:.1f}s; run took {run.seconds:.1f}s")
    assert run.ok, run
    assert any("hello" in t.log for t in run.tasks)


def test_root_and_system_dirs_are_read_only_and_no_capabilities(
    podman: Engine, standalone: RunResult
) -> None:
    for target in ("/x", "/etc/x", "/usr/x"):
        r = eng.exec_in(podman, standalone.name, ["/usr/bin/bash", "-c", f"echo > {target}"],
                        check=False)  # fmt: skip
        assert r.returncode != 0, f"writing {target} succeeded"
        assert "Read-only file system" in r.stderr
    # no cat in the image: read it with bash itself
    status = eng.exec_in(
        podman, standalone.name,
        ["/usr/bin/bash", "-c", 'while IFS= read -r l; do echo "$l"; done < /proc/1/status'],
    ).stdout  # fmt: skip
    caps = dict(line.split(":", 1) for line in status.splitlines() if line.startswith("Cap"))
    assert int(caps["CapEff"].strip(), 16) == 0
    assert int(caps["CapPrm"].strip(), 16) == 0
    nnp = [ln for ln in status.splitlines() if ln.startswith("NoNewPrivs")]
    assert nnp and nnp[0].split()[-1] == "1"


def test_ui_login_page_renders_in_chromium(standalone: RunResult, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000", "--dump-dom", f"{standalone.url}/",
    ]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False).stdout
    assert 'type="password"' in dom, dom[-2000:]
    shot = Path(os.environ.get("HARDFLOW_SCREENSHOT_DIR", tmp_path)) / "login.png"
    subprocess.run(
        [*cmd[:-2], f"--screenshot={shot}", "--window-size=1280,800", f"{standalone.url}/"],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 5000


def test_sigterm_stops_gracefully_with_exit_code_zero(
    podman: Engine, standalone: RunResult
) -> None:
    t0 = time.monotonic()
    code = stop_container(podman, standalone.name, timeout=60, remove=False)
    elapsed = time.monotonic() - t0
    print(f"stopped in {elapsed:.1f}s with exit code {code}")
    assert code == 0
    assert elapsed < 60


def test_arbitrary_uid_runs_the_example(podman: Engine, image_ref: str) -> None:
    name = f"hf-e2e-uid-{uuid.uuid4().hex[:6]}"
    req = RunRequest(image=image_ref, port=free_port(), name=name, user="1234567:0", detach=True)
    try:
        result = start(podman, req, print)
        assert result.password
        run = trigger_dag(result.url, result.username, result.password, "example", 600)
        assert run.ok, run
        assert any("hello" in t.log for t in run.tasks)
        who = eng.exec_in(podman, name, ["/usr/bin/bash", "-c", "echo $UID"])
        assert "1234567" in who.stdout
    finally:
        if eng.container_exists(podman, name):
            stop_container(podman, name, remove=True, remove_volume=True)


def test_run_options_are_hardened(image_ref: str) -> None:
    from hardflow.run.runner import run_options

    opts: RunOptions = run_options(RunRequest(image=image_ref, port=18080))
    argv = eng.run_argv(eng.Engine("podman", "podman"), opts)
    for flag in ("--read-only", "--cap-drop=ALL", "--user"):
        assert any(a.startswith(flag) for a in argv), flag
    assert any("no-new-privileges" in a for a in argv)
    assert any(a.startswith("127.0.0.1:18080:8080") or "127.0.0.1:18080" in a for a in argv)
