"""Log groomer of hardflow images (stdlib only; runs on the image's Python, 3.11+).

The official Helm chart runs ``bash /clean-logs`` as a sidecar next to the scheduler, triggerer,
DAG processor and workers. The official image's script for it is bash plus find, xargs, rm and
date; hardflow images have bash but no coreutils, so ``/clean-logs`` is a one-line bash wrapper
that execs this program, which does the same job with the standard library:

- every ``AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES`` minutes (default 15), on the wall clock's
  multiples of that period as the official script does, remove the regular files named
  ``*.log`` under ``$AIRFLOW_HOME/logs`` older than ``AIRFLOW__LOG_RETENTION_DAYS`` days
  (default 15; "older" as ``find -mtime +N`` counts: more than N whole days), then the
  directories left empty; folders named ``lost+found`` are never entered;
- with a size limit (``AIRFLOW__LOG_MAX_SIZE_BYTES``, or ``AIRFLOW__LOG_MAX_SIZE_PERCENT`` of
  the logs' filesystem when no byte count is set; chart 1.20+), after a pass that leaves the
  filesystem's used space (``df``'s "Used") above the limit, pass again with one day less of
  retention, down to 0 days, as the official script does; the next period starts from the
  configured retention again;
- ``AIRFLOW__LOG_RETENTION_MINUTES`` (newer charts) adds minutes to the retention; when it is
  set, age counts in minutes (``find -mmin +N``) instead of whole days;
- forever, printing one line per file or folder removed;
- until SIGTERM or SIGINT, which ends it at once (also mid-pass) with exit status 0.

Symbolic links are never followed below the logs folder: a link is neither a file to remove
nor a folder to enter, so nothing outside the folder is touched, whatever a task left there.
Every removal goes through a descriptor of the folder it was found in, opened without
following links, so swapping a folder for a link while a pass runs does not redirect it.

``HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS`` (a positive integer) overrides the frequency in
seconds; it exists for tests, which cannot wait a minute between passes.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
import time
from collections.abc import Callable

DEFAULT_HOME = "/opt/airflow"
DEFAULT_DAYS = 15
DEFAULT_MINUTES = 15
DAY = 86400
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
MAX_DEPTH = 64  # folders below the logs folder; each level holds one descriptor
SKIPPED_FOLDERS = frozenset({"lost+found"})
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Stopped(Exception):
    """A stop signal arrived: leave the pass at once."""


class BadSetting(Exception):
    """An environment variable does not hold what it must."""


def log(message: str) -> None:
    print(f"clean-logs: {message}", flush=True)


def stop_requested() -> bool:
    """Whether SIGTERM or SIGINT is pending (both are blocked: they wait to be asked for)."""
    return bool(signal.sigpending() & STOP_SIGNALS)


def setting(env: dict[str, str], name: str, default: int, low: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadSetting(f"{name}={text!r}: expected a whole number") from None
    if value < low:
        raise BadSetting(f"{name}={text!r}: expected a number of at least {low}")
    return value


def period_seconds(env: dict[str, str]) -> int:
    seconds = setting(env, "HARDFLOW_LOG_CLEANUP_FREQUENCY_SECONDS", 0, 1)
    if seconds:
        return seconds
    return 60 * setting(env, "AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES", DEFAULT_MINUTES, 1)


def is_expired(mtime: float, now: float, days: int, minutes: int = 0) -> bool:
    """``find -mtime +days``: the age in whole days (rounded down) is more than ``days``; with
    extra ``minutes``, ``find -mmin +(days*1440 + minutes)``: the age is more than that."""
    if minutes:
        return (now - mtime) > (days * 1440 + minutes) * 60
    return (now - mtime) // DAY > days


def size_limit(env: dict[str, str], logs: str) -> int:
    """The byte limit of the logs' filesystem usage (0: none). ``AIRFLOW__LOG_MAX_SIZE_BYTES``
    wins; else ``AIRFLOW__LOG_MAX_SIZE_PERCENT`` of the filesystem's size."""
    limit = setting(env, "AIRFLOW__LOG_MAX_SIZE_BYTES", 0, 0)
    percent = setting(env, "AIRFLOW__LOG_MAX_SIZE_PERCENT", 0, 0)
    if percent > 100:
        raise BadSetting(f"AIRFLOW__LOG_MAX_SIZE_PERCENT={percent}: expected at most 100")
    if limit == 0 and percent > 0:
        total = used_bytes(logs, total=True)
        limit = total * percent // 100
        log(f"size limit {limit} bytes: {percent}% of the logs' filesystem ({total} bytes)")
    return limit


