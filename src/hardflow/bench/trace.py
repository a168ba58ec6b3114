"""What a real workload reads: the evidence behind the prune list (docs/shrinking.md).

Method (atime): the image's layers are extracted onto a tmpfs mounted with ``strictatime`` and
every access time is set to 0; the container then runs from that directory (``podman run
--rootfs``, with no capabilities, no-new-privileges and UID 50000, but without ``--read-only``:
the kernel never updates access times on a read-only mount) while every component of
``standalone`` starts, the example DAG runs and the UI loads in headless Chromium. Every file the
kernel read (open+read, exec, mmap of a shared library) has a fresh atime afterwards. Files only
``stat``-ed keep atime 0: the prune rules therefore only drop whole classes that no code looks
up by path at run time (tests, headers, type stubs, ...), never single modules.

Run as root: ``python -m hardflow.bench.trace OCI_LAYOUT_OR_BUILD_DIR OUT.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hardflow.bench.runtime import free_port, wait_api_healthy
from hardflow.build.prune import PRUNE_RULES, rule_for
from hardflow.errors import BuildError, EngineError
from hardflow.oci.reader import layout_blob_path
from hardflow.oci.stream import open_tar_stream
from hardflow.run import engine as eng
from hardflow.run.airflow_api import trigger_dag
from hardflow.run.runner import BENCH_LABEL, admin_password

ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "AIRFLOW_HOME": "/opt/airflow",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
}
ENTRYPOINT = ["/usr/bin/tini", "-e", "143", "--", "/usr/bin/python3.13",
              "/usr/local/lib/hardflow/entrypoint.py"]  # fmt: skip


def extract(layers: Iterable[Path], dest: Path) -> None:
    """Unpack our own image's layers as they are (set-id bits, owners): the reader opens and
    decompresses each blob; tarfile writes the tree."""
    for layer in layers:
        with open_tar_stream(layer) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(dest, filter="fully_trusted", numeric_owner=True)


def reset_atimes(root: Path) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            os.utime(p, ns=(0, st.st_mtime_ns), follow_symlinks=False)
            n += 1
    return n


def accessed_files(root: Path) -> tuple[set[str], set[str]]:
    """(regular files read, all regular files), root-relative."""
    read: set[str] = set()
    every: set[str] = set()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            rel = os.path.relpath(p, root)
            every.add(rel)
            if st.st_atime_ns > 0:
                read.add(rel)
    return read, every


def classify(read: set[str], every: set[str], root: Path) -> dict[str, Any]:
    """Per prune rule: files, bytes, and which of them the workload read."""
    out: dict[str, Any] = {}
    for rule in PRUNE_RULES:
        out[rule.name] = {"files": 0, "bytes": 0, "read": [], "reason": rule.reason}
    for rel in sorted(every):
        matched = rule_for(rel)
        if matched is None:
            continue
        entry = out[matched.name]
        entry["files"] += 1
        entry["bytes"] += os.lstat(root / rel).st_size
        if rel in read:
            entry["read"].append(rel)
    return out


def _chromium(url: str, out_dir: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise EngineError("chromium is needed to load the UI (apt-get install chromium)")
    for page in ("/", "/dags", "/dags/example"):
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             f"--user-data-dir={out_dir / 'chromium'}", "--virtual-time-budget=15000",
             "--dump-dom", url + page],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip


def run_workload(root: Path, name: str, home: Path) -> dict[str, Any]:
    engine = eng.detect_engine("podman")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        engine.path, "run", "--detach", "--name", name, "--label", f"{BENCH_LABEL}=true",
        "--cap-drop=ALL",
        "--security-opt", "no-new-privileges", "--user", "50000:0",
        "--tmpfs", "/tmp:rw,nosuid,nodev,mode=1777",
        "--mount", f"type=bind,source={home},target=/opt/airflow",
        "--publish", f"127.0.0.1:{port}:8080/tcp",
        "--entrypoint", json.dumps(ENTRYPOINT),
        *[a for k, v in ENV.items() for a in ("--env", f"{k}={v}")],
        "--rootfs", str(root), "standalone",
    ]  # fmt: skip
    t0 = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    try:
        healthy = wait_api_healthy(engine, name, url, 900, t0)
        password = admin_password(engine, name)
        assert password is not None
        run = trigger_dag(url, "admin", password, "example", 600)
        _chromium(url, home.parent)
        return {"healthy_s": round(healthy, 1), "dag_state": run.state}
    finally:
        subprocess.run([engine.path, "rm", "--force", name], capture_output=True, check=False)


def main(argv: list[str]) -> int:
    source, out = Path(argv[0]), Path(argv[1])
    mount = Path(argv[2]) if len(argv) > 2 else Path(tempfile.mkdtemp(prefix="hf-trace-"))
    index = json.loads((source / "build.json").read_text())
    layers = [Path(layer_path(source, layer["digest"])) for layer in index["layers"]]
    root = mount / "root"
    home = mount / "home"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    root.mkdir(parents=True)
    extract(layers, root)
    shutil.copytree(root / "opt/airflow", home)
    shutil.chown(home, 50000, 0)
    for dirpath, dirnames, filenames in os.walk(home):
        for n in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, n), 50000, 0)
    reset_atimes(root)
    workload = run_workload(root, f"hardflow-trace-{os.getpid()}", home)
    read, every = accessed_files(root)
    report = {
        "method": "atime on a strictatime tmpfs, podman run --rootfs (UID 50000, no capabilities)",
        "workload": "standalone start (all components healthy), example DAG run, UI pages "
                    "/, /dags, /dags/example in headless Chromium",
        "result": workload,
        "files": len(every),
        "files_read": len(read),
        "rules": classify(read, every, root),
        "read": sorted(read),
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def layer_path(build_dir: Path, digest: str) -> str:
    path = layout_blob_path(build_dir / "oci", digest)  # the digest is checked first
    if not path.is_file():
        raise BuildError(f"layer {digest} is missing from {build_dir}/oci")
    return str(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
