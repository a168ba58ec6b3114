"""End to end: the embedded ``airflow-multiplatform`` spec built for linux/amd64 and linux/arm64
from the real archives, and the arm64 image proven without binfmt: its Python runs under
``qemu-aarch64-static`` (Debian's qemu-user-static) with the image's root as the library
prefix, and the ``.pyc`` files the build wrote (with the amd64 interpreter) are byte for byte
those the arm64 interpreter writes itself.

The build is the session's ``multiplatform_build`` (tests/conftest.py), which
test_reproducible_digests.py checks against the README's digests. Needs the network and ~2 GB
of disk; no podman, no binfmt registration.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.build.elf import EM_AARCH64, EM_X86_64, MAGIC
from hardflow.build.layers import extract_layer
from hardflow.build.pipeline import BuildResult

pytestmark = [pytest.mark.network, pytest.mark.slow]

QEMU = shutil.which("qemu-aarch64-static")
PY = "/usr/bin/python3.13"
# modules whose image .pyc is compared with the arm64 interpreter's own: stdlib, Airflow, a
# C-extension package's Python part, and modules with set/frozenset constants
COMPARED = (
    "usr/lib/python3.13/json/__init__.py",
    "usr/lib/python3.13/typing.py",
    "usr/lib/python3.13/_pydecimal.py",
    "usr/local/lib/python3.13/dist-packages/airflow/__init__.py",
    "usr/local/lib/python3.13/dist-packages/airflow/models/dag.py",
    "usr/local/lib/python3.13/dist-packages/sqlalchemy/orm/session.py",
    "usr/local/lib/python3.13/dist-packages/pydantic/main.py",
    "usr/local/lib/python3.13/dist-packages/yaml/__init__.py",
)
_MACHINES = {"linux/amd64": EM_X86_64, "linux/arm64": EM_AARCH64}


@pytest.fixture(scope="session")
def arm64_root(multiplatform_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("arm64-root") / "root"
    for layer in dict(multiplatform_build.platforms)["linux/arm64"].image.layers:
        extract_layer(layer, root)
    return root


def qemu(root: Path, *argv: str, env: dict[str, str] | None = None, timeout: int = 900,
         image_paths: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The arm64 interpreter of ``root`` under qemu-user: ``-L`` makes the guest's absolute
    paths (its loader, libraries, stdlib) resolve inside ``root`` first.

    ``image_paths``: the interpreter believes it is ``/usr/bin/python3.13``, so its modules
    have the image's paths. qemu-user maps those for open and stat but not for mkdir: a module
    that creates a folder beside itself at import (Airflow's simple auth manager) needs
    ``image_paths=False``, where the interpreter finds its prefix, and every module, under
    ``root`` itself."""
    if QEMU is None:
        pytest.skip("qemu-aarch64-static is not installed (apt-get install qemu-user-static)")
    named = ["-0", PY] if image_paths else []
    cmd = [QEMU, "-L", str(root), *named, str(root / PY.lstrip("/")), *argv]
    base = {"PATH": "/usr/local/bin:/usr/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout,
                          env={**base, **(env or {})})  # fmt: skip


def elf_machines(result: BuildResult) -> Iterator[tuple[str, int]]:
    for layer in result.image.layers:
        with tarfile.open(layer.path) as tar:
            for info in tar:
                if not info.isfile() or info.size < 20:
                    continue
                fh = tar.extractfile(info)
                head = fh.read(20) if fh is not None else b""
                if head[:4] == MAGIC:
                    yield info.name, struct.unpack_from("<H", head, 18)[0]


def test_the_index_holds_both_platforms(multiplatform_build: BuildResult) -> None:
    assert [p for p, _ in multiplatform_build.platforms] == ["linux/amd64", "linux/arm64"]
    for platform, result in multiplatform_build.platforms:
        machines = dict(elf_machines(result))
        assert machines, platform
        wrong = sorted(n for n, m in machines.items() if m != _MACHINES[platform])
        assert not wrong, f"{platform}: {len(wrong)} ELF files of another machine: {wrong[:5]}"