def used_bytes(path: str, total: bool = False) -> int:
    """The used (or total) bytes of the filesystem holding ``path``, as ``df`` counts them;
    0 when it cannot be read (the limit then never triggers, as in the official script)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    blocks = st.f_blocks if total else st.f_blocks - st.f_bfree
    return blocks * st.f_frsize


def clean_folder(
    fd: int, shown: str, now: float, days: int, depth: int = 0, minutes: int = 0
) -> tuple[int, bool]:
    """Remove expired ``*.log`` files and emptied folders below the folder open as ``fd``.

    Returns how many entries were removed and whether the folder is empty afterwards.
    """
    if depth > MAX_DEPTH:  # Airflow nests a few levels; a deeper tree is not its logs
        log(f"not entering {shown}: more than {MAX_DEPTH} folders deep")
        return 0, False
    removed = 0
    left = 0
    with os.scandir(fd) as entries:
        names = sorted((entry.name, entry) for entry in entries)
    for name, entry in names:
        if stop_requested():
            raise Stopped
        path = f"{shown}/{name}"
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone since the folder was listed
        if stat.S_ISDIR(st.st_mode) and name not in SKIPPED_FOLDERS:
            count, empty = clean_child(fd, name, path, now, days, depth + 1, minutes)
            removed += count
            if empty and remove(os.rmdir, fd, name, path):
                removed += 1
                continue
        elif (
            stat.S_ISREG(st.st_mode)
            and name.endswith(".log")
            and is_expired(st.st_mtime, now, days, minutes)
            and remove(os.unlink, fd, name, path)
        ):
            removed += 1
            continue
        left += 1
    return removed, left == 0


def clean_child(
    parent: int, name: str, shown: str, now: float, days: int, depth: int, minutes: int = 0
) -> tuple[int, bool]:
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:  # replaced by a link or removed since it was listed, or no access
        if exc.errno not in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR):  # races: nothing to say
            log(f"cannot open {shown}: {exc.strerror}")
        return 0, False
    try:
        return clean_folder(fd, shown, now, days, depth, minutes)
    finally:
        os.close(fd)


def remove(action: Callable[..., None], fd: int, name: str, shown: str) -> bool:
    """``action`` (os.unlink or os.rmdir) on ``name`` in the folder open as ``fd``."""
    what = "folder" if action is os.rmdir else "file"
    try:
        action(name, dir_fd=fd)
    except FileNotFoundError:
        return False
    except OSError as exc:  # ENOTEMPTY (a new log since the listing), EACCES, EBUSY ...
        if what == "file" or exc.errno not in (errno.ENOTEMPTY, errno.EBUSY):
            log(f"cannot remove {what} {shown}: {exc.strerror}")
        return False
    log(f"removed {what} {shown}")
    return True


def clean_once(logs: str, days: int, now: float, minutes: int = 0) -> int:
    """One pass over ``logs``; returns how many files and folders were removed."""
    try:
        fd = os.open(logs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        log(f"nothing to clean: cannot open {logs}: {exc.strerror}")
        return 0
    try:
        removed, _ = clean_folder(fd, logs, now, days, 0, minutes)  # the folder itself stays
    finally:
        os.close(fd)
    return removed


def clean_within_limit(logs: str, days: int, minutes: int, limit: int, now: float) -> int:
    """A pass at the configured retention, then, while the filesystem uses more than
    ``limit`` bytes (0: no limit), another with one day less, down to 0 days."""
    removed = clean_once(logs, days, now, minutes)
    while limit and days > 0 and used_bytes(logs) > limit:
        days -= 1
        log(f"{used_bytes(logs)} bytes used, more than {limit}: retention down to {days} days")
        removed += clean_once(logs, days, now, minutes)
    return removed


def wait_for_next_pass(period: int) -> bool:
    """Sleep until the next multiple of ``period`` on the wall clock; False on a stop signal."""
    delay = period - (time.time() % period)
    return signal.sigtimedwait(STOP_SIGNALS, max(delay, 0.05)) is None


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        log(f"takes no arguments, found {' '.join(argv[1:])!r}")
        return 2
    # Blocked signals stay pending until asked for: the sleep waits for them, a pass polls them
    # between entries, so a stop never lands halfway through a removal.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    env = dict(os.environ)
    try:
        days = setting(env, "AIRFLOW__LOG_RETENTION_DAYS", DEFAULT_DAYS, 0)
        minutes = setting(env, "AIRFLOW__LOG_RETENTION_MINUTES", 0, 0)
        period = period_seconds(env)
        logs = os.path.join(env.get("AIRFLOW_HOME") or DEFAULT_HOME, "logs")
        limit = size_limit(env, logs)
    except BadSetting as exc:
        log(str(exc))
        return 2
    age = f"{days} days" + (f" and {minutes} minutes" if minutes else "")
    log(f"cleaning {logs} every {period} seconds: *.log files older than {age}")
    if limit:
        log(f"size limit: {limit} bytes used on the logs' filesystem")
    try:
        while True:
            removed = clean_within_limit(logs, days, minutes, limit, time.time())
            log(f"pass done: {removed} removed")
            if not wait_for_next_pass(period):
                break
    except Stopped:
        pass
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
