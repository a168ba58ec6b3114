"""What is in the image: Debian packages and Python distributions, matched against the lock.

The image says *what* is installed (dpkg ``status.d`` records, ``*.dist-info/METADATA``) and
under which licence; the lock says *which file* it came from (the ``.deb``/wheel sha256, which
the image cannot carry). :func:`inventory` joins the two and refuses to guess when they
disagree.
"""

from __future__ import annotations

import email.parser
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote

from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName, default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from hardflow.errors import ArchiveError, LockError
from hardflow.lock.model import Lock, LockedWheel
from hardflow.supply.sbom.image import ImageFiles, ImageSubject, resolve_link
from hardflow.supply.sbom.licenses import License, debian_license, python_license

_STATUS = re.compile(r"var/lib/dpkg/status\.d/([^/]+)")
_METADATA = re.compile(r"(.+)/([^/]+)\.dist-info/METADATA")
# Debian's own Python packages install here; their files belong to a .deb, not to a wheel.
_DEBIAN_PYTHON = re.compile(
    r"usr/lib/python3(\.\d+)?/(dist-packages|site-packages)/.*|"
    r"usr/lib/python3\.\d+/.*"
)
_ARCH_MACHINE = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "i386": "i686",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "armhf": "armv7l",
}


def purl_quote(value: str) -> str:
    return quote(value, safe=":")


def deb_purl(name: str, version: str, arch: str, distro: str, namespace: str = "debian") -> str:
    return (
        f"pkg:deb/{namespace}/{quote(name, safe='')}@{purl_quote(version)}"
        f"?arch={quote(arch, safe='')}&distro={quote(distro, safe='')}"
    )


def pypi_purl(name: str, version: str) -> str:
    # the purl spec for pypi: lower case, "_" → "-"
    return f"pkg:pypi/{quote(name.lower().replace('_', '-'), safe='')}@{purl_quote(version)}"


def oci_purl(subject: ImageSubject) -> str:
    digest = subject.manifest_digest or subject.config_digest
    last = subject.name.rsplit("/", 1)[-1]
    return f"pkg:oci/{quote(last, safe='')}@{quote(digest, safe='')}?tag={quote(subject.tag)}"


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    source: str
    source_version: str
    maintainer: str
    license: License
    sha256: str  # of the .deb, from the lock
    filename: str  # pool path, from the lock
    depends: tuple[str, ...]  # installed packages this one depends on
    purl: str


@dataclass(frozen=True)
class PyPackage:
    name: str  # as the METADATA spells it
    version: str
    license: License
    sha256: str  # of the wheel, from the lock
    filename: str  # the wheel file name, from the lock
    depends: tuple[str, ...]  # canonical names of installed distributions it may require
    purl: str

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class Inventory:
    image: ImageSubject
    distro: str  # purl distro qualifier, "debian-13"
    debs: tuple[DebPackage, ...]
    wheels: tuple[PyPackage, ...]

    @property
    def licenses(self) -> tuple[License, ...]:
        return tuple(d.license for d in self.debs) + tuple(w.license for w in self.wheels)


# --------------------------------------------------------------------------------------------
# pure parsing helpers


