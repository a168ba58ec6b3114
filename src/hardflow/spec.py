"""The image spec: frozen dataclasses, strict TOML loading, the embedded default specs.

Validation is hand-written on purpose (``spec_toml.Reader``): the messages must name the file,
the dotted key, what was expected and what was found, and unknown keys must be rejected (as
apko does). A spec may extend another (``extends``): it is flattened onto its base when it is
read, so every later stage sees one complete :class:`ImageSpec`. What a spec reads from its
folder (requirements files, find-links, the DAG and plugin trees) is in ``spec_inputs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from hardflow.errors import SpecError
from hardflow.spec_inputs import BakedFile as BakedFile
from hardflow.spec_inputs import (
    RequirementsFile,
    confined,
    read_capped,
    read_requirements_file,
    requirement_problem,
    tree_fingerprint,
)
from hardflow.spec_inputs import baked_files as baked_files
from hardflow.spec_links import MERGED_USR_LINKS as MERGED_USR_LINKS
from hardflow.spec_links import check_link
from hardflow.spec_links import image_dest as image_dest
from hardflow.spec_platforms import architectures_of, platform_view, read_platforms
from hardflow.spec_platforms import oci_platform as oci_platform
from hardflow.spec_platforms import parse_platforms as parse_platforms
from hardflow.spec_platforms import platform_architecture as platform_architecture
from hardflow.spec_toml import Reader, describe

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
    # The folder a relative ``source`` is read from: the folder of the spec that wrote the entry
    # (a base's entries keep their base's folder); "" = the spec's ``base_dir``. Not checksummed.
    base_dir: str = ""


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
    # OCI platforms of a multi-platform image, in index order (see spec_platforms); () = one,
    # linux/<debian.architecture> (then the primary, the first platform's architecture)
    platforms: tuple[str, ...] = ()
    source: str = ""  # where the spec was loaded from (not part of the checksum)
    base_dir: str = ""  # directory relative sources are read from (not part of the checksum)

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def architectures(self) -> tuple[str, ...]:
        """The Debian architectures of the image's platforms, the primary one first."""
        return architectures_of(self.platforms, self.debian.architecture)

    def for_architecture(self, arch: str) -> ImageSpec:
        """The one-platform view the stages of ``arch`` see (:func:`platform_view`)."""
        return platform_view(self, arch)

    def lock_checksum(self) -> str:
        """sha256 over the fields a lock is resolved from (Debian and Python inputs).

        Changing image metadata, extra files or the baked DAGs and plugins does not invalidate
        a lock; changing a package, suite, exclude, requirement (also in a base or a
        requirements file), hash, find-links folder or the target Python does.
        """
        data: dict[str, Any] = {"debian": asdict(self.debian), "python": self._python_data()}
        for key in ("mirror", "security_mirror", "keyring"):  # where from, not what
            data["debian"].pop(key)
        if self.platforms:  # added later: left out while unset (one platform)
            data["platforms"] = list(self.platforms)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def checksum(self) -> str:
        """sha256 over the canonical JSON of every field that shapes the image: files by their
        bytes, the DAG and plugin folders by what is baked of them (path, mode, sha256)."""
        data = asdict(replace(self, python=replace(self.python, hashes={})))
        data.pop("source")
        data.pop("base_dir")
        if not data["platforms"]:  # added later: left out while unset (one platform)
            data.pop("platforms")
        data["python"] = self._python_data()
        for key in ("dags", "plugins"):  # added later: left out while unset
            folder = data.pop(key)
            if folder:  # what is baked, not where it is on this host
                data[key] = tree_fingerprint(folder)
        data["files"] = [_file_fingerprint(self, f) for f in self.files]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_jsonable)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def _python_data(self) -> dict[str, Any]:
        """The Python inputs; keys added after the first locks are left out while unset (older
        checksums stay valid), find-links folders relative to the spec's (portable)."""
        python = self.python
        data = asdict(replace(python, hashes={}))
        data["hashes"] = {name: list(v) for name, v in sorted(python.hashes.items())}
        here = self.base_dir or os.curdir
        data["find_links"] = [Path(os.path.relpath(p, here)).as_posix() for p in python.find_links]
        for key in ("excludes", "requirements_file", "hashes", "find_links"):
            if not data[key]:
                data.pop(key)
        return data


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

    if not name:
        raise refuse(f"{source!r}")
    root = _package_root() if packaged else Path(base_dir or ".").resolve()
    return confined(root, name, refuse, shown=source)


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
    path = source_path(spec.source, f.base_dir or spec.base_dir, index, f.source)
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


