"""Tiny real ELF files for tests, made by the host's gcc (skips the test when gcc is missing).

    lib = shared_library(tmp_path, "stub", soname="libxml2.so.2")
    mod = shared_library(tmp_path, "_bar", links=[lib], runpath="$ORIGIN/../foo.libs")

``links`` are linked by path, so each one's SONAME becomes a ``DT_NEEDED`` entry of the new
object although no real library of that name exists anywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    return gcc


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr}")


def shared_library(
    directory: Path,
    name: str,
    *,
    soname: str = "",
    links: Sequence[Path] = (),
    runpath: str = "",
    rpath: str = "",
) -> Path:
    """``directory/name.so``: no libc (``-nostdlib``), so ``DT_NEEDED`` is exactly ``links``.

    ``runpath`` is written as ``DT_RUNPATH``, ``rpath`` as the older ``DT_RPATH``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"{name}.c"
    symbol = "".join(c if c.isalnum() else "_" for c in name)
    source.write_text(f"int {symbol}_value(void) {{ return 42; }}\n")
    out = directory / f"{name}.so"
    argv = [_gcc(), "-shared", "-fPIC", "-nostdlib", "-o", str(out), str(source)]
    if soname:
        argv.append(f"-Wl,-soname,{soname}")
    if runpath:
        argv += [f"-Wl,-rpath,{runpath}", "-Wl,--enable-new-dtags"]
    if rpath:
        argv += [f"-Wl,-rpath,{rpath}", "-Wl,--disable-new-dtags"]
    argv += ["-Wl,--no-as-needed", *(str(p) for p in links)]
    _run(argv)
    return out


def program(directory: Path, name: str) -> Path:
    """A dynamically linked executable (needs libc.so.6 and the program interpreter)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"{name}.c"
    source.write_text("int main(void) { return 0; }\n")
    out = directory / name
    _run([_gcc(), "-o", str(out), str(source)])
    return out
