"""Where a ``[[files]]`` entry lands in the image (merged /usr), and its ``link`` targets."""

from __future__ import annotations

from pathlib import PurePosixPath

from hardflow.errors import SpecError

# Top-level folders that are symlinks into /usr in every image (merged /usr; the Debian stage
# makes them): a file entry below one is written below /usr.
MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib64")


def image_dest(dest: str) -> str:
    """Where a ``[[files]]`` destination really is in the image: ``/bin/sh`` is ``/usr/bin/sh``.

    The build writes it there: a real ``bin/`` directory in an upper layer would replace the
    ``/bin`` symlink when the layers are stacked.
    """
    head, sep, rest = dest.lstrip("/").partition("/")
    return f"/usr/{head}/{rest}" if sep and head in MERGED_USR_LINKS else dest


_LINK_MAX = 1024  # far above any real target; Linux allows 4095


def check_link(key: str, dest: str, link: str) -> None:
    """A link target must be a plain path: no '..', no control characters, no trailing '/',
    and not the link itself. Relative targets are resolved from the link's folder. ``key``
    names the entry's 'link' key in errors."""

    def refuse(found: str) -> SpecError:
        return SpecError(
            f"{key}: expected a normalised path (absolute, or "
            f"relative to the folder of {dest}) without '..', control characters or a "
            f"trailing '/', at most {_LINK_MAX} characters, found {found}",
            hint='write the target as the image sees it, e.g. link = "bash" or '
            'link = "/usr/local/lib/hardflow/entrypoint.py"',
        )

    if len(link) > _LINK_MAX:
        raise refuse(f"a target of {len(link)} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in link):
        raise refuse(f"{link!r}")
    posix = PurePosixPath(link)
    if ".." in posix.parts or posix.as_posix() != link or link in (".", "/") or link[:2] == "//":
        raise refuse(f"{link!r}")
    where = PurePosixPath(image_dest(dest))
    target = PurePosixPath(image_dest(link)) if posix.is_absolute() else where.parent / posix
    if target == where:
        raise refuse(f"{link!r}, which points at {dest} itself")
