"""A wheel stage: one wheel layer's tree, its wheels installed on an empty root.

A wheel stage sees no other layer's files, so its bytes depend on its own wheels alone (and a
version change rebuilds one small layer). The installer writes through
:mod:`hardflow.fsutil`'s confinement (see :mod:`hardflow.pypi.install`).
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hardflow.build.prune import prune
from hardflow.build.staging import ProgressFn, StageTree
from hardflow.errors import ArchiveError
from hardflow.fsutil import ConfinementError, symlink_confined
from hardflow.lock.model import LockedWheel
from hardflow.pypi.install import install_wheel
from hardflow.spec import ImageSpec

_TEST_DIRS = frozenset({"test", "tests", "testing", "testdata", "test_data"})


@dataclass(frozen=True)
class WheelInput:
    locked: LockedWheel
    path: Path


def assemble_wheels(
    spec: ImageSpec,
    layer: str,
    wheels: Sequence[WheelInput],
    staging: Path,
    links: Path,
    progress: ProgressFn | None = None,
) -> StageTree:
    """One wheel layer's tree: its wheels installed on an empty root, then the key and prune
    passes. It sees no other layer's files, so its bytes depend on its own wheels alone."""
    tree = StageTree.fresh(staging)
    # The cache names files by hash; wheel installers need the real file name (it carries
    # the name, version and tags), so each wheel is linked under its name first. The lock's
    # schema makes the name a plain wheel file name; the confined link is the second guard.
    links.mkdir(parents=True, exist_ok=True)
    for whl in sorted(wheels, key=lambda w: w.locked.name):
        try:
            symlink_confined(links, whl.locked.filename, str(whl.path.resolve()), replace=True)
        except ConfinementError as exc:
            raise ArchiveError(
                f"locked wheel {whl.locked.name}: file name {whl.locked.filename!r}: "
                f"{exc.reason}"
            ) from None
        link = links / whl.locked.filename
        installed = install_wheel(
            link, tree.root, spec.python.version, spec.python.interpreter_path
        )
        for rel in installed.files:
            tree.register(rel, layer)
        if progress:
            progress("install wheels", 1, 0)
    tree.notes.extend(
        f"removed private key shipped as test data: /{k}"
        for k in _drop_test_private_keys(tree, spec)
    )
    pruned = prune(tree.root, spec, tree.layer_of)
    tree.dropped += sum(pruned.removed.values())
    return tree


def _drop_test_private_keys(tree: StageTree, spec: ImageSpec) -> list[str]:
    """Remove private keys that packages ship as test data (e.g. a web framework's TLS test
    key). The image contract allows no secret in any layer, and these protect nothing; the
    files live in test directories that no run-time import reads."""
    site_rel = f"usr/local/lib/python{spec.python.version}"
    removed: list[str] = []
    if not tree.is_dir(site_rel):
        return removed
    site = tree.path(site_rel)
    for path in sorted(site.rglob("*")):  # rglob does not descend into symlinked directories
        if not _TEST_DIRS & set(path.relative_to(site).parts[:-1]):
            continue
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > 256 * 1024:
            continue
        if b"PRIVATE KEY-----" in path.read_bytes():
            rel = str(path.relative_to(tree.root))
            tree.remove(rel)
            removed.append(rel)
    return removed