def parse_stanza(text: str) -> dict[str, str]:
    """One dpkg control stanza: field → value (continuation lines joined with \\n)."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t":
            if key:
                fields[key] += "\n" + line[1:]
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _source_of(fields: Mapping[str, str]) -> tuple[str, str]:
    """Source package name and version ("Source: openssl (3.5.1-1)" or the binary's own)."""
    version = fields.get("Version", "")
    source = fields.get("Source", "").strip()
    if not source:
        return fields.get("Package", ""), version
    m = re.fullmatch(r"(\S+)\s*\(([^)]+)\)", source)
    if m:
        return m.group(1), m.group(2).strip()
    return source, version


def _depends_names(fields: Mapping[str, str]) -> list[list[str]]:
    clauses: list[list[str]] = []
    for key in ("Pre-Depends", "Depends"):
        for clause in fields.get(key, "").replace("\n", " ").split(","):
            names = [
                re.split(r"[\s(:\[<]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")
            ]
            names = [n for n in names if n]
            if names:
                clauses.append(names)
    return clauses


def os_release(image: ImageFiles) -> dict[str, str]:
    path = "etc/os-release"
    if path in image.links:
        path = resolve_link(path, image.links[path])
    data = image.files.get(path) or image.files.get("usr/lib/os-release") or b""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def distro_qualifier(release: Mapping[str, str]) -> tuple[str, str]:
    """(purl namespace, distro qualifier): ("debian", "debian-13")."""
    ident = release.get("ID", "debian") or "debian"
    version = release.get("VERSION_ID", "")
    return ident, f"{ident}-{version}" if version else ident


def copyright_text(image: ImageFiles, package: str) -> str | None:
    """The package's copyright file, following ``usr/share/doc/<pkg>`` symlinks."""
    doc = f"usr/share/doc/{package}"
    for _ in range(8):
        if doc in image.links:
            doc = resolve_link(doc, image.links[doc])
            continue
        break
    data = image.files.get(f"{doc}/copyright")
    return None if data is None else data.decode("utf-8", "replace")


def _target_environment(python_version: str, architecture: str) -> dict[str, str]:
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    env.update(
        python_version=python_version,
        python_full_version=f"{python_version}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        platform_machine=_ARCH_MACHINE.get(architecture, architecture),
    )
    return env


def _requirement_names(
    metadata: Message, installed: set[str], env: Mapping[str, str]
) -> tuple[str, ...]:
    """Installed distributions this one requires — or may require through one of its extras
    (the image does not record which extras were asked for)."""
    extras = [""] + [str(e) for e in metadata.get_all("Provides-Extra") or []]
    out: set[str] = set()
    for line in metadata.get_all("Requires-Dist") or []:
        try:
            req = Requirement(str(line))
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if name not in installed:
            continue
        if req.marker is None or _marker_true(req.marker, env, extras):
            out.add(name)
    return tuple(sorted(out))


def _marker_true(marker: Marker, env: Mapping[str, str], extras: list[str]) -> bool:
    for extra in extras:
        try:
            if marker.evaluate({**env, "extra": extra}):
                return True
        except (InvalidMarker, UndefinedEnvironmentName):
            return False
    return False


# --------------------------------------------------------------------------------------------
# the join


def inventory(image: ImageFiles, lock: Lock) -> Inventory:
    namespace, distro = distro_qualifier(os_release(image))
    debs = _debian_packages(image, lock, namespace, distro)
    wheels = _python_packages(image, lock)
    return Inventory(image=image.subject, distro=distro, debs=debs, wheels=wheels)


def _mismatch(
    kind: str, only_image: list[str], only_lock: list[str], versions: list[str]
) -> LockError | None:
    problems = []
    if only_image:
        problems.append(f"in the image but not in the lock: {', '.join(only_image)}")
    if only_lock:
        problems.append(f"in the lock but not in the image: {', '.join(only_lock)}")
    if versions:
        problems.append(f"different versions (image ≠ lock): {', '.join(versions)}")
    if not problems:
        return None
    return LockError(
        f"the image's {kind} do not match the lock: " + "; ".join(problems),
        hint="pass the lock the image was built from with --lock",
    )


def installed_debs(image: ImageFiles) -> dict[str, dict[str, str]]:
    """The image's dpkg ``status.d`` records: package name → its control fields."""
    stanzas: dict[str, dict[str, str]] = {}
    for path in sorted(image.files):
        m = _STATUS.fullmatch(path)
        if m is None or m.group(1).endswith((".md5sums", ".list")):
            continue
        fields = parse_stanza(image.files[path].decode("utf-8", "replace"))
        if not fields.get("Package") or not fields.get("Version"):
            raise ArchiveError(f"image file /{path}: not a dpkg status record (no Package/Version)")
        stanzas[fields["Package"]] = fields
    return stanzas


def _debian_packages(
    image: ImageFiles, lock: Lock, namespace: str, distro: str
) -> tuple[DebPackage, ...]:
    stanzas = installed_debs(image)
    locked = {d.name: d for d in lock.debs}
    error = _mismatch(
        "Debian packages",
        sorted(stanzas.keys() - locked.keys()),
        sorted(locked.keys() - stanzas.keys()),
        sorted(
            f"{n} {stanzas[n]['Version']} ≠ {locked[n].version}"
            for n in stanzas.keys() & locked.keys()
            if stanzas[n]["Version"] != locked[n].version
        ),
    )
    if error:
        raise error
    provides: dict[str, str] = {name: name for name in stanzas}
    for name, fields in sorted(stanzas.items()):
        for virtual in fields.get("Provides", "").replace("\n", " ").split(","):
            v = re.split(r"[\s(:]", virtual.strip(), maxsplit=1)[0]
            if v:
                provides.setdefault(v, name)
    out = []
    for name, fields in sorted(stanzas.items()):
        lk = locked[name]
        depends = sorted(
            {
                next(provides[n] for n in alts if n in provides)
                for alts in _depends_names(fields)
                if any(n in provides for n in alts)
            }
            - {name}
        )
        source, source_version = _source_of(fields)
        text = copyright_text(image, name)
        lic = (
            License(source=f"/usr/share/doc/{name}/copyright (missing)")
            if text is None
            else debian_license(text, name)
        )
        arch = fields.get("Architecture", lk.architecture)
        out.append(
            DebPackage(
                name=name,
                version=fields["Version"],
                architecture=arch,
                source=source,
                source_version=source_version,
                maintainer=fields.get("Maintainer", ""),
                license=lic,
                sha256=lk.sha256,
                filename=lk.filename,
                depends=tuple(depends),
                purl=deb_purl(name, fields["Version"], arch, distro, namespace),
            )
        )
    return tuple(out)


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def installed_dists(image: ImageFiles) -> dict[str, tuple[Message, str]]:
    """The image's Python distributions (Debian's own left out): canonical name → (its
    METADATA, the Python version it is installed for)."""
    parser = email.parser.BytesParser()
    found: dict[str, tuple[Message, str]] = {}
    for path in sorted(image.files):
        m = _METADATA.fullmatch(path)
        if m is None or _DEBIAN_PYTHON.fullmatch(path):
            continue
        metadata = parser.parsebytes(image.files[path], headersonly=False)
        name = str(metadata.get("Name") or "")
        if not name or not metadata.get("Version"):
            raise ArchiveError(f"image file /{path}: METADATA without Name/Version")
        py = re.search(r"/python(3\.\d+)/", f"/{path}")
        found[canonicalize_name(name)] = (metadata, py.group(1) if py else "3")
    return found


def _python_packages(image: ImageFiles, lock: Lock) -> tuple[PyPackage, ...]:
    found = installed_dists(image)
    locked: dict[str, LockedWheel] = {canonicalize_name(w.name): w for w in lock.wheels}
    error = _mismatch(
        "Python distributions",
        sorted(found.keys() - locked.keys()),
        sorted(locked.keys() - found.keys()),
        sorted(
            f"{k} {found[k][0]['Version']} ≠ {locked[k].version}"
            for k in found.keys() & locked.keys()
            if not _same_version(str(found[k][0]["Version"]), locked[k].version)
        ),
    )
    if error:
        raise error
    installed = set(found)
    arch = image.subject.architecture
    out = []
    for key, (metadata, pyver) in sorted(found.items()):
        name, version = str(metadata["Name"]), str(metadata["Version"])
        lk = locked[key]
        out.append(
            PyPackage(
                name=name,
                version=version,
                license=python_license(metadata, name),
                sha256=lk.sha256,
                filename=lk.filename,
                depends=tuple(
                    n
                    for n in _requirement_names(
                        metadata, installed, _target_environment(pyver, arch)
                    )
                    if n != key
                ),
                purl=pypi_purl(name, version),
            )
        )
    return tuple(out)
