"""The image history read as build steps: token rules in the spirit of Dockle's.

An image config's ``history`` keeps the command behind every layer (``created_by``). These
helpers strip the builder's wrapper, split a step into simple commands and answer the
questions the image rules ask of it (an index update without an install, ADD, an upgrade…).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from hardflow.audit.image_source import ImageData
from hardflow.audit.model import Item

Segments = Sequence[Sequence[str]]


def history_command(created_by: str) -> str:
    """Strip the builder's wrapper: ``/bin/sh -c #(nop) ADD …`` → ``ADD …``."""
    text = created_by.strip()
    for prefix in ("/bin/sh -c ", "|"):
        if text.startswith(prefix):
            text = text[len(prefix) :].lstrip()
            if prefix == "|":  # buildkit: "|2 ARG=1 ARG=2 /bin/sh -c …"
                text = re.sub(r"^\d+\s+(?:\S+=\S*\s+)*", "", text)
                text = text.removeprefix("/bin/sh -c ").lstrip()
    text = text.removeprefix("#(nop)").strip()
    return re.sub(r"\s*# buildkit$", "", text)


def command_segments(created_by: str) -> list[list[str]]:
    """A history entry split into simple commands, each a list of tokens."""
    text = history_command(created_by)
    segments = []
    for part in re.split(r"&&|\|\||;|\||\n", text):
        tokens = [t for t in part.strip().split() if t and t != "\\"]
        if tokens:
            segments.append(tokens)
    return segments


def _has(tokens: Sequence[str], *words: str) -> bool:
    return all(w in tokens for w in words)


def _apt(tokens: Sequence[str]) -> bool:
    return "apt-get" in tokens or "apt" in tokens


def update_alone(segments: Segments) -> bool:
    updates = any(_apt(s) and "update" in s for s in segments)
    installs = any(_apt(s) and "install" in s for s in segments)
    apk_update = any(_has(s, "apk", "update") for s in segments)
    apk_add = any(_has(s, "apk", "add") for s in segments)
    return (updates and not installs) or (apk_update and not apk_add)


def apt_lists_kept(segments: Segments) -> bool:
    installs = any(_apt(s) and "install" in s for s in segments)
    cleans = any(
        "rm" in s and any(t.rstrip(";").startswith("/var/lib/apt/lists") for t in s)
        for s in segments
    )
    return installs and not cleans


def apk_cached(segments: Segments) -> bool:
    return any(_has(s, "apk", "add") and "--no-cache" not in s for s in segments)


def uses_add(index: int, created_by: str) -> bool:
    if index == 0:  # the base file system itself is always ADDed
        return False
    segments = command_segments(created_by)
    return bool(segments) and segments[0][0] == "ADD"


def upgrades(segments: Segments) -> bool:
    managers = ("apt-get", "apt", "apk", "yum", "dnf", "microdnf")
    verbs = ("upgrade", "dist-upgrade", "full-upgrade")
    return any(any(m in s for m in managers) and any(v in s for v in verbs) for s in segments)


def uses_sudo(segments: Segments) -> bool:
    return any("sudo" in s for s in segments)


def history_items(image: ImageData, rule: Callable[[Segments], bool], what: str) -> list[Item]:
    """One item per history entry whose commands ``rule`` objects to."""
    return [
        Item(f"history[{i}]", f"{what}: {history_command(text)[:120]}")
        for i, text in enumerate(image.history)
        if rule(command_segments(text))
    ]


# check functions of the image rules


def update_alone_items(image: ImageData) -> list[Item]:
    return history_items(image, update_alone, "package index update without install")


def add_items(image: ImageData) -> list[Item]:
    return [
        Item(f"history[{i}]", history_command(t)[:120])
        for i, t in enumerate(image.history)
        if uses_add(i, t)
    ]


def upgrade_items(image: ImageData) -> list[Item]:
    return history_items(image, upgrades, "upgrade in a build step")
