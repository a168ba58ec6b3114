"""/clean-logs (image/clean_logs.py and its bash wrapper), run as the chart runs it: a process
that cleans ``$AIRFLOW_HOME/logs`` forever and stops on SIGTERM or SIGINT with status 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Protocol

import pytest

from conftest import IMAGE_DIR, load_script

SCRIPT = IMAGE_DIR / "clean_logs.py"
WRAPPER = IMAGE_DIR / "clean-logs"
DAY = 86400


@pytest.fixture(scope="module")
def cl() -> ModuleType:
    return load_script("clean_logs")


def age(path: Path, days: float) -> Path:
    when = time.time() - days * DAY
    os.utime(path, (when, when), follow_symlinks=False)
    return path


def touch(path: Path, days: float = 0, text: str = "line\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return age(path, days)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    (h / "logs").mkdir(parents=True)
    return h


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Old .log files outside the logs folder, reachable only through symlinks."""
    v = tmp_path / "victim"
    touch(v / "old.log", days=100)
    touch(v / "sub" / "older.log", days=200)
    return v


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class Groomer:
    """The script running in the background, its output collected from a file."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path) -> None:
        self.proc = proc
        self.out = out

    def text(self) -> str:
        return self.out.read_text()

    def wait_for(self, needle: str, count: int = 1, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if text.count(needle) >= count:
                return text
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{text}"
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {needle!r} within {timeout}s:\n{self.text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> tuple[int, float]:
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - start


class Start(Protocol):
    def __call__(self, home: Path, argv: list[str] | None = None, **env: str) -> Groomer: ...


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    started: list[Groomer] = []

    def run(home: Path, argv: list[str] | None = None, **env: str) -> Groomer:
        out = tmp_path / f"out-{len(started)}.txt"
        full_env = {"PATH": os.environ.get("PATH", ""), "AIRFLOW_HOME": str(home), **env}
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                argv or [sys.executable, "-I", str(SCRIPT)],
                env=full_env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        groomer = Groomer(proc, out)
        started.append(groomer)
        return groomer

    yield run
    for g in started:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()


def test_removes_old_logs_keeps_new_ones_and_other_files(home: Path, start: Start) -> None:
    logs = home / "logs"
    old = touch(logs / "dag_id=a/run_id=r/task_id=t/attempt=1.log", days=20)
    new = touch(logs / "dag_id=a/run_id=r2/task_id=t/attempt=1.log", days=1)
    edge = touch(logs / "scheduler/edge.log", days=15.5)  # 15 whole days: not more than 15
    other = touch(logs / "dag_processor_manager/old.txt", days=90)
    keep_dir = logs / "lost+found"
    kept_in_lost = touch(keep_dir / "stale.log", days=90)
    g = start(home, HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS="3600")
    text = g.wait_for("pass done")
    assert not old.exists() and not old.parent.exists()
    assert not (logs / "dag_id=a/run_id=r").exists()
    assert new.exists() and edge.exists() and other.exists() and kept_in_lost.exists()
    assert logs.is_dir()  # the logs folder itself stays, even when emptied
    assert f"removed file {old}" in text and f"removed folder {old.parent}" in text
    # the file and the two folders it emptied (dag_id=a still holds run_id=r2)
    assert "pass done: 3 removed" in text
    code, took = g.stop()
    assert code == 0 and took < 2


def test_retention_days_comes_from_the_chart_variable(home: Path, start: Start) -> None:
    logs = home / "logs"
    three = touch(logs / "a/three.log", days=3.5)
    one = touch(logs / "a/one.log", days=1.5)
    g = start(home, AIRFLOW__LOG_RETENTION_DAYS="2")
    g.wait_for("pass done")
    assert not three.exists() and one.exists()
    assert "every 900 seconds" in g.text()  # AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES default 15
    assert g.stop(signal.SIGINT)[0] == 0


def test_runs_again_every_period(home: Path, start: Start) -> None:
    logs = home / "logs"
    g = start(home, HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS="1")
    g.wait_for("pass done")
    later = touch(logs / "later/task.log", days=30)  # appears after the first pass
    g.wait_for(f"removed file {later}")
    assert not later.exists() and not later.parent.exists()
    g.wait_for("pass done", count=3)
    code, took = g.stop()
    assert code == 0 and took < 2
    assert g.text().rstrip().endswith("clean-logs: stopped")


def test_never_follows_symlinks_out_of_the_logs_folder(
    home: Path, victim: Path, start: Start
) -> None:
    logs = home / "logs"
    (logs / "linked_dir").symlink_to(victim, target_is_directory=True)
    (logs / "nested").mkdir()
    (logs / "nested" / "deeper").symlink_to(victim / "sub", target_is_directory=True)
    (logs / "linked.log").symlink_to(victim / "old.log")
    os.utime(logs / "linked.log", (1, 1), follow_symlinks=False)  # the link itself is ancient
    dangling = logs / "dangling.log"
    dangling.symlink_to(victim / "missing.log")
    before = snapshot(victim)
    g = start(home, HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS="1")
    g.wait_for("pass done", count=2)
    assert g.stop()[0] == 0
    assert snapshot(victim) == before
    assert (victim / "old.log").exists() and (victim / "sub/older.log").exists()
    # links are not log files: they stay, and keep their folders from counting as empty
    assert (logs / "linked_dir").is_symlink() and (logs / "linked.log").is_symlink()
    assert (logs / "nested" / "deeper").is_symlink() and dangling.is_symlink()


def test_a_folder_swapped_for_a_link_between_listing_and_entering_is_not_followed(
    cl: ModuleType, home: Path, victim: Path
) -> None:
    logs = home / "logs"
    (logs / "swapped").symlink_to(victim, target_is_directory=True)
    fd = os.open(logs, os.O_RDONLY | os.O_DIRECTORY)
    try:  # what clean_folder does after listing 'swapped' as a folder
        removed, empty = cl.clean_child(fd, "swapped", str(logs / "swapped"), time.time(), 1, 1)
    finally:
        os.close(fd)
    assert (removed, empty) == (0, False)
    assert (victim / "old.log").exists()


def test_sigterm_during_the_sleep_exits_0_promptly(home: Path, start: Start) -> None:
    g = start(home)  # the default 15-minute period: it is asleep when the signal comes
    g.wait_for("pass done")
    code, took = g.stop()
    assert code == 0 and took < 1.5


def test_runs_through_the_bash_wrapper_as_the_chart_calls_it(
    home: Path, start: Start, tmp_path: Path
) -> None:
    text = WRAPPER.read_text()
    assert text.startswith("#!/bin/bash\n")
    # one exec of the image's python: the file must run under `bash /clean-logs` with nothing
    # but bash builtins
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == ['exec /usr/bin/python3 -I /usr/local/lib/hardflow/clean_logs.py "$@"']
    assert subprocess.run(["bash", "-n", str(WRAPPER)], check=False).returncode == 0
    # the same line, with this machine's python and the script's place in the source tree
    local = tmp_path / "clean-logs"
    local.write_text(
        text.replace("/usr/bin/python3", sys.executable).replace(
            "/usr/local/lib/hardflow/clean_logs.py", str(SCRIPT)
        )
    )
    old = touch(home / "logs/x/old.log", days=40)
    g = start(home, ["bash", str(local)], HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS="60")
    g.wait_for("pass done")
    assert not old.exists()
    code, took = g.stop()
    assert code == 0 and took < 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AIRFLOW__LOG_RETENTION_DAYS": "ten"}, "AIRFLOW__LOG_RETENTION_DAYS='ten'"),
        ({"AIRFLOW__LOG_RETENTION_DAYS": "-1"}, "at least 0"),
        ({"AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES": "0"}, "at least 1"),
        ({"HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS": "1.5"}, "a whole number"),
    ],
)
def test_bad_settings_are_named_and_exit_2(home: Path, env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-I", str(SCRIPT)],
        env={"AIRFLOW_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stdout


def test_a_missing_logs_folder_is_reported_and_waited_for(tmp_path: Path, start: Start) -> None:
    home = tmp_path / "empty-home"
    home.mkdir()
    g = start(home, HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS="1")
    g.wait_for("nothing to clean")
    touch(home / "logs/late/old.log", days=30)
    g.wait_for("removed file")
    assert g.stop()[0] == 0


@pytest.mark.parametrize(
    ("age_days", "days", "expired"),
    [(15.99, 15, False), (16.0, 15, True), (0.5, 0, False), (1.0, 0, True), (400, 365, True)],
)
def test_expiry_counts_whole_days_as_find_mtime_does(
    cl: ModuleType, age_days: float, days: int, expired: bool
) -> None:
    now = 1_000_000_000.0
    assert cl.is_expired(now - age_days * DAY, now, days) is expired


def test_retention_minutes_count_as_find_mmin_does(cl: ModuleType) -> None:
    now = 1_000_000_000.0
    # AIRFLOW__LOG_RETENTION_MINUTES: more than days*1440 + minutes minutes, not whole days
    assert cl.is_expired(now - (1440 + 31) * 60, now, 1, 30) is True
    assert cl.is_expired(now - (1440 + 29) * 60, now, 1, 30) is False
    assert cl.is_expired(now - 31 * 60, now, 0, 30) is True


def test_a_size_limit_lowers_the_retention_day_by_day(
    cl: ModuleType, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over the limit after a pass: again with one day less, until under it (or 0 days)."""
    logs = home / "logs"
    files = {age: touch(logs / f"d/{age}.log", days=age + 0.5) for age in (1, 3, 5, 8, 20)}
    # the filesystem counts as "used" 1000 bytes per log file left
    def used(path: str, total: bool = False) -> int:
        return 1000 * len(list(Path(path).rglob("*.log")))

    monkeypatch.setattr(cl, "used_bytes", used)
    removed = cl.clean_within_limit(str(logs), 15, 0, 2500, time.time())
    # 15 days: removes 20; 4 left (4000 > 2500) → 14 … 7 days: removes 8; 3 left → 4 days:
    # removes 5; 2 left (2000 <= 2500): stop. 1 and 3 stay.
    assert not files[20].exists() and not files[8].exists() and not files[5].exists()
    assert files[1].exists() and files[3].exists()
    assert removed == 3
    assert "retention down to 4 days" in capsys.readouterr().out


