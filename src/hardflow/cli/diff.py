"""`hardflow diff A B`: two images compared by package and by layer.

Exit status 0, or with ``--exit-code`` 1 when the images differ (as ``git diff
--exit-code``). Errors (an unreadable image) exit 1 with a message, as every hardflow command
does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.markup import escape

from hardflow.cli.console import out, print_json
from hardflow.cli.options import json_option

if TYPE_CHECKING:
    from hardflow.imagediff import ImageDiff, LayerChange, Snapshot

_TITLES = {"debian": "Debian packages", "python": "Python packages"}
_MARKS = {
    "identical": "[dim]=[/]",
    "changed": "[yellow]~[/]",
    "added": "[green]+[/]",
    "removed": "[red]-[/]",
}


def _size(n: int) -> str:
    value = float(abs(n))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            text = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            return f"-{text}" if n < 0 else text
        value /= 1024
    raise AssertionError("unreachable")


def _delta(a: int, b: int) -> str:
    change = b - a
    sign = "+" if change > 0 else ""
    return f"{_size(a)} → {_size(b)} ({sign}{_size(change)})"


def _short(digest: str | None) -> str:
    return (digest or "").removeprefix("sha256:")[:12]


def _image_line(which: str, snap: Snapshot) -> str:
    return (
        f"[bold]{which}[/] {escape(snap.reference)} (config {_short(snap.config_digest)}): "
        f"{len(snap.layers)} "
        f"layers, {_size(snap.size)}, {len(snap.debs)} Debian and {len(snap.dists)} Python "
        "packages"
    )


def _print_packages(result: ImageDiff) -> None:
    from hardflow.imagediff import PACKAGE_KINDS

    for kind in PACKAGE_KINDS:
        added = result.packages_of(kind, "added")
        removed = result.packages_of(kind, "removed")
        changed = result.packages_of(kind, "changed")
        head = f"[bold]{_TITLES[kind]}[/]:"
        if not (added or removed or changed):
            out.print(f"{head} no change")
            continue
        out.print(f"{head} {len(added)} added, {len(removed)} removed, {len(changed)} changed")
        for p in added:
            out.print(f"  [green]+ {escape(p.name)} {escape(p.new or '')}[/]")
        for p in removed:
            out.print(f"  [red]- {escape(p.name)} {escape(p.old or '')}[/]")
        for p in changed:
            out.print(f"  [yellow]~ {escape(p.name)} {escape(p.old or '')} → "
                      f"{escape(p.new or '')}[/]")  # fmt: skip


def _pair(a: str | None, b: str | None) -> str:
    """``a → b``; one value when both sides hold the same; ``→ b`` or ``a →`` when one is
    missing."""
    if a is not None and b is not None and a == b:
        return a
    return f"{a or ''} → {b or ''}".strip()


def _layer_row(change: LayerChange) -> list[str]:
    a, b = change.a, change.b
    return [
        change.label + (" (recompressed)" if change.recompressed else ""),
        _pair(_short(a.digest) if a else None, _short(b.digest) if b else None),
        _pair(_size(a.size) if a else None, _size(b.size) if b else None),
        _pair(_size(a.uncompressed_size) if a else None, _size(b.uncompressed_size) if b else None),
    ]


def _print_layers(result: ImageDiff) -> None:
    counts = result.layer_counts()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    out.print(f"[bold]Layers[/] (matched by {result.matched_by}): {summary or 'none'}")
    rows = [["layer", "digest", "size", "uncompressed"]]
    rows += [_layer_row(change) for change in result.layers]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    marks = [" ", *(_MARKS[change.status] for change in result.layers)]
    for mark, row in zip(marks, rows, strict=True):
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.print(f"  {mark} {escape(cells.rstrip())}")
    out.print(f"  size as stored: {_delta(result.a.size, result.b.size)}")
    a_raw, b_raw = result.a.uncompressed_size, result.b.uncompressed_size
    out.print(f"  uncompressed: {_delta(a_raw, b_raw)}")


def print_diff(result: ImageDiff) -> None:
    out.print(_image_line("A", result.a))
    out.print(_image_line("B", result.b))
    _print_packages(result)
    _print_layers(result)
    if result.config_changes:
        out.print(f"[bold]Config[/]: {escape(', '.join(result.config_changes))}")
    out.print("the images differ" if result.differs else "the images are the same")


@click.command()
@click.argument("image_a", metavar="A")
@click.argument("image_b", metavar="B")
@json_option()
@click.option("--exit-code", "exit_code", is_flag=True, help="Exit with 1 when the images differ.")
@click.option("--engine", help="podman or docker, for references in the local store.")
@click.option(
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="For image indexes that list several platforms: the one to compare.",
)
@click.pass_context
def diff(
    ctx: click.Context,
    image_a: str,
    image_b: str,
    as_json: bool,
    exit_code: bool,
    engine: str | None,
    platform: str | None,
) -> None:
    """Compare image A with image B: Debian and Python packages added, removed or changed,
    and layers identical, changed, added or removed, with the size change.

    A and B are OCI layout directories (or build output directories), oci-archive or
    docker-archive tarballs, or references in the local podman/docker store.
    """
    from hardflow.imagediff import diff_images

    result = diff_images(image_a, image_b, engine=engine, platform=platform)
    if as_json:
        print_json(result.to_json())
    else:
        print_diff(result)
    if exit_code and result.differs:
        ctx.exit(1)
