"""Build an embedded spec's image and load it into podman unless podman has this very build.

The ``loaded_image`` fixture (``tests/conftest.py``) wraps it, so whichever test asks first
builds the image once per session.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from hardflow.build.pipeline import BuildOptions, build
from hardflow.contract import local_reference
from hardflow.lock.fetch import Cache
from hardflow.lock.model import read_lock
from hardflow.run import engine as eng
from hardflow.spec import resolve_spec_arg

LoadedImage = Callable[[str], str]
"""The ``loaded_image`` fixture: an embedded spec's name -> its image reference in podman."""

# The label a build sets to its spec's checksum (build/pipeline.py).
REVISION_LABEL = "org.opencontainers.image.revision"


def loaded_revision(ref: str) -> str:
    done = subprocess.run(
        ["podman", "image", "inspect", "--format", f'{{{{index .Labels "{REVISION_LABEL}"}}}}',
         ref],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else ""


def ensure_loaded(engine: eng.Engine, spec_name: str, work: Path) -> str:
    """The image reference of ``spec_name``, built into ``work`` and loaded when podman lacks
    it or holds a build of another spec revision."""
    spec, lock_path = resolve_spec_arg(spec_name)
    ref = local_reference(spec.reference)
    if loaded_revision(ref) != spec.checksum():
        result = build(spec, read_lock(lock_path), lock_path, BuildOptions(work / "out", Cache()))
        assert result.image.archive_path is not None
        eng.load_archive(engine, result.image.archive_path)
    assert loaded_revision(ref) == spec.checksum(), f"{ref} was not loaded"
    return ref
