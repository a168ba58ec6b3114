"""What the tests that run real containers share: the engine (or a skip), a free port, and the
hardening flags every hardflow image must run under (DESIGN.md §3)."""

from __future__ import annotations

import socket

import pytest

from hardflow.errors import HardflowError
from hardflow.run import engine as eng

HARDENED = ("--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges")


def podman_or_skip() -> eng.Engine:
    """The podman engine; the calling test is skipped when podman is missing or not working
    (``detect_engine`` runs ``podman info``)."""
    try:
        return eng.detect_engine("podman")
    except HardflowError as exc:
        pytest.skip(f"podman is not usable: {exc.message}")


def free_port() -> int:
    """A loopback port nobody listens on right now: tests never bind fixed host ports."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
