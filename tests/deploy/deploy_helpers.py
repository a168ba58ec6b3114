"""Helpers of the deploy end-to-end tests (podman calls, health waits, DAG runs, metrics)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).parent
DAGRUN_SCRIPT = (HERE / "dagrun_script.py").read_text()


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def healthy(name: str, argv: Sequence[str] | None) -> bool:
    """``podman healthcheck run NAME`` (argv None) or ``podman exec NAME ARGV``."""
    args = ["healthcheck", "run", name] if argv is None else ["exec", name, *argv]
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=60)
    LAST_HEALTH[name] = (done.stdout + done.stderr).strip()[-500:]
    return done.returncode == 0


LAST_HEALTH: dict[str, str] = {}  # the last health output per container, for failure messages


def wait_healthy(
    checks: dict[str, Sequence[str] | None], timeout: float, logs_on_failure: bool = True
) -> float:
    """Seconds until every container is healthy; fails with the laggards' logs on timeout."""
    start = time.monotonic()
    pending = dict(checks)
    while pending:
        pending = {n: a for n, a in pending.items() if not healthy(n, a)}
        if not pending:
            break
        if time.monotonic() - start > timeout:
            tails = ""
            if logs_on_failure:
                for name in pending:
                    log = subprocess.run(
                        ["podman", "logs", "--tail", "30", name], capture_output=True, text=True
                    )
                    tails += f"\n--- {name} (last health output: {LAST_HEALTH.get(name, '')!r})"
                    tails += f"\n{(log.stdout + log.stderr)[-3000:]}"
            raise AssertionError(f"not healthy after {timeout:.0f}s: {sorted(pending)}{tails}")
        time.sleep(3)
    return time.monotonic() - start


def dagrun(container: str, password_file: str, *args: str, timeout: float = 300) -> dict[str, str]:
    """Run dagrun_script.py inside ``container`` (the API server); its JSON answer."""
    out = podman(
        "exec", container, "/usr/bin/python3.13", "-c", DAGRUN_SCRIPT, "admin", password_file,
        str(timeout), *args, timeout=timeout + 60,
    )  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def memory_by_container(names: Sequence[str]) -> dict[str, str]:
    out = podman("stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}", *names)
    return dict(line.split("\t", 1) for line in out.strip().splitlines() if "\t" in line)


def record_metrics(name: str, data: dict[str, object]) -> None:
    """Print the measurements, and keep them in $HARDFLOW_METRICS_DIR/NAME.json when set."""
    print(f"{name}: {json.dumps(data, indent=2)}")
    directory = os.environ.get("HARDFLOW_METRICS_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        Path(directory, f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