def test_arm64_python_imports_airflow_under_qemu(arm64_root: Path, tmp_path: Path) -> None:
    done = qemu(arm64_root, "-c", "import platform, airflow; "
                "print(platform.machine(), airflow.__version__)")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["aarch64", "3.3.2"]
    home = tmp_path / "airflow-home"
    home.mkdir()
    version = qemu(arm64_root, "/usr/local/bin/airflow", "version",
                   env={"AIRFLOW_HOME": str(home)})  # fmt: skip
    assert version.returncode == 0, version.stderr[-3000:]
    assert version.stdout.strip().splitlines()[-1] == "3.3.2"


def _import_everything(root: Path, tmp_path: Path, *args: str,
                       image_paths: bool = True) -> dict[str, object]:  # fmt: skip
    script = Path(__file__).parent / "import_everything.py"
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {"AIRFLOW_HOME": str(home), "IMPORT_EVERYTHING_TIMEOUT": "900"}  # emulated: slower
    done = qemu(root, str(script), *args, env=env, timeout=3 * 3600, image_paths=image_paths)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failures"] == {}, report["failures"]
    return report


def test_arm64_extension_modules_import_under_qemu(arm64_root: Path, tmp_path: Path) -> None:
    """Every compiled extension module of the arm64 image (with its package) imports under
    the arm64 interpreter: the part of import-everything that differs between platforms
    (pure-Python modules are the same files on both, and their bytecode is checked below)."""
    report = _import_everything(arm64_root, tmp_path, "--extensions")
    assert report["extensions_only"] is True
    # 50 in the default of 2026-11 (pydantic-core, cryptography, grpcio, psycopg-binary ...)
    assert isinstance(report["imported"], int) and report["imported"] >= 40
    assert report["optional"] == {}


@pytest.mark.skipif(
    not os.environ.get("HARDFLOW_QEMU_IMPORT_EVERYTHING"),
    reason="every module under qemu takes 30+ minutes of CPU, more than CI's budget: set "
    "HARDFLOW_QEMU_IMPORT_EVERYTHING=1 (CI imports every extension module under qemu and "
    "every module natively)",
)
def test_arm64_import_everything_under_qemu(arm64_root: Path, tmp_path: Path) -> None:
    """The default image's whole import-everything check, run by the arm64 interpreter: one
    forked child per core after a shared warm-up (see import_everything.py's ``--workers``)."""
    workers = str(os.cpu_count() or 1)
    report = _import_everything(arm64_root, tmp_path, "--workers", workers, image_paths=False)
    print(f"arm64 under qemu: imported {report['imported']} modules of "
          f"{report['distributions']} distributions with {workers} workers")  # fmt: skip
    assert isinstance(report["imported"], int) and report["imported"] > 5000
    assert isinstance(report["distributions"], int) and report["distributions"] > 100


def test_arm64_bytecode_is_what_the_arm64_interpreter_writes(
    arm64_root: Path, tmp_path: Path
) -> None:
    """The build compiled the arm64 image's .pyc with the amd64 interpreter; the arm64
    interpreter, run under qemu with the build's flags, writes the same bytes."""
    script = (
        "import py_compile, sys\n"
        "for src, out, shown in zip(*[iter(sys.argv[1:])] * 3):\n"
        "    py_compile.compile(src, cfile=out, dfile=shown, doraise=True,\n"
        "        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
    )
    args: list[str] = []
    for i, rel in enumerate(COMPARED):
        src = tmp_path / f"src{i}.py"  # a host path: the guest writes nothing into the image
        shutil.copyfile(arm64_root / rel, src)
        args += [str(src), str(tmp_path / f"out{i}.pyc"), f"/{rel}"]
    done = qemu(arm64_root, "-B", "-s", "-S", "-P", "-c", script, *args,
                env={"PYTHONHASHSEED": "0"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for i, rel in enumerate(COMPARED):
        path = Path(rel)
        image_pyc = arm64_root / path.parent / "__pycache__" / f"{path.stem}.cpython-313.pyc"
        ours = (tmp_path / f"out{i}.pyc").read_bytes()
        assert image_pyc.read_bytes() == ours, rel
    assert os.path.getsize(tmp_path / "out0.pyc") > 16
