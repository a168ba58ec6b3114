"""File-system helpers every stage shares: atomic writes (never half-written output) and path
confinement (writing only below a root, never through a symlink).

Every writer of a tree built from untrusted input (the staging trees of the rootfs stages, the
wheel installer, layer extraction, the layer cache) goes through the confinement functions
below, so there is one mechanism to get right and to test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from hardflow.errors import ArchiveError


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


# ---------------------------------------------------------------------------------------------
# Path confinement
#
# Each function walks its path one component at a time from a descriptor of the root, opening
# every directory with O_NOFOLLOW: a component that is a symlink (or not a directory) stops the
# walk, so nothing is created, replaced, changed or removed through a symlink, wherever the
# symlink points, and the lexical check keeps ``..`` and absolute paths out. A symlink that is
# the *final* component is never followed either: it is replaced or removed itself.
# Symlinks with absolute targets may be created: inside an image they resolve against the
# image's root at run time; the danger is only following them on the host while writing.
#
# The root itself is trusted (the caller chose it) and may be reached through symlinks. The
# threat is the content of an archive, not a process racing the build on the same tree, so
# the few checks that need a look before the act (chmod) are not race-free against the latter.

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class ConfinementError(ArchiveError):
    """A path below a root cannot be used safely: it is absolute, climbs with ``..``, holds a
    NUL byte, names the root itself, or passes through a symlink or a non-directory."""

    def __init__(self, root: Path, rel: str, reason: str) -> None:
        super().__init__(
            f"{root}: refusing to write {rel!r}: {reason}",
            hint="the archive or input that named this path is malformed or malicious",
        )
        self.root = root
        self.rel = rel
        self.reason = reason


def confined_parts(root: Path, rel: str) -> tuple[str, ...]:
    """The components of ``rel`` ("" and "." dropped), checked lexically.

    ``..`` is refused even where it would stay below the root: no honest input needs it, and
    a rule without exceptions is easier to trust.
    """
    if not isinstance(rel, str):
        raise ConfinementError(root, repr(rel), f"expected a path string, found {type(rel)}")
    if "\0" in rel:
        raise ConfinementError(root, rel, "the path contains a NUL byte")
    if rel.startswith("/"):
        raise ConfinementError(root, rel, "the path is absolute")
    parts = tuple(p for p in rel.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ConfinementError(root, rel, "the path has a '..' component")
    return parts


def _refusal(dir_fd: int, name: str, shown: str) -> str:
    """Why ``name`` (in ``dir_fd``) cannot be walked into."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        return f"'{shown}' cannot be opened: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return f"'{shown}' is a symlink (nothing is written through a symlink)"
    return f"'{shown}' is not a directory"


def _make(fd: int, part: str, mode: int, root: Path, rel: str, shown: str) -> int:
    """Make the directory ``part`` in ``fd`` with exactly ``mode``; its descriptor."""
    try:
        os.mkdir(part, 0o700, dir_fd=fd)
        nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError:
        raise ConfinementError(root, rel, _refusal(fd, part, shown)) from None
    os.fchmod(nfd, mode)  # mkdir's mode is filtered by the umask; this is not
    return nfd


def _walk(
    root: Path,
    rel: str,
    parts: Sequence[str],
    create: int | None,
    created: list[str] | None = None,
) -> int | None:
    """A descriptor of the directory ``root/parts``, walked without following symlinks.

    A missing component is made with mode ``create`` (exactly: the umask does not apply) and
    recorded in ``created``; with ``create`` None a missing component gives None instead.
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if create is None:
            return None  # nothing below a missing root exists
        root.mkdir(parents=True, exist_ok=True)  # the root is the caller's: no check needed
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            shown = "/".join(parts[: i + 1])
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if create is None:
                    os.close(fd)
                    return None
                nfd = _make(fd, part, create, root, rel, shown)
                if created is not None:
                    created.append(shown)
            except OSError:
                raise ConfinementError(root, rel, _refusal(fd, part, shown)) from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _exists(dir_fd: int, name: str) -> bool:
    """Whether ``name`` is in ``dir_fd`` (a dangling symlink is)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def _parent(root: Path, rel: str, create: int | None) -> Iterator[tuple[int | None, str]]:
    """(descriptor of the parent directory or None when it is missing, final name)."""
    parts = confined_parts(root, rel)
    if not parts:
        raise ConfinementError(root, rel, "the path names the root itself")
    fd = _walk(root, rel, parts[:-1], create)
    try:
        yield fd, parts[-1]
    finally:
        if fd is not None:
            os.close(fd)


def confined(root: Path, rel: str) -> Path:
    """``root/rel``, after checking that ``rel`` stays below ``root`` lexically and that no
    existing parent component is a symlink or a non-directory (for reads and tests of what is
    there; the final component is returned as is, so use ``lstat``-style checks on it)."""
    with _parent(root, rel, None):
        pass
    return root.joinpath(*confined_parts(root, rel))


