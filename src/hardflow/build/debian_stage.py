"""The Debian stage: the ``debian-base`` and ``python-runtime`` trees from the verified ``.deb``s.

Every package is unpacked into one :class:`~hardflow.build.staging.StageTree` (sorted by name,
later packages overwrite earlier ones' files), with the image contract's Debian passes: no
docs/man/locales, merged-/usr, no setuid/setgid bits (cleared by the tree), a generated CA
bundle, the interpreter aliases, and ``/var/lib/dpkg/status.d`` records for scanners.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hardflow.build.plan import HARDFLOW_WRITES, deb_layer, debian_release
from hardflow.build.prune import prune
from hardflow.build.staging import ProgressFn, StageTree
from hardflow.debian.deb import DebContents, DebMember, read_deb
from hardflow.errors import ArchiveError, BuildError
from hardflow.fsutil import ConfinementError
from hardflow.lock.model import LockedDeb
from hardflow.spec import ImageSpec

MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Package content that no container needs at run time. Copyright files are kept (licences).
DROP_PREFIXES = (
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
    "usr/share/linda/",
    "usr/share/bug/",
    "usr/share/doc-base/",
    "usr/share/gtk-doc/",
    "usr/share/bash-completion/",
    "usr/share/menu/",
    "etc/cron.daily/",
    "etc/logrotate.d/",
    "etc/init.d/",
    "usr/lib/systemd/",
)


@dataclass(frozen=True)
class DebInput:
    locked: LockedDeb
    path: Path


def normalise(path: str) -> str:
    """Relative, merged-/usr form of a package path ('./bin/bash' → 'usr/bin/bash')."""
    p = path.lstrip("./") if path.startswith("./") else path.lstrip("/")
    p = str(PurePosixPath(p)) if p else ""
    head = p.split("/", 1)[0]
    if head in MERGED_USR:
        p = "usr/" + p
    return "" if p == "." else p


def keep_member(path: str) -> bool:
    if path.startswith(DROP_PREFIXES):
        return False
    if path.startswith("usr/share/doc/"):
        parts = path.split("/")
        # keep usr/share/doc/<pkg> (a directory or a symlink to another's) and its copyright
        return len(parts) == 4 or (len(parts) == 5 and parts[4] == "copyright")
    return True


def assemble_debian(
    spec: ImageSpec,
    debs: Sequence[DebInput],
    staging: Path,
    progress: ProgressFn | None = None,
) -> StageTree:
    """The ``debian-base`` and ``python-runtime`` tree (not yet compiled or finished).

    Both layers come from one unpacking of every ``.deb`` (sorted by name, later packages
    overwrite earlier ones' files), so they are one stage and change together.
    """
    tree = StageTree.fresh(staging)
    for top in ("bin", "sbin", "lib", "lib64"):
        tree.directory(f"usr/{top}", 0o755, "debian-base")
        tree.symlink(top, f"usr/{top}", "debian-base")
    tree.directory("tmp", 0o1777, "debian-base")

    for i, deb in enumerate(sorted(debs, key=lambda d: d.locked.name)):
        _unpack_deb(tree, deb, read_deb(deb.path))
        if progress:
            progress("unpack debs", i + 1, len(debs))
    _ca_bundle(tree)
    _python_runtime(tree, spec)
    _debian_identity(tree, spec)
    pruned = prune(tree.root, spec, tree.layer_of)  # docs/shrinking.md: what goes and why
    tree.dropped += sum(pruned.removed.values())
    return tree


def _unpack_deb(tree: StageTree, deb: DebInput, contents: DebContents) -> None:
    layer = deb_layer(deb.locked.name)
    data_of: dict[str, bytes] = {}
    for m in contents.members:
        rel = normalise(m.path)
        if not rel or rel in MERGED_USR:
            continue
        if not keep_member(rel):
            tree.dropped += m.kind == "file"
            continue
        try:
            _unpack_member(tree, m, rel, layer, data_of)
        except ConfinementError as exc:
            raise ArchiveError(
                f"{deb.path} ({deb.locked.name} {deb.locked.version}): member {m.path!r}: "
                f"{exc.reason}",
                hint="the package would write outside the image tree or through a symlink; "
                "it is malformed or malicious: do not use it",
            ) from None
    name = deb.locked.name
    record = status_record(contents.control_text)
    tree.file(f"var/lib/dpkg/status.d/{name}", record.encode(), 0o644, layer)


def _unpack_member(
    tree: StageTree, m: DebMember, rel: str, layer: str, data_of: dict[str, bytes]
) -> None:
    if m.kind == "dir":
        tree.directory(rel, m.mode, layer)
    elif m.kind == "file":
        data_of[rel] = m.data
        tree.file(rel, m.data, m.mode, layer)
    elif m.kind == "symlink":
        tree.symlink(rel, m.link, layer)
    elif m.kind == "hardlink":
        target = normalise(m.link)
        if target not in data_of:
            return  # its target was dropped (e.g. a doc file): drop the link too
        tree.file(rel, data_of[target], m.mode, layer)


def status_record(control_text: str) -> str:
    """A dpkg status stanza (as distroless writes them) from a package's control file."""
    lines = [ln for ln in control_text.strip("\n").splitlines() if not ln.startswith("Status:")]
    out: list[str] = []
    for ln in lines:
        out.append(ln)
        if ln.startswith("Package:"):
            out.append("Status: install ok installed")
    return "\n".join(out) + "\n"


def _ca_bundle(tree: StageTree) -> None:
    """/etc/ssl/certs/ca-certificates.crt from the package's certificates, in a fixed order.

    Only regular files of the tree are read: a certificate that is a symlink could point at
    any file of the host, whose content would then end up in the image."""
    if not tree.is_dir("usr/share/ca-certificates"):
        return
    certs_dir = tree.path("usr/share/ca-certificates")
    # rglob does not descend into symlinked directories
    certs = sorted(p for p in certs_dir.rglob("*.crt") if p.is_file() and not p.is_symlink())
    bundle = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in certs)
    tree.file("etc/ssl/certs/ca-certificates.crt", bundle, 0o644, "debian-base")
    # OpenSSL's compiled-in defaults (OPENSSLDIR=/usr/lib/ssl) point here; the openssl
    # package that usually makes these links is excluded.
    tree.symlink("usr/lib/ssl/certs", "/etc/ssl/certs", "debian-base")
    tree.symlink("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt", "debian-base")


def _python_runtime(tree: StageTree, spec: ImageSpec) -> None:
    # lstat, not exists(): an absolute symlink would be resolved against the host's root
    interp = spec.python.interpreter_path.lstrip("/")
    if tree.lstat(interp) is None:
        raise BuildError(
            f"the target interpreter {spec.python.interpreter_path} is not in the image",
            hint=f"add python{spec.python.version} to debian.packages in {spec.source}",
        )
    name = PurePosixPath(interp).name
    for alias in ("usr/bin/python3", "usr/bin/python"):
        if tree.lstat(alias) is None:
            tree.symlink(alias, name, "python-runtime")


def _debian_identity(tree: StageTree, spec: ImageSpec) -> None:
    """Files the hardflow layer writes (accounts, os-release) leave the Debian layers, so no
    path is in two layers; ``/etc/debian_version`` is there for scanners."""
    for loc in HARDFLOW_WRITES:
        tree.remove(loc)
        tree.layer_of.pop(loc, None)
    _, version_id = debian_release(spec)
    if version_id and tree.lstat("etc/debian_version") is None:
        tree.file("etc/debian_version", f"{version_id}\n".encode(), 0o644, "debian-base")
