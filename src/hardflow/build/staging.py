"""The staging tree every rootfs stage writes into, and the finished :class:`Stage` value.

A :class:`StageTree` is a directory on disk plus, for every path, the layer it belongs to and
its owner. Its content comes from untrusted archives (``.deb`` members, wheels), so every write
goes through :mod:`hardflow.fsutil`'s confinement: nothing is written outside the root or
through a symlink, whatever an earlier package left at a path. A package that asks for that
gets a :class:`~hardflow.fsutil.ConfinementError` (an ``ArchiveError``), which the stage that
unpacks it turns into a message naming the package and the member.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hardflow.build.layers import LayerSpec
from hardflow.errors import BuildError
from hardflow.fsutil import (
    chmod_confined,
    confined,
    lstat_confined,
    mkdirs_confined,
    remove_confined,
    symlink_confined,
    unlink_confined,
    write_file_confined,
)

STAGE_DIR = ".hardflow-stage"  # stages of the upper layers sit here inside the base tree
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class Stage:
    """A finished stage: a directory and the layers cut from it (paths relative to ``root``)."""

    root: Path
    owners: dict[str, tuple[int, int]]
    layers: tuple[LayerSpec, ...]
    setuid_cleared: tuple[str, ...]
    dropped_files: int
    pyc_compiled: int
    notes: tuple[str, ...] = field(default=())


class StageTree:
    """A stage's staging directory plus per-path owner and layer.

    Invariant: no path recorded in ``layer_of`` lies below a symlink or a file. Writes never
    go through a symlink, and a directory replaced by a file takes its recorded contents with
    it, so later passes (prune, the layer writer) never meet a recorded path whose parent has
    become a link.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layer_of: dict[str, str] = {}
        self.owners: dict[str, tuple[int, int]] = {}
        self.setuid_cleared: list[str] = []
        self.notes: list[str] = []
        self.dropped = 0

    @classmethod
    def fresh(cls, staging: Path) -> StageTree:
        """An empty tree at ``staging`` (whatever was there before is removed)."""
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return cls(staging.resolve())

    # -- reading ----------------------------------------------------------------------------

    def lstat(self, rel: str) -> os.stat_result | None:
        """What is at ``rel`` (a symlink itself, not its target); None when nothing is."""
        return lstat_confined(self.root, rel)

    def path(self, rel: str) -> Path:
        """``root/rel`` for reading, its parents checked to be real directories."""
        return confined(self.root, rel)

    def is_dir(self, rel: str) -> bool:
        """A real directory at ``rel`` (not a symlink to one)."""
        st = self.lstat(rel)
        return st is not None and stat.S_ISDIR(st.st_mode)

    # -- writing ----------------------------------------------------------------------------

    def _parents(self, rel: str, layer: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent:
            for made in mkdirs_confined(self.root, parent, 0o755):
                self.layer_of.setdefault(made, layer)

    def _mode(self, rel: str, mode: int) -> int:
        if mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISDIR(mode | stat.S_IFREG):
            self.setuid_cleared.append(rel)
        mode &= ~(stat.S_ISUID | stat.S_ISGID)
        if rel != "tmp":
            mode &= ~0o002
        return mode

    def _forget_below(self, rel: str) -> None:
        prefix = rel + "/"
        for table in (self.layer_of, self.owners):
            for gone in [k for k in table if k.startswith(prefix)]:
                del table[gone]

    def remove(self, rel: str) -> None:
        """Remove ``rel`` (a directory with its contents) from the disk and the records."""
        st = self.lstat(rel)
        if st is None:
            return
        remove_confined(self.root, rel)
        if stat.S_ISDIR(st.st_mode):
            self._forget_below(rel)
        self.layer_of.pop(rel, None)
        self.owners.pop(rel, None)

    def file(self, rel: str, data: bytes, mode: int, layer: str) -> None:
        self._parents(rel, layer)
        st = self.lstat(rel)
        if st is not None and stat.S_ISDIR(st.st_mode):
            remove_confined(self.root, rel)
            self._forget_below(rel)
        write_file_confined(self.root, rel, data, self._mode(rel, mode) & 0o7777, replace=True)
        self.layer_of[rel] = layer

    def symlink(self, rel: str, target: str, layer: str) -> None:
        self._parents(rel, layer)
        st = self.lstat(rel)
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                return  # a real directory wins over a compat symlink to it
            unlink_confined(self.root, rel)
        symlink_confined(self.root, rel, target)
        self.layer_of[rel] = layer

    def directory(
        self, rel: str, mode: int, layer: str, owner: tuple[int, int] | None = None
    ) -> None:
        if not rel:
            return
        self._parents(rel, layer)
        st = self.lstat(rel)
        if st is not None and stat.S_ISLNK(st.st_mode):
            return  # e.g. a package's lib/ dir lands on the merged-/usr symlink
        if st is None:
            mkdirs_confined(self.root, rel)
        chmod_confined(self.root, rel, self._mode(rel, mode) & 0o7777 if rel != "tmp" else 0o1777)
        self.layer_of.setdefault(rel, layer)
        if owner:
            self.owners[rel] = owner

    def register(self, rel: str, layer: str) -> None:
        self.layer_of[rel] = layer


def finish(tree: StageTree, order: Sequence[str], pyc_compiled: int) -> Stage:
    """Modes normalised and the tree split into its layers (in ``order``)."""
    _normalise_modes(tree)
    by_layer: dict[str, list[str]] = {name: [] for name in order}
    for rel, layer in tree.layer_of.items():
        if layer not in by_layer:
            raise BuildError(f"internal: path {rel!r} was given to unknown layer {layer!r}")
        by_layer[layer].append(rel)
    layers = tuple(
        LayerSpec(name=name, paths=tuple(sorted(paths)))
        for name, paths in by_layer.items()
        if paths
    )
    return Stage(
        root=tree.root,
        owners=dict(tree.owners),
        layers=layers,
        setuid_cleared=tuple(sorted(tree.setuid_cleared)),
        dropped_files=tree.dropped,
        pyc_compiled=pyc_compiled,
        notes=tuple(tree.notes),
    )


def _normalise_modes(tree: StageTree) -> None:
    """Files readable by all; nothing world-writable but /tmp; no set-id bits anywhere.

    ``os.walk`` never descends into a symlinked directory and symlinks are skipped, so every
    chmod lands on an entry of the tree itself."""
    for dirpath, dirnames, filenames in os.walk(tree.root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            rel = str(p.relative_to(tree.root))
            mode = stat.S_IMODE(st.st_mode)
            new = tree._mode(rel, mode) if rel != "tmp" else 0o1777
            if new != mode:
                os.chmod(p, new)
