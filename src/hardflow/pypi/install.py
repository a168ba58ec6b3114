"""Installing a wheel into an image tree, for the target interpreter (not the host's).

The PyPA ``installer`` library does the spreading (purelib/platlib, ``.data/scripts``,
``.data/data``, ``.data/headers``, console scripts, RECORD); around it we add what an image
builder needs: the wheel is checked before anything is written (member names that escape,
RECORD entries whose hash or size do not match), scripts get the target interpreter's shebang,
no bytecode is compiled (the target interpreter does that later, for reproducible ``.pyc``),
modes are normalised to 0644/0755 whatever the host umask, and the written paths are returned.

Every file is written through :mod:`hardflow.fsutil`'s confinement (below the image root, no
symlinked component, never over an existing file), besides installer's own lexical check of
each scheme path: a wheel cannot make the installer write anywhere else, whatever it names.
"""

from __future__ import annotations

import os
import posixpath
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.records import Hash, RecordEntry
from installer.sources import WheelFile
from installer.utils import Scheme, copyfileobj_with_hashing
from packaging.utils import canonicalize_name

from hardflow.errors import ArchiveError
from hardflow.fsutil import ConfinementError, open_confined

INSTALLER_NAME = b"hardflow\n"


@dataclass(frozen=True)
class InstalledWheel:
    name: str
    version: str
    files: tuple[str, ...]  # paths relative to the image root that were written, sorted


def check_member_names(wheel: Path, names: list[str]) -> None:
    """Reject archive members that are absolute, climb with ``..`` or are not plain paths."""
    for name in names:
        p = PurePosixPath(name)
        bad = (
            name.startswith("/")
            or "\\" in name
            or "\x00" in name
            or (len(name) > 1 and name[1] == ":")
            or ".." in p.parts
        )
        if bad:
            raise ArchiveError(
                f"wheel {wheel.name}: member {name!r} would be written outside its directory",
                hint="the wheel is malformed or malicious; do not use it",
            )


def check_member_types(wheel: Path, zf: zipfile.ZipFile) -> None:
    """Reject symlinks and other special files (installer would write them as plain files)."""
    for info in zf.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)  # 0 when the zip tool stored permission bits only
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(
                f"wheel {wheel.name}: member {info.filename!r} is not a regular file "
                f"(mode {stat.filemode(mode)})"
            )


@dataclass
class _ConfinedDestination(SchemeDictionaryDestination):
    """A scheme destination that writes only below ``root``, through the confined writer,
    and remembers every file it wrote."""

    root: Path = field(default_factory=Path)
    written: list[Path] = field(default_factory=list)

    def write_to_fs(
        self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        target = self._path_with_destdir(scheme, path)  # installer's lexical check first
        rel = os.path.relpath(target, self.root)  # "../..." when outside: refused below
        # a new file (O_EXCL): an existing one raises FileExistsError, as installer does
        with open_confined(self.root, rel, 0o755 if is_executable else 0o644) as out:
            digest, size = copyfileobj_with_hashing(stream, out, self.hash_algorithm)
        self.written.append(target)
        return RecordEntry(path, Hash(self.hash_algorithm, digest), size)


def _normalise_modes(root: Path, files: list[Path]) -> None:
    """0755 for executables and the directories leading to the files, 0644 for the rest."""
    dirs: set[Path] = set()
    for f in files:
        mode = f.stat().st_mode
        f.chmod(0o755 if mode & 0o111 else 0o644)
        parent = f.parent
        while parent != root and parent not in dirs and root in parent.parents:
            dirs.add(parent)
            parent = parent.parent
    for d in dirs:
        d.chmod(0o755)


def install_wheel(
    wheel: Path,
    root: Path,
    python_version: str,
    interpreter: str,
    site_packages: str = "usr/local/lib/python{v}/dist-packages",
    scripts_dir: str = "usr/local/bin",
    data_dir: str = "usr/local",
    headers_dir: str = "usr/local/include/python{v}/{name}",
) -> InstalledWheel:
    """Install ``wheel`` under ``root`` (the image tree) for ``interpreter`` on the target.

    Paths are relative to ``root``; ``{v}`` is ``python_version`` and ``{name}`` the
    distribution name. Scripts get ``#!{interpreter}``. Raises ArchiveError for a malformed or
    tampered wheel, before anything is written.
    """
    root = Path(os.path.abspath(root))
    try:
        with zipfile.ZipFile(wheel) as zf:
            check_member_names(wheel, zf.namelist())
            check_member_types(wheel, zf)
        with WheelFile.open(wheel) as source:
            source.validate_record(validate_contents=True)
            name, version = canonicalize_name(source.distribution), source.version

            def place(template: str) -> str:
                rel = template.format(v=python_version, name=name).strip("/")
                return str(root / rel)

            scheme = {
                "purelib": place(site_packages),
                "platlib": place(site_packages),
                "scripts": place(scripts_dir),
                "data": place(data_dir),
                "headers": place(headers_dir),
            }
            destination = _ConfinedDestination(
                scheme_dict=scheme,
                interpreter=interpreter,
                script_kind="posix",
                hash_algorithm="sha256",
                bytecode_optimization_levels=(),
                root=root,
            )
            root.mkdir(parents=True, exist_ok=True)  # checked: the confined writer starts here
            with warnings.catch_warnings():
                # installer skips (rightly) the __pycache__ files some wheels ship, e.g.
                # Flask-AppBuilder's cpython-38 .pyc, and warns on every build; the image's
                # own .pyc are compiled later, so the skip loses nothing worth a warning.
                warnings.filterwarnings(
                    "ignore", message=r"Skip installing .*__pycache__", category=RuntimeWarning
                )
                install(source, destination, additional_metadata={"INSTALLER": INSTALLER_NAME})
    except ConfinementError as exc:
        raise ArchiveError(
            f"wheel {wheel.name}: refusing to write /{exc.rel}: {exc.reason}",
            hint="the wheel is malformed or malicious; do not use it",
        ) from None
    except ArchiveError:
        raise
    except FileExistsError as exc:
        raise ArchiveError(
            f"wheel {wheel.name} would overwrite a file another package installed: {exc}",
            hint="two locked packages ship the same file; drop one of them",
        ) from None
    except OSError as exc:
        raise ArchiveError(f"cannot install wheel {wheel}: {exc.strerror or exc}") from None
    except (InstallerError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        # installer's RECORD validation error carries the list of problems in ``issues``.
        raise ArchiveError(f"wheel {wheel.name}: {_describe(exc)}") from None
    _normalise_modes(root, destination.written)
    files = sorted(
        {posixpath.normpath(p.relative_to(root).as_posix()) for p in destination.written}
    )
    return InstalledWheel(name=name, version=version, files=tuple(files))


def _describe(exc: BaseException) -> str:
    issues = getattr(exc, "issues", None)
    if isinstance(issues, list) and issues:
        return "; ".join(str(i) for i in issues[:5]) + (" …" if len(issues) > 5 else "")
    return str(exc) or type(exc).__name__
