"""Fixtures of the deploy end-to-end tests: podman-compose and the three images."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from helpers.loaded_images import LoadedImage

SPECS = ("default", "postgres", "redis")


@pytest.fixture(scope="session")
def deploy_images(loaded_image: LoadedImage) -> dict[str, str]:
    """spec name → image reference, each built and loaded unless podman already has it."""
    return {name: loaded_image(name) for name in SPECS}


@pytest.fixture(scope="session")
def podman_compose() -> str:
    found = shutil.which("podman-compose") or shutil.which(
        "podman-compose", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.skip("podman-compose is not installed (pip install podman-compose)")
    return found
