"""What the layers themselves say, apart from the merged file system.

Two kinds of check functions: reproducibility hygiene (hardflow DESIGN §5: clamped mtimes,
numeric owners, no time records, deterministic gzip headers, byte order) and members that are
unsafe to unpack, as the image reader classified them with :mod:`hardflow.oci.members` —
names or links that leave the image root, and device nodes or FIFOs.
"""

from __future__ import annotations

from collections.abc import Iterable

from hardflow.audit.image_source import ImageData
from hardflow.audit.model import Item, Outcome
from hardflow.oci.members import ESCAPES, SPECIAL, IssueKind, MemberIssue

# a hostile layer can hold millions of bad members; the first ones make the point
MEMBER_ITEMS_SHOWN = 100

# ---------------------------------------------------------------------------------------------
# reproducibility


def mtime_items(image: ImageData) -> Outcome:
    if image.created is None:
        return Outcome(note="the config has no created time")
    items = tuple(
        Item(f"layer {layer.index}: {path}", "mtime later than the config's created time")
        for layer in image.layers
        for path in layer.late_mtimes[:3]
    )
    distinct = {m for layer in image.layers if layer.entries for m in layer.mtimes}
    return Outcome(items, f"mtimes span {len(distinct)} distinct value(s) at the layer bounds")


def owner_items(image: ImageData) -> list[Item]:
    items = []
    for layer in image.layers:
        for path in layer.named_owners[:3]:
            items.append(Item(f"layer {layer.index}: {path}", "user/group name in the header"))
        for path in layer.time_records[:3]:
            items.append(Item(f"layer {layer.index}: {path}", "PAX atime/ctime record"))
    return items


def gzip_items(image: ImageData) -> Outcome:
    gz = [layer for layer in image.layers if layer.compression == "gzip"]
    if not gz:
        return Outcome(skip="no gzip-compressed layer to check")
    items = []
    for layer in gz:
        if layer.gzip_mtime:
            items.append(Item(f"layer {layer.index}", f"gzip mtime {layer.gzip_mtime}"))
        if layer.gzip_name:
            items.append(Item(f"layer {layer.index}", "gzip header carries a file name"))
    return Outcome(tuple(items))


def order_items(image: ImageData) -> list[Item]:
    return [
        Item(f"layer {layer.index}: {path}", "out of byte order")
        for layer in image.layers
        for path in layer.unsorted[:3]
    ]


# ---------------------------------------------------------------------------------------------
# members unsafe to unpack


def _member_problem(issue: MemberIssue) -> str:
    kind: IssueKind = issue.kind
    if kind == "traversal":
        return "its name climbs out of the image root through '..'"
    if kind == "absolute":
        return "absolute name: a naive unpacker writes it outside the image root"
    if kind == "escaping-link":
        return f"link target {issue.detail!r} resolves outside the image root"
    if kind == "device":
        return f"device node {issue.detail}" if issue.detail else "device node"
    return "FIFO (named pipe)"


def member_item(issue: MemberIssue) -> Item:
    """The member as written in its layer (the subject ignore files match) and what is wrong."""
    return Item(issue.path, f"{_member_problem(issue)}; layer {issue.layer}")


def _member_items(issues: Iterable[MemberIssue]) -> list[Item]:
    chosen = list(issues)
    items = [member_item(issue) for issue in chosen[:MEMBER_ITEMS_SHOWN]]
    if len(chosen) > MEMBER_ITEMS_SHOWN:
        more = len(chosen) - MEMBER_ITEMS_SHOWN
        items.append(Item("(more members)", f"{more} more not listed"))
    return items


def escaping_member_items(image: ImageData) -> list[Item]:
    """Members whose name or link target leaves the image root (``..``, ``/``, links)."""
    return _member_items(i for i in image.member_issues if i.kind in ESCAPES)


def special_member_items(image: ImageData) -> list[Item]:
    """Device nodes and FIFOs: the runtime makes /dev, and an image needs neither."""
    return _member_items(i for i in image.member_issues if i.kind in SPECIAL)
