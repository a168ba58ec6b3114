"""File-system helpers every stage shares: atomic writes (never half-written output).

Path confinement (writing only below a root, never through a symlink) lives here too, so
that every writer of untrusted trees uses the one mechanism.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A file handle whose content appears at ``path`` only if the block finishes.

    Written to a temporary file in the same directory, flushed to disk, then renamed over
    ``path``; on any exception the temporary file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename: never half-written."""
    with atomic_output(path, mode) as fh:
        fh.write(data)
