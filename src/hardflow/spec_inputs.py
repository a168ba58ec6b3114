"""What a spec reads from disk: paths confined to its folder, pip requirements files, and the
DAG and plugin trees baked into the image.

Every path a spec names is resolved (symbolic links first) and must stay inside its root. Every
file is opened without blocking and must be a regular file of bounded size, so a hostile folder
(a FIFO, a huge file, a deep ``-r`` chain, a symlink out) gives a :class:`SpecError` naming the
file, never a hang, a traceback or a read outside the folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from hardflow.errors import SpecError

Refuse = Callable[[str], SpecError]  # "found ..." -> the error, worded by the caller


def confined(
    root: Path,
    name: str,
    refuse: Refuse,
    *,
    start: Path | None = None,
    allow_root: bool = False,
    shown: str | None = None,
) -> Path:
    """``name``, relative to ``start`` (default: ``root``), resolved: it must stay inside
    ``root`` (already resolved). Symbolic links are resolved before the check, so a link out
    of the folder is refused like a ``..`` path. ``shown``: how errors quote ``name``."""
    quoted = repr(name if shown is None else shown)
    if not name or "\0" in name:
        raise refuse(quoted)
    if Path(name).is_absolute():
        raise refuse(f"the absolute path {quoted}")
    try:
        target = ((start or root) / name).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a symlink loop, an unencodable name
        raise refuse(f"{quoted}, which cannot be resolved ({exc})") from None
    if (target == root and not allow_root) or not target.is_relative_to(root):
        raise refuse(f"{quoted}, which resolves to {target}, outside {root}")
    return target


def _open_regular(path: Path) -> int:
    """A read-only descriptor of ``path``, which must be a regular file (a FIFO would block)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(0, "not a regular file")
    return fd


