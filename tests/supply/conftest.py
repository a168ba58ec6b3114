"""Fixtures shared by the supply tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_supply_push import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install docker-registry skopeo)")
    reg = Registry(tmp_path)
    try:
        yield reg
    finally:
        reg.stop()