def test_no_limit_means_one_pass(cl: ModuleType, home: Path) -> None:
    old = touch(home / "logs/d/old.log", days=3.5)
    assert cl.clean_within_limit(str(home / "logs"), 15, 0, 0, time.time()) == 0
    assert old.exists()


def test_size_limit_from_bytes_or_percent_of_the_filesystem(cl: ModuleType, home: Path) -> None:
    logs = str(home / "logs")
    (home / "logs").mkdir(exist_ok=True)
    assert cl.size_limit({}, logs) == 0
    assert cl.size_limit({"AIRFLOW__LOG_MAX_SIZE_BYTES": "5000"}, logs) == 5000
    st = os.statvfs(logs)
    assert cl.size_limit({"AIRFLOW__LOG_MAX_SIZE_PERCENT": "10"}, logs) == (
        st.f_blocks * st.f_frsize * 10 // 100
    )
    # bytes win over a percentage, as in the chart's script
    both = {"AIRFLOW__LOG_MAX_SIZE_BYTES": "7", "AIRFLOW__LOG_MAX_SIZE_PERCENT": "10"}
    assert cl.size_limit(both, logs) == 7
    with pytest.raises(cl.BadSetting, match="at most 100"):
        cl.size_limit({"AIRFLOW__LOG_MAX_SIZE_PERCENT": "150"}, logs)
    with pytest.raises(cl.BadSetting, match="AIRFLOW__LOG_MAX_SIZE_BYTES='lots'"):
        cl.size_limit({"AIRFLOW__LOG_MAX_SIZE_BYTES": "lots"}, logs)


def test_the_size_limit_is_announced_at_start(home: Path, start: Start) -> None:
    (home / "logs").mkdir(exist_ok=True)
    limits = {"AIRFLOW__LOG_MAX_SIZE_BYTES": "123456", "AIRFLOW__LOG_RETENTION_MINUTES": "30"}
    g = start(home, HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS="3600", **limits)
    text = g.wait_for("pass done")
    assert "size limit: 123456 bytes" in text and "older than 15 days and 30 minutes" in text
    assert g.stop()[0] == 0
