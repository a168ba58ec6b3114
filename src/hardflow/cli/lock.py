"""`hardflow lock`: pin the inputs of an image (the Debian closure and the Python set)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import click

from hardflow.cli.console import out, print_json
from hardflow.cli.options import json_option, lock_option, spec_option
from hardflow.cli.progress import reporter
from hardflow.lock.model import LockDiff
from hardflow.spec import resolve_spec_arg


def _print_diff(diff: LockDiff, moved_along: Collection[str] = ()) -> None:
    def note(name: str) -> str:
        return " (moved along with the update)" if name in moved_along else ""

    for name, version in diff.added:
        out.print(f"  [green]+ {name} {version}{note(name)}[/]")
    for name, version in diff.removed:
        out.print(f"  [red]- {name} {version}{note(name)}[/]")
    for name, old, new in diff.changed:
        out.print(f"  [yellow]~ {name} {old} → {new}{note(name)}[/]")


@click.command()
@spec_option
@lock_option
@click.option("--update", is_flag=True, help="Re-resolve everything to the newest versions.")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="NAME",
    help="With --update: move just this Debian package or Python distribution (repeatable) "
    "to its newest version, keeping every other pin; what it forces to move moves too.",
)
@json_option()
def lock(
    spec_arg: str | None,
    lock_arg: Path | None,
    update: bool,
    only: tuple[str, ...],
    as_json: bool,
) -> None:
    """Pin the Debian closure and the Python set (with hashes) into the lock file."""
    from hardflow.lock.resolve import make_lock

    if only and not update:
        raise click.UsageError("--only moves named entries of an existing lock: add --update")
    spec, lock_path = resolve_spec_arg(spec_arg)
    lock_path = lock_arg or lock_path
    with reporter(not as_json) as rep:
        outcome = make_lock(spec, lock_path, update=update, progress=rep, only=only)
    diff = outcome.diff
    arches = outcome.lock.architectures  # several platforms: what each installs
    platforms = {
        f"linux/{a}": (len(v.debs), len(v.wheels))
        for a in arches for v in [outcome.lock.for_architecture(a)]
    }  # fmt: skip
    if as_json:
        data: dict[str, object] = {
            "lock": str(outcome.path),
            "up_to_date": outcome.up_to_date,
            "debian_packages": len(outcome.lock.debs),
            "python_packages": len(outcome.lock.wheels),
            "added": [list(x) for x in diff.added],
            "removed": [list(x) for x in diff.removed],
            "upgraded": [list(x) for x in diff.changed],
            "only": list(outcome.only),
            "moved_along": list(outcome.moved_along),
        }
        if platforms:  # entries shared by the platforms are counted once above
            data["platforms"] = {p: {"debian_packages": d, "python_packages": w}
                                 for p, (d, w) in platforms.items()}  # fmt: skip
        print_json(data)
        return
    if outcome.up_to_date:
        out.print(f"{outcome.path}: up to date with {spec.source} (use --update to refresh)")
        return
    where = (
        f"Debian mirror from {outcome.mirrors}" if outcome.mirrors else "Debian pins kept as locked"
    )
    out.print(
        f"wrote {outcome.path}: {len(outcome.lock.debs)} Debian packages, "
        f"{len(outcome.lock.wheels)} Python packages ({where})"
    )
    for platform, (d, w) in platforms.items():
        out.print(f"  {platform}: {d} Debian packages, {w} Python packages")
    if outcome.only:
        out.print(f"  updated only: {', '.join(outcome.only)}")
    if diff.empty:
        out.print("  no version changed")
    _print_diff(diff, outcome.moved_along)
