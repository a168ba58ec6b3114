"""The image spec: frozen dataclasses, strict TOML loading, the embedded default specs.

Validation is hand-written on purpose: the messages must name the file, the dotted key, what
was expected and what was found, and unknown keys must be rejected (as apko does). A schema
library would give generic messages for the same amount of code.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from hardflow.errors import SpecError

SPECS_PACKAGE = "hardflow.specs"
DEFAULT_SPEC_NAME = "default"


@dataclass(frozen=True)
class DebianSpec:
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)
    architecture: str = "amd64"
    packages: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    # An explicit mirror (base URL of the archive) and security mirror; empty = host's apt sources
    # or the HARDFLOW_DEBIAN_MIRROR / HARDFLOW_DEBIAN_SECURITY_MIRROR environment.
    mirror: str = ""
    security_mirror: str = ""
    keyring: str = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class PythonSpec:
    version: str
    requirements: tuple[str, ...] = ()
    # Platform tag family the wheels must fit: glibc of the Debian release the image uses.
    glibc: str = "2.41"
    interpreter: str = ""
    # Distributions removed from the resolution although a requirement depends on them (uv
    # override with a never-true marker): for a dependency that is declared but never imported
    # and ships no wheel (Airflow 2's python-nvd3).
    excludes: tuple[str, ...] = ()
    # `[python] requirements-file` as written (its requirements are merged into `requirements`
    # when the spec is parsed); "" when the spec has none.
    requirements_file: str = ""
    # Hashes a requirements file pins: canonical (PEP 503) name -> allowed "sha256:<hex>"
    # digests; the lock fails when a locked wheel of that name has none of them.
    hashes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # `[python] find-links`: absolute, resolved folders of local wheels (each inside the
    # folder of the spec that names it); the lock hashes the wheels it takes from them.
    find_links: tuple[str, ...] = ()

    @property
    def interpreter_path(self) -> str:
        return self.interpreter or f"/usr/bin/python{self.version}"


@dataclass(frozen=True)
class ExtraFile:
    dest: str
    source: str = ""  # path relative to the spec file, or "hardflow:NAME" for a packaged file
    content: str = ""
    mode: int = 0o644
    # A symbolic link's target instead of a file (the chart's /entrypoint, sh -> bash); the
    # target is resolved inside the image, never on the build host.
    link: str = ""


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    debian: DebianSpec
    python: PythonSpec
    user: str = "airflow"
    uid: int = 50000
    gid: int = 0
    home: str = "/opt/airflow"
    workdir: str = "/opt/airflow"
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    stop_signal: str = "SIGTERM"
    healthcheck: tuple[str, ...] = ()
    files: tuple[ExtraFile, ...] = ()
    # `[image] dags` / `[image] plugins`: absolute, resolved folders (inside the spec's folder)
    # baked into AIRFLOW_HOME/dags and AIRFLOW_HOME/plugins in the image's top layer; "" = none.
    dags: str = ""
    plugins: str = ""
    source: str = ""  # where the spec was loaded from (not part of the checksum)
    base_dir: str = ""  # directory relative sources are read from (not part of the checksum)

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"

    def lock_checksum(self) -> str:
        """sha256 over the fields a lock is resolved from (Debian and Python inputs).

        Changing image metadata or extra files does not invalidate a lock; changing a package,
        suite, exclude, requirement or the target Python does.
        """
        data = {"debian": asdict(self.debian), "python": asdict(self.python)}
        for key in ("mirror", "security_mirror", "keyring"):  # where from, not what
            data["debian"].pop(key)
        _drop_unset_python_keys(data["python"])
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def checksum(self) -> str:
        """sha256 over the canonical JSON of every field that shapes the image."""
        data = asdict(self)
        data.pop("source")
        data.pop("base_dir")
        _drop_unset_python_keys(data["python"])
        for key in ("dags", "plugins"):  # added later: left out while unset
            if not data[key]:
                data.pop(key)
        data["files"] = [_file_fingerprint(self, f) for f in self.files]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_jsonable)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _drop_unset_python_keys(python: dict[str, Any]) -> None:
    """Keys added after the first locks are left out while unset: older checksums stay valid."""
    for key in ("excludes", "requirements_file", "hashes", "find_links"):
        if not python.get(key):
            python.pop(key, None)


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(type(value).__name__)


def _file_fingerprint(spec: ImageSpec, f: ExtraFile) -> dict[str, object]:
    if f.link:  # a link has no bytes and no mode of its own; files keep their old fingerprint
        return {"dest": f.dest, "link": f.link}
    return {
        "dest": f.dest,
        "mode": f.mode,
        "sha256": hashlib.sha256(read_extra_file(spec, f)).hexdigest(),
    }


PACKAGE_PREFIX = "hardflow:"
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


def _files_key(origin: str, index: int, key: str) -> str:
    return f"{origin}: [[files]] entry {index} (files[{index}]), key '{key}'"


def _package_root() -> Path:
    return Path(str(resources.files("hardflow"))).resolve()


def source_path(origin: str, base_dir: str, index: int, source: str) -> Path:
    """Where the ``source`` of ``[[files]]`` entry ``index`` is read from, once it is known to
    stay inside its root: the spec's folder, or the hardflow package for ``hardflow:NAME``.

    Symlinks are resolved before the check, so a link pointing out of the folder is refused
    like a ``..`` path. Raises :class:`SpecError` naming the file, the entry and the key.
    """
    packaged = source.startswith(PACKAGE_PREFIX)
    name = source.removeprefix(PACKAGE_PREFIX) if packaged else source
    root_text = "the hardflow package" if packaged else "the spec's folder"
    expected = (
        "'hardflow:' and a path inside the hardflow package"
        if packaged
        else "a path relative to the spec's folder, inside it"
    )

    def refuse(found: str) -> SpecError:
        return SpecError(
            f"{_files_key(origin, index, 'source')}: expected {expected}, found {found}",
            hint=f"copy the file into {root_text}, or use 'content' for small files",
        )

    if not name or "\0" in name:
        raise refuse(f"{source!r}")
    if Path(name).is_absolute():
        raise refuse(f"the absolute path {source!r}")
    try:
        root = _package_root() if packaged else Path(base_dir or ".").resolve()
        target = (root / name).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a symlink loop, an unencodable name
        raise refuse(f"{source!r}, which cannot be resolved ({exc})") from None
    if target == root or not target.is_relative_to(root):
        raise refuse(f"{source!r}, which resolves to {target}, outside {root}")
    return target


def read_extra_file(spec: ImageSpec, f: ExtraFile) -> bytes:
    """The bytes of a file entry (a ``link`` entry has none: write it as a symlink)."""
    if f.link:
        raise SpecError(
            f"{spec.source}: [[files]] entry for {f.dest} is a symbolic link to {f.link!r}, "
            "not a file with content"
        )
    if f.content:
        return f.content.encode()
    index = spec.files.index(f) if f in spec.files else 0
    # checked again here, not only when parsing: the tree may have changed since (a new
    # symlink), and an ImageSpec can be made without the parser
    path = source_path(spec.source, spec.base_dir, index, f.source)
    try:
        return path.read_bytes()
    except OSError as exc:
        what = "packaged file" if f.source.startswith(PACKAGE_PREFIX) else "file"
        raise SpecError(
            f"{_files_key(spec.source, index, 'source')}: cannot read the {what} "
            f"{f.source!r} for {f.dest}: {exc.strerror or exc}"
        ) from None


# --------------------------------------------------------------------------------------------
# Loading and validation


class _Reader:
    """Typed access to one TOML table that remembers which keys were consumed."""

    def __init__(self, origin: str, table: Mapping[str, Any], prefix: str = "") -> None:
        self.origin = origin
        self.table = table
        self.prefix = prefix
        self.seen: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _fail(self, key: str, expected: str, found: object) -> SpecError:
        return SpecError(
            f"{self.origin}: key '{self._key(key)}': expected {expected}, "
            f"found {_describe(found)}"
        )

    def _get(self, key: str, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.table:
            if required:
                raise SpecError(f"{self.origin}: missing required key '{self._key(key)}'")
            return None
        return self.table[key]

    def string(self, key: str, default: str | None = None, pattern: str | None = None) -> str:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        if "\0" in value:
            raise self._fail(key, "a string without NUL characters", value)
        if pattern and not re.fullmatch(pattern, value):
            raise self._fail(key, f"a string matching {pattern}", value)
        return value

    def integer(self, key: str, default: int, low: int = 0, high: int = 2**32 - 1) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        if not low <= value <= high:
            raise self._fail(key, f"an integer from {low} to {high}", value)
        return value

    def strings(
        self,
        key: str,
        default: tuple[str, ...] = (),
        required: bool = False,
        pattern: str | None = None,
        what: str | None = None,
    ) -> tuple[str, ...]:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "an array of strings", value)
        for i, item in enumerate(value):
            if "\0" in item or (pattern and not re.fullmatch(pattern, item)):
                raise SpecError(
                    f"{self.origin}: key '{self._key(key)}[{i}]': expected "
                    f"{what or 'a string without NUL characters'}, found {_describe(item)}"
                )
        return tuple(value)

    def integers(self, key: str) -> tuple[int, ...]:
        value = self._get(key, False)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536 for v in value
        ):
            raise self._fail(key, "an array of port numbers (1-65535)", value)
        return tuple(value)

    def mapping(self, key: str, key_pattern: str = r"[^\0]+") -> dict[str, str]:
        value = self._get(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._fail(key, "a table of strings", value)
        for name, text in value.items():
            if not re.fullmatch(key_pattern, name):
                raise SpecError(
                    f"{self.origin}: key '{self._key(key)}': expected names matching "
                    f"{key_pattern}, found {_describe(name)}"
                )
            if "\0" in text:
                raise self._fail(f"{key}.{name}", "a string without NUL characters", text)
        return dict(value)

    def table_(self, key: str, required: bool = True) -> _Reader:
        value = self._get(key, required)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self._fail(key, "a table", value)
        return _Reader(self.origin, value, f"{self._key(key)}.")

    def tables(self, key: str) -> list[_Reader]:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._fail(key, "an array of tables ([[files]])", value)
        return [_Reader(self.origin, v, f"{self._key(key)}[{i}].") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            raise SpecError(
                f"{self.origin}: unknown key '{self._key(unknown[0])}'",
                hint=f"allowed keys here: {allowed}",
            )


def _describe(value: object) -> str:
    kind = {
        str: "string",
        int: "integer",
        float: "float",
        bool: "boolean",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


TOP_LEVEL_KEYS = frozenset({"name", "tag", "debian", "python", "image", "files"})
_NAME = r"[a-z0-9]+(?:[._\-/][a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}"
_PKG = r"[a-z0-9][a-z0-9+.\-]+"
_PYPI_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._\-]*[A-Za-z0-9])?"
_SUITE = r"[a-z0-9][a-z0-9.\-]*"
_COMPONENT = r"[a-z0-9][a-z0-9.\-]*(?:/[a-z0-9][a-z0-9.\-]*)?"
_URL = r"(?:https?|file)://[^\s\0]+"
_ABS_PATH = r"/[^\0]*"
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_MODE = r"0?[0-7]{3}"  # no setuid/setgid/sticky bits: the image has none (CIS 4.8)


def parse_spec(data: Mapping[str, Any], origin: str, base_dir: str = "") -> ImageSpec:
    top = _Reader(origin, data)
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:  # say so before complaining about anything missing
        raise SpecError(
            f"{origin}: unknown key '{unknown[0]}'",
            hint=f"allowed top-level keys: {', '.join(sorted(TOP_LEVEL_KEYS))}",
        )
    name = top.string("name", pattern=_NAME)
    tag = top.string("tag", pattern=_TAG)

    deb = top.table_("debian")
    debian = DebianSpec(
        suites=deb.strings("suites", required=True, pattern=_SUITE, what="a suite name"),
        components=deb.strings(
            "components", ("main",), pattern=_COMPONENT, what="a component name"
        ),
        architecture=deb.string("architecture", "amd64", pattern=r"[a-z0-9]+"),
        packages=deb.strings("packages", required=True),
        excludes=deb.strings("excludes"),
        mirror=deb.string("mirror", "", pattern=f"|{_URL}"),
        security_mirror=deb.string("security_mirror", "", pattern=f"|{_URL}"),
        keyring=deb.string("keyring", DebianSpec.keyring, pattern=r"[^\0]+"),
    )
    deb.done()
    if not debian.suites:
        raise SpecError(f"{origin}: key 'debian.suites': expected at least one suite, found none")
    for pkg in (*debian.packages, *debian.excludes):
        if not re.fullmatch(_PKG, pkg):
            raise SpecError(
                f"{origin}: key 'debian.packages': expected Debian package names, found {pkg!r}"
            )

    py = top.table_("python")
    python = PythonSpec(
        version=py.string("version", pattern=r"3\.\d{1,2}"),
        requirements=py.strings(
            "requirements", pattern=r"\S.*", what="a requirement (PEP 508)"
        ),
        glibc=py.string("glibc", "2.41", pattern=r"2\.\d{1,3}"),
        interpreter=py.string("interpreter", "", pattern=f"|{_ABS_PATH}"),
        excludes=py.strings("excludes"),
    )
    py.done()
    for dist in python.excludes:
        if not re.fullmatch(_PYPI_NAME, dist):
            raise SpecError(
                f"{origin}: key 'python.excludes': expected distribution names, found {dist!r}"
            )

    img = top.table_("image", required=False)
    files: list[ExtraFile] = []
    for index, f in enumerate(top.tables("files")):
        files.append(_extra_file(origin, base_dir, index, f, files))

    spec = ImageSpec(
        name=name,
        tag=tag,
        debian=debian,
        python=python,
        user=img.string("user", "airflow", pattern=r"[a-z_][a-z0-9_\-]{0,31}"),
        uid=img.integer("uid", 50000, 1, 2**31 - 1),
        gid=img.integer("gid", 0, 0, 2**31 - 1),
        home=img.string("home", "/opt/airflow", pattern=_ABS_PATH),
        workdir=img.string("workdir", "/opt/airflow", pattern=_ABS_PATH),
        env=img.mapping("env", _ENV_NAME),
        entrypoint=img.strings("entrypoint"),
        cmd=img.strings("cmd"),
        labels=img.mapping("labels"),
        ports=img.integers("ports"),
        stop_signal=img.string("stop_signal", "SIGTERM", pattern=r"SIG[A-Z0-9]+"),
        healthcheck=img.strings("healthcheck"),
        files=tuple(files),
        source=origin,
        base_dir=base_dir,
    )
    img.done()
    top.done()
    for key, value in (("image.home", spec.home), ("image.workdir", spec.workdir)):
        if ".." in Path(value).parts:
            raise SpecError(f"{origin}: key '{key}': expected a path without '..', found {value!r}")
    return spec


def _extra_file(
    origin: str, base_dir: str, index: int, f: _Reader, earlier: list[ExtraFile]
) -> ExtraFile:
    """One ``[[files]]`` entry, checked: where it goes, where it comes from, its mode."""
    dest = f.string("dest", pattern=_ABS_PATH)
    link = f.string("link", "")
    if link and "mode" in f.table:
        raise SpecError(
            f"{_files_key(origin, index, 'mode')}: expected no mode on a 'link' entry (a "
            f"symbolic link has none of its own), found {_describe(f.table['mode'])}"
        )
    mode_text = f.string("mode", "0644", pattern=_MODE)
    extra = ExtraFile(
        dest=dest,
        source=f.string("source", ""),
        content=f.string("content", ""),
        mode=int(mode_text, 8),
        link=link,
    )
    f.done()
    given = [key for key in ("source", "content", "link") if getattr(extra, key)]
    if len(given) != 1:
        raise SpecError(
            f"{origin}: [[files]] entry {index} (files[{index}]) for {dest}: expected exactly "
            f"one of 'source', 'content' or 'link', found "
            f"{' and '.join(repr(k) for k in given) if given else 'none'}"
        )
    if ".." in Path(dest).parts or dest.rstrip("/") == "":
        raise SpecError(
            f"{_files_key(origin, index, 'dest')}: expected an absolute file path without "
            f"'..', found {dest!r}"
        )
    for i, other in enumerate(earlier):
        if Path(image_dest(other.dest)) == Path(image_dest(dest)):
            raise SpecError(
                f"{_files_key(origin, index, 'dest')}: expected a path no other entry writes, "
                f"found {dest!r}, already written by files[{i}]"
            )
        mine, theirs = Path(image_dest(dest)), Path(image_dest(other.dest))
        if (other.link and mine.is_relative_to(theirs)) or (
            link and theirs.is_relative_to(mine)
        ):
            raise SpecError(
                f"{_files_key(origin, index, 'dest')}: expected a path that is neither a "
                f"symbolic link ('link') nor below one, found {dest!r} and files[{i}] "
                f"({other.dest!r}), one inside the other",
                hint="nothing can be written through a symbolic link: write to its target",
            )
    if link:
        _check_link(origin, index, dest, link)
    if extra.source:
        source_path(origin, base_dir, index, extra.source)
    return extra


_LINK_MAX = 1024  # far above any real target; Linux allows 4095


def _check_link(origin: str, index: int, dest: str, link: str) -> None:
    """A link target must be a plain path: no '..', no control characters, no trailing '/',
    and not the link itself. Relative targets are resolved from the link's folder."""

    def refuse(found: str) -> SpecError:
        return SpecError(
            f"{_files_key(origin, index, 'link')}: expected a normalised path (absolute, or "
            f"relative to the folder of {dest}) without '..', control characters or a "
            f"trailing '/', at most {_LINK_MAX} characters, found {found}",
            hint="write the target as the image sees it, e.g. link = \"bash\" or "
            "link = \"/usr/local/lib/hardflow/entrypoint.py\"",
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


def load_spec(path: Path) -> ImageSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from None
    return _parse_text(text, str(path), str(path.parent))


def _parse_text(text: str, origin: str, base_dir: str) -> ImageSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: not valid TOML: {exc}") from None
    return parse_spec(data, origin, base_dir)


def embedded_spec_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files(SPECS_PACKAGE).iterdir()
        if p.name.endswith(".toml")
    )


def load_embedded(name: str = DEFAULT_SPEC_NAME) -> ImageSpec:
    path = resources.files(SPECS_PACKAGE).joinpath(f"{name}.toml")
    if not path.is_file():
        raise SpecError(
            f"no embedded spec named {name!r}",
            hint=f"embedded specs: {', '.join(embedded_spec_names())}",
        )
    return _parse_text(path.read_text(encoding="utf-8"), f"<embedded:{name}>", "")


def resolve_spec_arg(value: str | None) -> tuple[ImageSpec, Path]:
    """Spec and the lock path that goes with it, for ``--spec`` (a file or an embedded name)."""
    if value is None or (not value.endswith(".toml") and value in embedded_spec_names()):
        name = value or DEFAULT_SPEC_NAME
        spec = load_embedded(name)
        lock = Path(str(resources.files(SPECS_PACKAGE).joinpath(f"{name}.lock.json")))
        return spec, lock
    path = Path(value)
    return load_spec(path), path.with_name(path.name.removesuffix(".toml") + ".lock.json")

