"""The one error root. Every user-facing failure is a :class:`HardflowError`.

The CLI catches this type once (``cli.main``) and prints :meth:`diagnostics`; any other
exception is a bug and is reported as such.
"""

from __future__ import annotations


class HardflowError(Exception):
    """A failure the user can act on: what was expected, what was found, what to do."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        text = self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SpecError(HardflowError):
    """The image spec (TOML) is invalid."""


class LockError(HardflowError):
    """The lock file is missing, malformed or does not match its spec."""


class TrustError(HardflowError):
    """A signature or a hash did not verify. Nothing built from it may be written."""


class FetchError(HardflowError):
    """A download failed, or a locked file is no longer served."""


class ArchiveError(HardflowError):
    """An archive (.deb, wheel, tar) is malformed or tries to escape its root."""


class ResolveError(HardflowError):
    """The Debian closure or the Python set could not be resolved."""


class BuildError(HardflowError):
    """Assembling, compiling or writing the image failed."""


class LinkError(BuildError):
    """A shared object in the image needs a library (DT_NEEDED) the image does not have."""


class EngineError(HardflowError):
    """Podman or docker is missing or failed."""


class ImageError(HardflowError):
    """An image (OCI layout, index or docker-archive) is malformed, does not match its
    digests, or is unsafe to read."""
