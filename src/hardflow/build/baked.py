"""The ``baked`` stage: the spec's DAG and plugin folders, in the image's top layer.

``[image] dags`` and ``[image] plugins`` name folders on the build host. Their files go to
``$AIRFLOW_HOME/dags`` and ``$AIRFLOW_HOME/plugins`` (the spec's ``home``) in one layer of
their own, the last one, so that editing a DAG changes that layer alone: every other layer is
taken from the layer cache with the same digest, and only the config and manifest follow.

The layer:

* every baked file and directory is owned by root:0; files keep the mode
  :func:`hardflow.spec.baked_files` gives them (0644, or 0755 when executable), directories
  are 0755. The ``dags`` and ``plugins`` directories themselves become root:0 0755 too: the
  code in the image cannot be changed by the user it runs as, whatever its UID;
* ``AIRFLOW_HOME`` and its parents are repeated exactly as the ``hardflow`` layer has them
  (same mode and owner), so stacking the layer changes nothing above the baked folders;
* no bytecode is compiled: the stage needs no lower layer, so a rebuild after a DAG edit
  unpacks nothing (Airflow imports DAG files itself; the image does not write ``.pyc``).

A baked folder *replaces* that folder of the image: ``[[files]]`` entries below it (the
default spec's example DAG) are left out of the ``hardflow`` layer, with a note. The DAG
folder in the image is then exactly the folder that was checked. The ``hardflow`` layer is
built from :func:`hardflow_view` of the spec, which does not depend on where the folders are
or what they hold, so it stays cached while the DAGs change.

Every file is read once, through ``O_NOFOLLOW`` and ``O_NONBLOCK``, and must be a regular
file: a symlink, FIFO or device swapped in after the folder was listed is refused, never
followed or waited on. The stage key is computed from the bytes that were read, and those
same bytes are written, so a file changed during the build cannot make a layer that does not
match its key.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from hardflow.build.plan import BAKED_LAYER
from hardflow.build.staging import Stage, StageTree, finish
from hardflow.errors import BuildError
from hardflow.fsutil import ConfinementError, confined
from hardflow.spec import ImageSpec, baked_files, image_dest

BAKED_KINDS = ("dags", "plugins")  # the ``[image]`` keys, and the folders below AIRFLOW_HOME
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class BakedEntry:
    """One file or directory of a baked folder, as read."""

    rel: str  # relative to the folder, POSIX separators
    mode: int
    is_dir: bool
    data: bytes = b""

    @property
    def sha256(self) -> str:
        return "" if self.is_dir else hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class BakedFolder:
    """A baked folder: where it comes from, where it goes, what it holds."""

    kind: str  # "dags" or "plugins"
    source: Path  # on the build host
    dest: str  # in the image, relative to its root ("opt/airflow/dags")
    entries: tuple[BakedEntry, ...]


def image_folder(spec: ImageSpec, kind: str) -> str:
    """Where the ``kind`` folder is in the image, relative to its root."""
    return f"{spec.home.strip('/')}/{kind}"


def _read_regular(folder: Path, rel: str, kind: str) -> bytes:
    where = f"[image] {kind} file {rel!r} ({folder / rel})"
    try:
        path = confined(folder, rel)
        fd = os.open(path, _READ_FLAGS)
    except ConfinementError as exc:
        raise BuildError(f"{where}: cannot be read: {exc.reason}") from None
    except OSError as exc:
        raise BuildError(
            f"{where}: cannot be read: {exc.strerror or exc}",
            hint="a baked folder holds regular files and folders only (no symbolic links)",
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BuildError(
                f"{where}: expected a regular file, found mode {st.st_mode:o}",
                hint="device nodes, FIFOs and sockets do not belong in an image",
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def collect(spec: ImageSpec) -> tuple[BakedFolder, ...]:
    """The spec's baked folders (``[image] dags`` then ``plugins``), every file read."""
    folders: list[BakedFolder] = []
    for kind in BAKED_KINDS:
        source = getattr(spec, kind)
        if not source:
            continue
        root = Path(source)
        entries: list[BakedEntry] = []
        for item in baked_files(source):
            rel = PurePosixPath(item.rel).as_posix()
            if rel in ("", "."):
                continue
            if item.is_dir:
                entries.append(BakedEntry(rel, 0o755, True))
            else:
                entries.append(BakedEntry(rel, item.mode, False, _read_regular(root, rel, kind)))
        folders.append(BakedFolder(kind, root, image_folder(spec, kind), tuple(entries)))
    return tuple(folders)


def content_document(folders: tuple[BakedFolder, ...]) -> list[Any]:
    """What the baked layer holds, as canonical JSON data (for the stage key and the label)."""
    return [
        [f.kind, f.dest, [[e.rel, e.mode, e.is_dir, e.sha256] for e in f.entries]] for f in folders
    ]


def stage_parts(spec: ImageSpec, folders: tuple[BakedFolder, ...]) -> dict[str, Any]:
    """The inputs of the baked stage, for its layer cache key."""
    return {
        "stage": BAKED_LAYER,
        "home": [spec.home, spec.uid, spec.gid],
        "folders": content_document(folders),
    }


def _below(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


def hardflow_view(spec: ImageSpec) -> tuple[ImageSpec, tuple[str, ...]]:
    """The spec the ``hardflow`` stage is built from, and the ``[[files]]`` left out of it.

    ``dags`` and ``plugins`` are cleared (that layer does not depend on the folders) and the
    ``[[files]]`` entries below a baked folder are dropped: the baked folder replaces them.
    """
    baked = ["/" + image_folder(spec, kind) for kind in BAKED_KINDS if getattr(spec, kind)]
    kept, dropped = [], []
    for f in spec.files:
        dest = image_dest(f.dest)
        if any(_below(dest, folder) for folder in baked):
            dropped.append(f.dest)
        else:
            kept.append(f)
    return replace(spec, files=tuple(kept), dags="", plugins=""), tuple(dropped)


def dropped_note(spec: ImageSpec, dropped: tuple[str, ...]) -> str:
    return (
        f"the baked folders replace {spec.home}/dags and {spec.home}/plugins: [[files]] "
        f"{', '.join(dropped)} left out of the image"
    )


def assemble_baked(spec: ImageSpec, folders: tuple[BakedFolder, ...], staging: Path) -> Stage:
    """The ``baked`` layer's tree (see the module documentation) as a finished stage."""
    tree = StageTree.fresh(staging)
    home = spec.home.strip("/")
    # AIRFLOW_HOME exactly as the hardflow stage makes it (hardflow_stage._airflow_home)
    tree.directory(home, 0o775, BAKED_LAYER, (spec.uid, spec.gid))
    for folder in folders:
        tree.directory(folder.dest, 0o755, BAKED_LAYER)  # root:0, unlike the home
        for entry in folder.entries:
            rel = f"{folder.dest}/{entry.rel}"
            try:
                if entry.is_dir:
                    tree.directory(rel, entry.mode, BAKED_LAYER)
                else:
                    tree.file(rel, entry.data, entry.mode, BAKED_LAYER)
            except ConfinementError as exc:
                raise BuildError(
                    f"[image] {folder.kind} entry {entry.rel!r} ({folder.source}) cannot be "
                    f"written to /{rel}: {exc.reason}"
                ) from None
    return finish(tree, (BAKED_LAYER,), 0)
