"""What makes a layer member unsafe to unpack, decided from its header alone.

A layer is a tar archive we may not have written. A member is *unsafe* when extracting it
naively could touch something outside the image root (a ``..`` component, an absolute name, a
symlink or hard link whose target leaves the root) or create something an image should not
carry (a device node, a FIFO). The one image reader records these for every layer; the audit
reports them (FATAL for escapes, WARN for special files) and every extractor refuses them.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import Literal

IssueKind = Literal["traversal", "absolute", "escaping-link", "device", "fifo"]
ESCAPES: frozenset[IssueKind] = frozenset({"traversal", "absolute", "escaping-link"})
SPECIAL: frozenset[IssueKind] = frozenset({"device", "fifo"})


@dataclass(frozen=True)
class MemberIssue:
    layer: str  # the layer's digest (or name)
    path: str  # the member name as written in the archive
    kind: IssueKind
    detail: str  # e.g. the link target


def _climbs(path: str) -> bool:
    """True when resolving ``path`` lexically from the root would go above it."""
    depth = 0
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False


def classify(layer: str, info: tarfile.TarInfo) -> MemberIssue | None:
    """The issue with one member, or None when it is safe to unpack below a root."""
    name = info.name
    if name.startswith("/"):
        return MemberIssue(layer, name, "absolute", "")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return MemberIssue(layer, name, "traversal", "")
    if info.issym():
        target = info.linkname
        # an absolute symlink target is resolved inside the container's root at run time,
        # which is where it points; only a relative target can climb out of the root
        parent = "/".join(parts[:-1])
        if not target.startswith("/") and _climbs(f"{parent}/{target}" if parent else target):
            return MemberIssue(layer, name, "escaping-link", target)
    elif info.islnk():
        target = info.linkname
        if target.startswith("/") or _climbs(target):
            return MemberIssue(layer, name, "escaping-link", target)
    elif info.ischr() or info.isblk():
        return MemberIssue(layer, name, "device", f"{info.devmajor}:{info.devminor}")
    elif info.isfifo():
        return MemberIssue(layer, name, "fifo", "")
    return None