TOP_LEVEL_KEYS = frozenset(
    {"extends", "name", "tag", "platforms", "debian", "python", "image", "files"}
)
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
EXTENDS_MAX_DEPTH = 8  # bases above a spec
SPEC_MAX_BYTES = 16 << 20
# What a spec without ``extends`` starts from: the dataclasses' defaults.
_NO_BASE = ImageSpec(name="", tag="", debian=DebianSpec(suites=()), python=PythonSpec(version=""))


def parse_spec(data: Mapping[str, Any], origin: str, base_dir: str = "") -> ImageSpec:
    """The spec in ``data`` (read from ``origin``; relative paths are below ``base_dir``),
    flattened onto its ``extends`` chain."""
    return _parse(data, origin, base_dir, (origin,))


def _parse(
    data: Mapping[str, Any], origin: str, base_dir: str, chain: tuple[str, ...]
) -> ImageSpec:
    """``chain``: the specs that extend this one, this one last (cycle and depth checks)."""
    top = Reader(origin, data)
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:  # say so before complaining about anything missing
        raise SpecError(
            f"{origin}: unknown key '{unknown[0]}'",
            hint=f"allowed top-level keys: {', '.join(sorted(TOP_LEVEL_KEYS))}",
        )
    extends = top.string("extends", "", pattern=r"[^\0\n]+") if "extends" in data else ""
    base = _base_spec(extends, origin, base_dir, chain) if extends else None
    # A key the spec gives overrides its base's; list keys named below add to the base's and
    # tables merge key by key. Without a base, the dataclasses' defaults are the base.
    b = base or _NO_BASE
    name = top.string("name", base.name if base else None, pattern=_NAME)
    tag = top.string("tag", base.tag if base else None, pattern=_TAG)

    deb = top.table_("debian", required=base is None)
    d = b.debian
    debian = DebianSpec(
        suites=deb.strings(
            "suites", d.suites, required=base is None, pattern=_SUITE, what="a suite name"
        ),
        components=deb.strings(
            "components", d.components, pattern=_COMPONENT, what="a component name"
        ),
        architecture=deb.string("architecture", d.architecture, pattern=r"[a-z0-9]+"),
        packages=_add(d.packages, deb.strings("packages", required=base is None)),
        excludes=_add(d.excludes, deb.strings("excludes")),
        mirror=deb.string("mirror", d.mirror, pattern=f"|{_URL}"),
        security_mirror=deb.string("security_mirror", d.security_mirror, pattern=f"|{_URL}"),
        keyring=deb.string("keyring", d.keyring, pattern=r"[^\0]+"),
    )
    deb.done()
    platforms, primary = read_platforms(top, deb, b.platforms, origin)
    debian = replace(debian, architecture=primary or debian.architecture)
    if not debian.suites:
        raise SpecError(f"{origin}: key 'debian.suites': expected at least one suite, found none")
    for pkg in (*debian.packages, *debian.excludes):
        if not re.fullmatch(_PKG, pkg):
            raise SpecError(
                f"{origin}: key 'debian.packages': expected Debian package names, found {pkg!r}"
            )

    python = _python(top.table_("python", required=base is None), origin, base_dir, base)

    img = top.table_("image", required=False)
    own_files = [_extra_file(origin, base_dir, i, f) for i, f in enumerate(top.tables("files"))]
    dags, plugins = img.string("dags", ""), img.string("plugins", "")
    spec = ImageSpec(
        name=name,
        tag=tag,
        debian=debian,
        python=python,
        user=img.string("user", b.user, pattern=r"[a-z_][a-z0-9_\-]{0,31}"),
        uid=img.integer("uid", b.uid, 1, 2**31 - 1),
        gid=img.integer("gid", b.gid, 0, 2**31 - 1),
        home=img.string("home", b.home, pattern=_ABS_PATH),
        workdir=img.string("workdir", b.workdir, pattern=_ABS_PATH),
        env={**b.env, **img.mapping("env", _ENV_NAME)},
        entrypoint=img.strings("entrypoint", b.entrypoint),
        cmd=img.strings("cmd", b.cmd),
        labels={**b.labels, **img.mapping("labels")},
        ports=img.integers("ports", b.ports),
        stop_signal=img.string("stop_signal", b.stop_signal, pattern=r"SIG[A-Z0-9]+"),
        healthcheck=img.strings("healthcheck", b.healthcheck),
        files=_merge_files(origin, b.files, b.source, own_files),
        dags=_folder(origin, base_dir, "image.dags", dags) if dags else b.dags,
        plugins=_folder(origin, base_dir, "image.plugins", plugins) if plugins else b.plugins,
        platforms=platforms,
        source=origin,
        base_dir=base_dir,
    )
    img.done()
    top.done()
    for key, value in (("image.home", spec.home), ("image.workdir", spec.workdir)):
        if ".." in Path(value).parts:
            raise SpecError(f"{origin}: key '{key}': expected a path without '..', found {value!r}")
    return spec