def read_capped(path: Path, limit: int, fail: Refuse, too_big: str = "") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, else ``fail``."""
    try:
        fd = _open_regular(path)
    except OSError as exc:
        raise fail(f"a file that cannot be read ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        raise fail(f"a file that cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise fail(too_big or f"a file larger than {limit} bytes")
    return data


# --------------------------------------------------------------------------------------------
# pip requirements files: requirements, markers, --hash and -r; nothing that fetches elsewhere

REQUIREMENTS_MAX_BYTES = 1 << 20  # all the files of one requirements-file tree together
REQUIREMENTS_MAX_FILES = 64
REQUIREMENTS_MAX_DEPTH = 8  # nested -r
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_HASH = re.compile(r"sha256:([0-9a-fA-F]{64})")
_REFUSED_OPTIONS = {
    ("-e", "--editable"): "an editable install needs a source tree: build a wheel and put it "
    "in a [python] find-links folder",
    ("-i", "--index-url", "--extra-index-url", "--no-index", "--trusted-host"): "the package "
    "index comes from the host's configuration (pip.conf, UV_INDEX_URL), not from the spec",
    ("-f", "--find-links"): "name local wheel folders in the spec: [python] find-links",
    ("-c", "--constraint"): "write the pins into the requirements themselves",
}


@dataclass(frozen=True)
class RequirementsFile:
    """A requirements file and the files it includes, flattened in order."""

    requirements: tuple[str, ...]
    # canonical (PEP 503) name -> allowed "sha256:<hex>" digests, in the order written
    hashes: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Line:
    where: str  # file:line
    requirement: Requirement
    hashes: tuple[str, ...]


def read_requirements_file(root: Path, name: str, refuse: Refuse) -> RequirementsFile:
    """Parse the requirements file ``name`` (relative to ``root``, confined to it) and the
    files it includes with ``-r``. ``refuse`` words a bad ``name`` itself."""
    state = _ReqState(root)
    state.read(confined(root, name, refuse), (), lambda found: refuse(f"{name!r}: {found}"))
    lines = state.lines
    hashed = next((line for line in lines if line.hashes), None)
    if hashed is not None:
        for line in lines:
            if not line.hashes:
                raise SpecError(
                    f"{line.where}: expected --hash=sha256:<hex> on every requirement once one "
                    f"has it (pip's hash-checking mode; {hashed.where} has hashes), found "
                    f"none for {str(line.requirement)!r}",
                    hint="add the hashes of every distribution, e.g. with "
                    "`pip hash FILE.whl` or `uv pip compile --generate-hashes`",
                )
    requirements = tuple(dict.fromkeys(str(line.requirement) for line in lines))
    hashes: dict[str, tuple[str, ...]] = {}
    for line in lines:
        if line.hashes:
            key = canonicalize_name(line.requirement.name)
            hashes[key] = tuple(dict.fromkeys((*hashes.get(key, ()), *line.hashes)))
    return RequirementsFile(requirements, hashes)


class _ReqState:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines: list[_Line] = []
        self.files = 0
        self.size = 0

    def read(self, path: Path, stack: tuple[tuple[Path, str], ...], fail: Refuse) -> None:
        """``stack``: the including files (path, "file:line" of the -r) above this one."""
        self.files += 1
        if self.files > REQUIREMENTS_MAX_FILES:
            raise fail(f"more than {REQUIREMENTS_MAX_FILES} files read through -r")
        too_big = f"more than {REQUIREMENTS_MAX_BYTES >> 20} MiB of requirements (all files)"
        data = read_capped(path, REQUIREMENTS_MAX_BYTES - self.size, fail, too_big)
        self.size += len(data)
        for number, text in _logical_lines(_decode(path, data)):
            self._line(path, f"{path}:{number}", text, stack)

    def _line(self, path: Path, where: str, text: str, stack: tuple[tuple[Path, str], ...]) -> None:
        tokens = text.split()
        args = 0
        while args < len(tokens) and not tokens[args].startswith("-"):
            args += 1
        requirement_text = " ".join(tokens[:args])
        hashes: list[str] = []
        include = ""
        options = iter(tokens[args:])
        for option in options:
            name, eq, value = option.partition("=")
            if name in ("-r", "--requirement") or (option.startswith("-r") and name != "-r"):
                if name not in ("-r", "--requirement"):  # -rFILE
                    name, eq, value = "-r", "=", option[2:]
                include = value if eq else next(options, "")
                if not include or include.startswith("-"):
                    raise _refuse(where, "a file name after -r", f"{include or 'nothing'!r}")
            elif name == "--hash":
                value = value if eq else next(options, "")
                match = _HASH.fullmatch(value)
                if not match:
                    raise _refuse(where, "--hash=sha256:<64 hex digits>", f"--hash={value!r}")
                hashes.append("sha256:" + match[1].lower())
            else:
                raise _option_refused(where, option)
        if include:
            if requirement_text or hashes or len(tokens) > 2:
                raise _refuse(where, "-r FILE alone on its line", f"{text!r}")
            self._include(path, where, include, stack)
            return
        if not requirement_text:
            raise _refuse(where, "a requirement before the --hash options", f"{text!r}")
        requirement = _requirement(where, requirement_text)
        if hashes and not _pinned(requirement):
            raise _refuse(
                where,
                "a requirement pinned with == (pip's hash-checking mode: the hashes are of one "
                "version's files)",
                f"{str(requirement)!r}",
            )
        self.lines.append(_Line(where, requirement, tuple(dict.fromkeys(hashes))))

    def _include(
        self, path: Path, where: str, name: str, stack: tuple[tuple[Path, str], ...]
    ) -> None:
        def refuse(found: str) -> SpecError:
            return SpecError(
                f"{where}: expected -r to name a file inside the spec's folder {self.root}, "
                f"found {found}"
            )

        target = confined(self.root, name, refuse, start=path.parent)
        chain = [p for p, _ in stack] + [path]
        if target in chain:
            shown = " -> ".join(str(p) for p in [*chain[chain.index(target) :], target])
            raise SpecError(
                f"{where}: expected -r files that do not include themselves, "
                f"found the cycle {shown}"
            )
        if len(stack) >= REQUIREMENTS_MAX_DEPTH:
            raise _refuse(
                where,
                f"at most {REQUIREMENTS_MAX_DEPTH} nested -r files",
                f"-r {name!r} one level deeper",
            )
        self.read(
            target,
            (*stack, (path, where)),
            lambda found: SpecError(
                f"{where}: expected -r to name a requirements file, found {found} at {target}"
            ),
        )


def _refuse(where: str, expected: str, found: str) -> SpecError:
    return SpecError(f"{where}: expected {expected}, found {found}")


def _option_refused(where: str, option: str) -> SpecError:
    name = option.partition("=")[0]
    hint = next(
        (
            why
            for names, why in _REFUSED_OPTIONS.items()
            if name in names or any(option.startswith(n) for n in names if len(n) == 2)
        ),
        "only requirements, environment markers, --hash and -r FILE are read",
    )
    return SpecError(
        f"{where}: expected a requirement, --hash=sha256:<hex> or -r FILE, found the option "
        f"{option!r}",
        hint=hint,
    )


def _decode(path: Path, data: bytes) -> str:
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise SpecError(f"{path}:{line}: expected text, found a NUL byte")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            f"{path}:{line}: expected UTF-8 text, found the byte "
            f"{data[exc.start : exc.start + 1]!r}"
        ) from None


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each logical line: continuations joined, comments and
    blank lines dropped (pip's rules: a comment line ends a continuation)."""
    parts: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), 1):
        comment = bool(_COMMENT.match(line))
        if line.endswith("\\") and not comment:
            first = first or number
            parts.append(line[:-1])
            continue
        joined = "".join([*parts, " " + line if comment else line])
        start, parts, first = first or number, [], 0
        joined = _COMMENT.sub("", joined).strip()
        if joined:
            yield start, joined
    joined = _COMMENT.sub("", "".join(parts)).strip()
    if joined:
        yield first, joined


