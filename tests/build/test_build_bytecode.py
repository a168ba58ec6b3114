"""The cross compiler: a foreign tree's bytecode compiled inside the host tree, then moved back
beside its sources (the host's Python stands in for the host tree's interpreter here)."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from hardflow.build.bytecode import CrossCompiler, host_architecture
from hardflow.spec import DebianSpec, ImageSpec, PythonSpec
from helpers.compilers import host_compiler

PYVER = f"{sys.version_info.major}.{sys.version_info.minor}"
TAG = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
SPEC = ImageSpec("t/x", "1", DebianSpec(suites=("trixie",)), PythonSpec(version=PYVER))


def test_the_foreign_tree_is_compiled_in_the_host_tree_and_gets_its_pyc_back(
    tmp_path: Path,
) -> None:
    foreign = tmp_path / "arm64"
    lib = foreign / f"usr/lib/python{PYVER}"
    lib.mkdir(parents=True)
    (lib / "good.py").write_text("X = {'a', 'b'}\n")
    (lib / "bad.py").write_text("this is not python\n")  # stays source-only
    host = tmp_path / "amd64"
    host.mkdir()
    prepared: list[Path] = []
    seen: list[tuple[Path, list[tuple[str, str]]]] = []

    def root() -> Path:
        prepared.append(host)
        return host

    def inner(at: Path, jobs: Sequence[tuple[str, str]], spec: ImageSpec) -> None:
        seen.append((at, list(jobs)))
        for src, shown in jobs:
            if src.endswith("good.py"):
                host_compiler(at, [(src, shown)], spec)

    old = os.umask(0o027)
    try:
        compiler = CrossCompiler(root, "cross:test", inner)
        jobs = [(f"usr/lib/python{PYVER}/{n}.py", f"/usr/lib/python{PYVER}/{n}.py")
                for n in ("good", "bad")]  # fmt: skip
        compiler(foreign, jobs, SPEC)
    finally:
        os.umask(old)
    (at, given) = seen[0]
    assert at == host and prepared == [host]
    scratch = given[0][0].split("/")[0]
    assert scratch.startswith(".hardflow-xc-")
    assert [shown for _, shown in given] == [shown for _, shown in jobs]  # the image's paths
    pyc = lib / "__pycache__" / f"good.{TAG}.pyc"
    expected = tmp_path / "expected"
    (expected / f"usr/lib/python{PYVER}").mkdir(parents=True)
    (expected / f"usr/lib/python{PYVER}/good.py").write_text("X = {'a', 'b'}\n")
    host_compiler(expected, jobs[:1], SPEC)
    assert (
        pyc.read_bytes()
        == (expected / f"usr/lib/python{PYVER}/__pycache__/good.{TAG}.pyc").read_bytes()
    )
    assert not (lib / "__pycache__" / f"bad.{TAG}.pyc").exists()
    assert (lib / "__pycache__").stat().st_mode & 0o777 == 0o750  # as the compiler made it
    assert list(host.iterdir()) == []  # the scratch folder is gone
    assert compiler.cache_id == "cross:test"


def test_host_architecture_is_a_debian_name(monkeypatch: pytest.MonkeyPatch) -> None:
    for machine, arch in (("x86_64", "amd64"), ("aarch64", "arm64"), ("riscv64", "riscv64")):
        monkeypatch.setattr(platform, "machine", lambda m=machine: m)
        assert host_architecture() == arch


def test_the_compilers_run_under_a_fixed_umask(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The image's interpreter makes .pyc files and __pycache__ folders under its umask: a
    builder's umask 002 or 077 must not change their modes (and so the layer digests)."""
    import subprocess

    from hardflow.build import bytecode
    from hardflow.spec import resolve_spec_arg

    seen: list[object] = []

    class Done:
        returncode = 0

        def __init__(self, *args: object, **kwargs: object) -> None:
            seen.append(kwargs.get("umask"))

        def communicate(self, data: str) -> tuple[str, str]:
            return "", ""

    monkeypatch.setattr(subprocess, "Popen", Done)
    spec = resolve_spec_arg("default")[0]
    bytecode.chroot_compiler(tmp_path, [("usr/lib/a.py", "/usr/lib/a.py")], spec)
    assert seen == [0o022]