def _python(py: Reader, origin: str, base_dir: str, base: ImageSpec | None) -> PythonSpec:
    """``[python]``: requirements (and those of ``requirements-file``), excludes and
    find-links add to the base's; the other keys override it."""
    p = (base or _NO_BASE).python
    own = py.strings("requirements", pattern=r"\S.*", what="a requirement (PEP 508)")
    for i, text in enumerate(own):
        problem = requirement_problem(text)
        if problem:
            raise SpecError(
                f"{origin}: key 'python.requirements[{i}]': expected a requirement (PEP 508), "
                f"found {text!r} ({problem})"
            )
    written = py.string("requirements-file", "", pattern=r"|[^\0\n]+")
    from_file = _requirements_file(origin, base_dir, written) if written else None
    links = py.strings("find-links")
    python = PythonSpec(
        version=py.string("version", p.version if base else None, pattern=r"3\.\d{1,2}"),
        requirements=_add(_add(p.requirements, own), from_file.requirements if from_file else ()),
        glibc=py.string("glibc", p.glibc, pattern=r"2\.\d{1,3}"),
        interpreter=py.string("interpreter", p.interpreter, pattern=f"|{_ABS_PATH}"),
        excludes=_add(p.excludes, py.strings("excludes")),
        requirements_file=written or p.requirements_file,
        hashes={**p.hashes, **(from_file.hashes if from_file else {})},
        find_links=_add(
            p.find_links,
            tuple(
                _folder(origin, base_dir, f"python.find-links[{i}]", link, allow_root=True)
                for i, link in enumerate(links)
            ),
        ),
    )
    py.done()
    for dist in python.excludes:
        if not re.fullmatch(_PYPI_NAME, dist):
            raise SpecError(
                f"{origin}: key 'python.excludes': expected distribution names, found {dist!r}"
            )
    return python