def _requirement(where: str, text: str) -> Requirement:
    expected = "a requirement (PEP 508: a name, optional extras, versions and markers)"
    if "://" in text or re.match(r"[./~\\]|[A-Za-z]:[\\/]", text) or text.endswith(_ARCHIVES):
        raise SpecError(
            f"{where}: expected {expected}, found the URL or local path {text!r}",
            hint="build a wheel and put it in a [python] find-links folder",
        )
    problem = requirement_problem(text)
    if problem:
        raise _refuse(where, expected, f"{text!r} ({problem})")
    return Requirement(text)


def requirement_problem(text: str) -> str:
    """Why ``text`` is not a PEP 508 requirement, or "" when it is one."""
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        return str(exc).splitlines()[0]
    return ""


def _pinned(requirement: Requirement) -> bool:
    specifiers = list(requirement.specifier)
    return (
        len(specifiers) == 1
        and specifiers[0].operator in ("==", "===")
        and not specifiers[0].version.endswith(".*")
    )


# --------------------------------------------------------------------------------------------
# the DAG and plugin trees

BAKED_MAX_ENTRIES = 20_000
BAKED_MAX_BYTES = 256 << 20
_SKIPPED_DIRS = frozenset({"__pycache__", ".git"})


@dataclass(frozen=True)
class BakedFile:
    """One entry of a baked folder: a regular file or a directory."""

    rel: str  # POSIX path relative to the folder
    path: Path
    mode: int  # 0o755 for directories and files with any exec bit, else 0o644
    is_dir: bool


def baked_files(folder: str) -> tuple[BakedFile, ...]:
    """What of ``folder`` goes into the image: its regular files and directories, parents
    first, sorted. ``__pycache__``, ``*.pyc`` and ``.git`` are left out; other dotfiles
    (``.airflowignore``) are kept. A symbolic link, device, FIFO, socket or unreadable entry
    is refused, and so is a tree over :data:`BAKED_MAX_ENTRIES` entries or
    :data:`BAKED_MAX_BYTES` bytes."""
    root = Path(folder)
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            raise SpecError(f"{root}: expected a folder to bake into the image, found a file")
    except OSError as exc:
        raise SpecError(
            f"{root}: expected a folder to bake into the image, found none ({exc.strerror or exc})"
        ) from None
    found: list[BakedFile] = []
    total = 0
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    if entry.name in _SKIPPED_DIRS:
                        continue
                    found.append(BakedFile(rel, Path(entry.path), 0o755, True))
                    pending.append((Path(entry.path), rel + "/"))
                elif stat.S_ISREG(mode):
                    if entry.name.endswith(".pyc") or entry.name == ".git":
                        continue
                    os.close(_open_regular(Path(entry.path)))  # readable, still a file
                    total += entry.stat(follow_symlinks=False).st_size
                    found.append(
                        BakedFile(rel, Path(entry.path), 0o755 if mode & 0o111 else 0o644, False)
                    )
                else:
                    raise SpecError(
                        f"{entry.path}: expected a regular file or a folder to bake into the "
                        f"image, found a {_kind(mode)}",
                        hint="copy the file it points to into the folder instead"
                        if stat.S_ISLNK(mode)
                        else None,
                    )
                _check_caps(root, len(found), total)
        except OSError as exc:
            name = exc.filename if exc.filename is not None else directory
            raise SpecError(
                f"{name}: expected a readable file or folder to bake into the "
                f"image, found {exc.strerror or exc}"
            ) from None
    return tuple(sorted(found, key=lambda b: b.rel.split("/")))


def _check_caps(root: Path, entries: int, total: int) -> None:
    if entries > BAKED_MAX_ENTRIES:
        raise SpecError(
            f"{root}: expected at most {BAKED_MAX_ENTRIES} files and folders to bake into the "
            f"image, found more"
        )
    if total > BAKED_MAX_BYTES:
        raise SpecError(
            f"{root}: expected at most {BAKED_MAX_BYTES >> 20} MiB of files to bake into the "
            f"image, found more"
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return f"special file (mode {mode:o})"


def tree_fingerprint(folder: str) -> list[dict[str, object]]:
    """(rel, mode, sha256 of the content) of every baked entry: what the image's top layer
    holds, independent of where the folder is on the build host."""
    result: list[dict[str, object]] = []
    for baked in baked_files(folder):
        if baked.is_dir:
            result.append({"rel": baked.rel, "mode": baked.mode, "dir": True})
            continue
        digest = hashlib.sha256()
        try:
            with os.fdopen(_open_regular(baked.path), "rb") as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise SpecError(
                f"{baked.path}: expected a readable file to bake into the image, "
                f"found {exc.strerror or exc}"
            ) from None
        result.append({"rel": baked.rel, "mode": baked.mode, "sha256": digest.hexdigest()})
    return result
