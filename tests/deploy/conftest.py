"""Fixtures of the deploy end-to-end tests: podman, podman-compose and the three images."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from hardflow.build.pipeline import BuildOptions, build
from hardflow.lock.fetch import Cache
from hardflow.lock.model import read_lock
from hardflow.run import engine as eng
from hardflow.run.engine import Engine
from hardflow.spec import resolve_spec_arg

SPECS = ("default", "postgres", "redis")


@pytest.fixture(scope="session")
def podman_engine() -> Engine:
    try:
        return eng.detect_engine("podman")
    except Exception as exc:
        pytest.skip(f"podman is not usable: {exc}")


@pytest.fixture(scope="session")
def deploy_images(
    podman_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """spec name → image reference, each built and loaded unless podman already has it."""
    refs: dict[str, str] = {}
    for name in SPECS:
        spec, lock_path = resolve_spec_arg(name)
        ref = f"localhost/{spec.reference}"
        if not eng.image_exists(podman_engine, ref):
            out = tmp_path_factory.mktemp(f"build-{name}") / "out"
            result = build(spec, read_lock(lock_path), lock_path, BuildOptions(out, Cache()))
            assert result.image.archive_path is not None
            eng.load_archive(podman_engine, result.image.archive_path)
        refs[name] = ref
    return refs


@pytest.fixture(scope="session")
def podman_compose() -> str:
    found = shutil.which("podman-compose") or shutil.which(
        "podman-compose", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.skip("podman-compose is not installed (pip install podman-compose)")
    return found

