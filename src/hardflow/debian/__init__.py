"""Debian side: verified archive indices, the dependency closure, safe ``.deb`` reading."""

from __future__ import annotations

from hardflow.debian.deb import DebContents, DebMember, read_deb
from hardflow.debian.repo import Downloader, PackageRecord, SuiteIndex, load_suite
from hardflow.debian.resolve import resolve_closure

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