def _add(base: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    """``base`` and then ``more``, each value once (``base`` alone is left as written)."""
    return tuple(dict.fromkeys((*base, *more))) if base and more else base or more


def _folder(origin: str, base_dir: str, key: str, name: str, allow_root: bool = False) -> str:
    """A folder the spec names (find-links, dags, plugins): absolute, resolved, existing and
    inside the spec's folder."""
    root = Path(base_dir or ".").resolve()

    expected = (
        "the spec's folder or a folder inside it"
        if allow_root
        else "a folder inside the spec's folder"
    )

    def refuse(found: str) -> SpecError:
        return SpecError(
            f"{origin}: key '{key}': expected {expected} ({root}), found {found}",
            hint="move the folder next to the spec (a symbolic link out of it is refused)",
        )

    target = confined(root, name, refuse, allow_root=allow_root)
    if not target.is_dir():
        raise SpecError(
            f"{origin}: key '{key}': expected {expected} ({root}), found {name!r}, which is "
            "not an existing folder"
        )
    return str(target)


def _requirements_file(origin: str, base_dir: str, name: str) -> RequirementsFile:
    root = Path(base_dir or ".").resolve()

    def refuse(found: str) -> SpecError:
        return SpecError(
            f"{origin}: key 'python.requirements-file': expected a requirements file inside "
            f"the spec's folder {root}, found {found}"
        )

    return read_requirements_file(root, name, refuse)


def _extra_file(origin: str, base_dir: str, index: int, f: Reader) -> ExtraFile:
    """One ``[[files]]`` entry, checked: where it goes, where it comes from, its mode."""
    dest = f.string("dest", pattern=_ABS_PATH)
    link = f.string("link", "")
    if link and "mode" in f.table:
        raise SpecError(
            f"{_files_key(origin, index, 'mode')}: expected no mode on a 'link' entry (a "
            f"symbolic link has none of its own), found {describe(f.table['mode'])}"
        )
    mode_text = f.string("mode", "0644", pattern=_MODE)
    source = f.string("source", "")
    extra = ExtraFile(
        dest=dest,
        source=source,
        content=f.string("content", ""),
        mode=int(mode_text, 8),
        link=link,
        base_dir=base_dir if source and not source.startswith(PACKAGE_PREFIX) else "",
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
    if link:
        check_link(_files_key(origin, index, "link"), dest, link)
    if extra.source:
        source_path(origin, base_dir, index, extra.source)
    return extra


def _merge_files(
    origin: str, inherited: tuple[ExtraFile, ...], base: str, own: list[ExtraFile]
) -> tuple[ExtraFile, ...]:
    """The base's entries, then the spec's own: an own entry with the image destination of an
    inherited one replaces it in place; two own entries for one path are an error. Nothing may
    be written through (below) a ``link`` entry."""
    merged = list(inherited)
    owner: list[int | None] = [None] * len(merged)  # index among the spec's own entries
    slots = {Path(image_dest(f.dest)): k for k, f in enumerate(merged)}
    for index, extra in enumerate(own):
        where = Path(image_dest(extra.dest))
        slot = slots.get(where)
        if slot is None:
            slots[where] = len(merged)
            merged.append(extra)
            owner.append(index)
            continue
        earlier = owner[slot]
        if earlier is not None:
            raise SpecError(
                f"{_files_key(origin, index, 'dest')}: expected a path no other entry writes, "
                f"found {extra.dest!r}, already written by files[{earlier}]"
            )
        merged[slot], owner[slot] = extra, index
    links = {Path(image_dest(f.dest)): k for k, f in enumerate(merged) if f.link}
    for k, extra in enumerate(merged):
        for parent in Path(image_dest(extra.dest)).parents:
            if parent not in links:
                continue
            first, second = sorted((links[parent], k), key=lambda n: _rank(owner[n]))
            other, mine, theirs, culprit = (
                merged[first],
                merged[second],
                owner[first],
                owner[second],
            )
            if culprit is None:
                continue  # both inherited: the base was checked on its own
            named = f"files[{theirs}]" if theirs is not None else f"the entry of {base}"
            raise SpecError(
                f"{_files_key(origin, culprit, 'dest')}: expected a path that is "
                f"neither a symbolic link ('link') nor below one, found {mine.dest!r} and "
                f"{named} ({other.dest!r}), one inside the other",
                hint="nothing can be written through a symbolic link: write to its target",
            )
    return tuple(merged)


def _rank(own_index: int | None) -> int:
    return -1 if own_index is None else own_index


def load_spec(path: Path) -> ImageSpec:
    text = _read_spec(path, lambda why: SpecError(f"cannot read spec {path}: {why}"))
    return _parse_text(text, str(path), str(path.parent), (os.path.realpath(path),))


def _read_spec(path: Path, fail: Callable[[str], SpecError]) -> str:
    def failed(found: str) -> SpecError:
        return fail(found.removeprefix("a file that cannot be read (").removesuffix(")"))

    real = Path(os.path.realpath(path))  # a spec may be a symbolic link; it is read without
    data = read_capped(real, SPEC_MAX_BYTES, failed, f"a file larger than {SPEC_MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _parse_text(text: str, origin: str, base_dir: str, chain: tuple[str, ...]) -> ImageSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: not valid TOML: {exc}") from None
    return _parse(data, origin, base_dir, chain)


def _base_spec(value: str, origin: str, base_dir: str, chain: tuple[str, ...]) -> ImageSpec:
    """The flattened spec ``extends = value`` names: an embedded spec, or a ``.toml`` file
    relative to the extending spec's folder."""
    key = f"{origin}: key 'extends'"
    if value.endswith(".toml"):
        if origin.startswith("<embedded:"):
            raise SpecError(f"{key}: expected the name of an embedded spec, found {value!r}")
        if Path(value).is_absolute():
            raise SpecError(
                f"{key}: expected a path relative to the spec's folder, found {value!r}"
            )
        path = Path(os.path.realpath(Path(base_dir or ".") / value))
        ident, base_origin, folder = str(path), str(path), str(path.parent)
    elif value in embedded_spec_names():
        ident = base_origin = f"<embedded:{value}>"
        path, folder = Path(), ""
    else:
        raise SpecError(
            f"{key}: expected the name of an embedded spec "
            f"({', '.join(embedded_spec_names())}) or a path to a .toml file relative to the "
            f"spec's folder, found {value!r}"
        )
    if ident in chain:
        cycle = " -> ".join((*chain[chain.index(ident) :], ident))
        raise SpecError(
            f"{key}: expected a base that does not extend this spec again, found the cycle {cycle}"
        )
    if len(chain) > EXTENDS_MAX_DEPTH:
        raise SpecError(
            f"{key}: expected at most {EXTENDS_MAX_DEPTH} levels of 'extends', found the chain "
            f"{' -> '.join((*chain, ident))}"
        )
    if folder:
        text = _read_spec(
            path, lambda why: SpecError(f"{key}: cannot read the base spec {path}: {why}")
        )
    else:
        text = _embedded_text(value)
    return _parse_text(text, base_origin, folder, (*chain, ident))


def embedded_spec_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files(SPECS_PACKAGE).iterdir()
        if p.name.endswith(".toml")
    )


def _embedded_text(name: str) -> str:
    path = resources.files(SPECS_PACKAGE).joinpath(f"{name}.toml")
    if not path.is_file():
        raise SpecError(
            f"no embedded spec named {name!r}",
            hint=f"embedded specs: {', '.join(embedded_spec_names())}",
        )
    return path.read_text(encoding="utf-8")


def load_embedded(name: str = DEFAULT_SPEC_NAME) -> ImageSpec:
    origin = f"<embedded:{name}>"
    return _parse_text(_embedded_text(name), origin, "", (origin,))


def resolve_spec_arg(value: str | None) -> tuple[ImageSpec, Path]:
    """Spec and the lock path that goes with it, for ``--spec`` (a file or an embedded name)."""
    if value is None or (not value.endswith(".toml") and value in embedded_spec_names()):
        name = value or DEFAULT_SPEC_NAME
        spec = load_embedded(name)
        lock = Path(str(resources.files(SPECS_PACKAGE).joinpath(f"{name}.lock.json")))
        return spec, lock
    path = Path(value)
    return load_spec(path), path.with_name(path.name.removesuffix(".toml") + ".lock.json")


def with_additions(
    spec: ImageSpec, requirements: Sequence[str] = (), packages: Sequence[str] = ()
) -> ImageSpec:
    """``spec`` with more Python requirements and Debian packages (``hardflow build --with X
    --debian Y``), each checked like the spec's own and added once, after the spec's."""
    for value in requirements:
        problem = requirement_problem(value) if value.strip() else "empty"
        if problem:
            raise SpecError(
                f"--with: expected a Python requirement (PEP 508, e.g. 'tabulate' or "
                f"'tabulate==0.9.0'), found {value!r} ({problem})"
            )
    for value in packages:
        if not re.fullmatch(_PKG, value):
            raise SpecError(
                f"--debian: expected a Debian package name (lower-case letters, digits and "
                f"'+-.', at least two characters), found {value!r}"
            )
    python = replace(
        spec.python,
        requirements=tuple(dict.fromkeys((*spec.python.requirements, *requirements))),
    )
    debian = replace(spec.debian, packages=tuple(dict.fromkeys((*spec.debian.packages, *packages))))
    return replace(spec, python=python, debian=debian)
