"""Make ``tests/fixtures_debian.py`` importable and share its signing key across tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from helpers.fixtures_debian import SigningKey, make_signing_key  # noqa: E402


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return make_signing_key()


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    return make_signing_key("Someone Else <mallory@example.invalid>")
