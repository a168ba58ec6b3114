"""Load the in-image scripts by path: they are not part of the hardflow package's imports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

IMAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "hardflow" / "image"
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "src" / "hardflow" / "examples"


def load_script(name: str) -> ModuleType:
    module_name = f"hardflow_image_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, IMAGE_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def ep() -> ModuleType:
    return load_script("entrypoint")


@pytest.fixture(scope="session")
def health() -> ModuleType:
    return load_script("health")


@pytest.fixture(scope="session")
def sa() -> ModuleType:
    return load_script("standalone")