def lstat_confined(root: Path, rel: str) -> os.stat_result | None:
    """The ``lstat`` of ``root/rel`` (a symlink is not followed), or None when it is missing."""
    with _parent(root, rel, None) as (fd, name):
        if fd is None:
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None


def mkdirs_confined(root: Path, rel: str, mode: int = 0o755) -> list[str]:
    """Make the directory ``root/rel`` and its missing parents (each with ``mode``).

    Returns the directories made, relative to ``root``, parents first. An existing component
    that is a symlink or not a directory raises :class:`ConfinementError`.
    """
    created: list[str] = []
    fd = _walk(root, rel, confined_parts(root, rel), mode, created)
    if fd is not None:
        os.close(fd)
    return created


def _clear_for(fd: int, name: str, root: Path, rel: str) -> None:
    """Remove the non-directory ``name`` (a symlink is removed, not followed)."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise ConfinementError(root, rel, f"'{rel}' is a directory")
    os.unlink(name, dir_fd=fd)


@contextlib.contextmanager
def open_confined(
    root: Path, rel: str, mode: int = 0o644, *, replace: bool = False
) -> Iterator[BinaryIO]:
    """A new file at ``root/rel`` to write to, made with exactly ``mode`` when the block ends.

    Missing parent directories are made (0755). An existing file or symlink is replaced when
    ``replace`` is set, else :class:`FileExistsError` is raised; an existing directory is never
    replaced. The file is created with ``O_EXCL | O_NOFOLLOW``, so it is always a new inode.
    """
    with _parent(root, rel, 0o755) as (fd, name):
        assert fd is not None  # parents are made
        if replace:
            _clear_for(fd, name, root, rel)
        try:
            out = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=fd)
        except IsADirectoryError:
            raise ConfinementError(root, rel, f"'{rel}' is a directory") from None
        try:
            with os.fdopen(out, "wb") as fh:
                yield fh
                fh.flush()
                os.fchmod(fh.fileno(), mode)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=fd)
            raise


def write_file_confined(
    root: Path, rel: str, data: bytes, mode: int = 0o644, *, replace: bool = True
) -> None:
    """Write ``data`` as a new file ``root/rel`` (see :func:`open_confined`)."""
    with open_confined(root, rel, mode, replace=replace) as fh:
        fh.write(data)


def symlink_confined(root: Path, rel: str, target: str, *, replace: bool = False) -> None:
    """Make the symlink ``root/rel -> target``. The target is stored as given (it may be
    absolute: it is resolved inside the image, never here)."""
    if not target or "\0" in target:
        raise ConfinementError(root, rel, f"symlink target {target!r} is empty or holds NUL")
    with _parent(root, rel, 0o755) as (fd, name):
        assert fd is not None
        if replace:
            _clear_for(fd, name, root, rel)
        os.symlink(target, name, dir_fd=fd)


def link_confined(root: Path, rel: str, existing: str, *, replace: bool = False) -> None:
    """Make ``root/rel`` a hard link to the regular file ``root/existing``."""
    if confined_parts(root, rel) == confined_parts(root, existing):
        return  # already itself
    with _parent(root, existing, None) as (src_fd, src_name):
        try:
            st = None if src_fd is None else os.stat(src_name, dir_fd=src_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if src_fd is None or st is None or not stat.S_ISREG(st.st_mode):
            raise ConfinementError(root, rel, f"link target '{existing}' is not a regular file")
        with _parent(root, rel, 0o755) as (fd, name):
            assert fd is not None
            if replace:
                _clear_for(fd, name, root, rel)
            os.link(src_name, name, src_dir_fd=src_fd, dst_dir_fd=fd, follow_symlinks=False)


def chmod_confined(root: Path, rel: str, mode: int) -> None:
    """Set the mode of ``root/rel``; a symlink there is refused, never followed."""
    with _parent(root, rel, None) as (fd, name):
        st = None if fd is None or not _exists(fd, name) else os.stat(
            name, dir_fd=fd, follow_symlinks=False
        )
        if fd is None or st is None:
            raise ConfinementError(root, rel, "the path does not exist")
        if stat.S_ISLNK(st.st_mode):
            raise ConfinementError(root, rel, f"'{rel}' is a symlink")
        os.chmod(name, mode, dir_fd=fd)


def unlink_confined(root: Path, rel: str) -> bool:
    """Remove the file or symlink ``root/rel`` (not what a symlink points to); False when it
    is missing. A directory is refused (see :func:`remove_confined`)."""
    with _parent(root, rel, None) as (fd, name):
        if fd is None or not _exists(fd, name):
            return False
        _clear_for(fd, name, root, rel)
        return True


def remove_confined(root: Path, rel: str) -> bool:
    """Remove whatever is at ``root/rel``, a directory with its contents (shutil's
    descriptor-based rmtree, which never follows symlinks); False when it is missing."""
    with _parent(root, rel, None) as (fd, name):
        if fd is None:
            return False
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
        return True
