"""Debian side: verified archive indices, the dependency closure, safe ``.deb`` reading."""

from __future__ import annotations

from .deb import DebContents, DebMember, read_deb
from .repo import Downloader, PackageRecord, SuiteIndex, load_suite
from .resolve import resolve_closure

__all__ = [
    "DebContents",
    "DebMember",
    "Downloader",
    "PackageRecord",
    "SuiteIndex",
    "load_suite",
    "read_deb",
    "resolve_closure",
]
