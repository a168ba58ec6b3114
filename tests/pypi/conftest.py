"""Make ``tests/fixtures_wheels.py`` importable as ``fixtures_wheels`` (no tests/__init__.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
