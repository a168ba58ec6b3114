"""Assemble the image's file tree from verified packages: the ``assemble`` stage.

Input: the spec, the verified ``.deb`` and wheel files. Output: a :class:`RootFS` — a staging
directory on disk plus, for every path, its owner and the layer it belongs to. The hardening
passes of the image contract (DESIGN.md §3) happen here: no docs/man/locales, merged-/usr, no
setuid/setgid bits, nothing world-writable but ``/tmp``, accounts without writing at run time,
a generated CA bundle, dpkg ``status.d`` records and Python ``dist-info`` for scanners, and
``.pyc`` files compiled by the image's own interpreter in unchecked-hash mode.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name

from hardflow.build.layers import LayerSpec
from hardflow.build.prune import prune
from hardflow.debian.deb import DebContents, read_deb
from hardflow.errors import BuildError
from hardflow.lock.model import LockedDeb, LockedWheel
from hardflow.pypi.install import install_wheel
from hardflow.spec import ImageSpec, read_extra_file

WHEEL_LAYERS = 8  # third-party wheels are spread over this many layers (see wheel_layer)
# paths _accounts_and_identity writes: removed from the Debian layers if a package ships them
HARDFLOW_WRITES = ("etc/passwd", "etc/group", "etc/shadow", "etc/nsswitch.conf",
                   "etc/os-release", "usr/lib/os-release")  # fmt: skip
STAGE_DIR = ".hardflow-stage"  # stages of the upper layers sit here inside the base tree
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
PYTHON_PACKAGES_PREFIXES = ("python3", "libpython3")
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class DebInput:
    locked: LockedDeb
    path: Path


@dataclass(frozen=True)
class WheelInput:
    locked: LockedWheel
    path: Path


@dataclass(frozen=True)
class Stage:
    """A finished stage: a directory and the layers cut from it (paths relative to ``root``)."""

    root: Path
    owners: dict[str, tuple[int, int]]
    layers: tuple[LayerSpec, ...]
    setuid_cleared: tuple[str, ...]
    dropped_files: int
    pyc_compiled: int
    notes: tuple[str, ...] = field(default=())


def deb_layer(name: str) -> str:
    return "python-runtime" if name.startswith(PYTHON_PACKAGES_PREFIXES) else "debian-base"


def wheel_layer(name: str, buckets: int = WHEEL_LAYERS) -> str:
    """The layer a wheel goes to: ``airflow`` for Airflow's own distributions, else one of
    ``buckets`` layers ``wheels-<i>`` chosen by a hash of the project name.

    The rule is stable: a package keeps its layer across versions, and adding or removing one
    package changes only its own layer. A version change therefore rebuilds one small layer
    instead of every third-party wheel.
    """
    canonical = canonicalize_name(name)
    if canonical.startswith("apache-airflow"):
        return "airflow"
    if buckets <= 1:
        return "wheels"
    digest = hashlib.sha256(canonical.encode()).digest()
    return f"wheels-{int.from_bytes(digest[:4], 'big') % buckets}"


def layer_order(buckets: int = WHEEL_LAYERS) -> tuple[str, ...]:
    """Every possible layer name, stable (Debian) to volatile (the spec's own files)."""
    wheels = ("wheels",) if buckets <= 1 else tuple(f"wheels-{i}" for i in range(buckets))
    return ("debian-base", "python-runtime", *wheels, "airflow", "hardflow")


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


class StageTree:
    """A stage's staging directory plus per-path owner and layer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layer_of: dict[str, str] = {}
        self.owners: dict[str, tuple[int, int]] = {}
        self.setuid_cleared: list[str] = []
        self.notes: list[str] = []
        self.dropped = 0

    def _dest(self, rel: str) -> Path:
        dest = self.root / rel
        # Defence in depth: read_deb and the wheel installer already reject escapes.
        if not os.path.abspath(dest).startswith(str(self.root) + os.sep):
            raise BuildError(f"refusing to write outside the image root: {rel!r}")
        return dest

    def _parents(self, rel: str, layer: str) -> None:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            target = self.root / d
            if target.is_symlink():
                continue
            if not target.exists():
                target.mkdir(mode=0o755)
                os.chmod(target, 0o755)
                self.layer_of.setdefault(d, layer)

    def _mode(self, rel: str, mode: int) -> int:
        if mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISDIR(mode | stat.S_IFREG):
            self.setuid_cleared.append(rel)
        mode &= ~(stat.S_ISUID | stat.S_ISGID)
        if rel != "tmp":
            mode &= ~0o002
        return mode

    def _clear(self, dest: Path) -> None:
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir():
            shutil.rmtree(dest)

    def file(self, rel: str, data: bytes, mode: int, layer: str) -> None:
        self._parents(rel, layer)
        dest = self._dest(rel)
        if dest.is_symlink() or dest.is_dir():
            self._clear(dest)
        dest.write_bytes(data)
        os.chmod(dest, self._mode(rel, mode) & 0o7777)
        self.layer_of[rel] = layer

    def symlink(self, rel: str, target: str, layer: str) -> None:
        self._parents(rel, layer)
        dest = self._dest(rel)
        if dest.is_symlink() or dest.exists():
            if dest.is_dir() and not dest.is_symlink():
                return  # a real directory wins over a compat symlink to it
            self._clear(dest)
        os.symlink(target, dest)
        self.layer_of[rel] = layer

    def directory(
        self, rel: str, mode: int, layer: str, owner: tuple[int, int] | None = None
    ) -> None:
        if not rel:
            return
        self._parents(rel, layer)
        dest = self._dest(rel)
        if dest.is_symlink():
            return  # e.g. a package's lib/ dir lands on the merged-/usr symlink
        if not dest.exists():
            dest.mkdir()
        os.chmod(dest, self._mode(rel, mode) & 0o7777 if rel != "tmp" else 0o1777)
        self.layer_of.setdefault(rel, layer)
        if owner:
            self.owners[rel] = owner

    def register(self, rel: str, layer: str) -> None:
        self.layer_of[rel] = layer


# ---------------------------------------------------------------------------------------------
# Stages: each builds the tree of one or more layers from its own inputs only


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
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    tree = StageTree(staging.resolve())
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


def assemble_wheels(
    spec: ImageSpec,
    layer: str,
    wheels: Sequence[WheelInput],
    staging: Path,
    links: Path,
    progress: ProgressFn | None = None,
) -> StageTree:
    """One wheel layer's tree: its wheels installed on an empty root, then the key and prune
    passes. It sees no other layer's files, so its bytes depend on its own wheels alone."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    tree = StageTree(staging.resolve())
    # The cache names files by hash; wheel installers need the real file name (it carries
    # the name, version and tags), so each wheel is linked under its name first.
    links.mkdir(parents=True, exist_ok=True)
    for whl in sorted(wheels, key=lambda w: w.locked.name):
        link = links / whl.locked.filename
        link.unlink(missing_ok=True)
        link.symlink_to(whl.path.resolve())
        installed = install_wheel(
            link, tree.root, spec.python.version, spec.python.interpreter_path
        )
        for rel in installed.files:
            tree.register(rel, layer)
        if progress:
            progress("install wheels", 1, 0)
    tree.notes.extend(
        f"removed private key shipped as test data: /{k}"
        for k in _drop_test_private_keys(tree, spec)
    )
    pruned = prune(tree.root, spec, tree.layer_of)
    tree.dropped += sum(pruned.removed.values())
    return tree


def assemble_hardflow(spec: ImageSpec, staging: Path) -> StageTree:
    """The ``hardflow`` layer: accounts, identity, the spec's files and AIRFLOW_HOME."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    tree = StageTree(staging.resolve())
    _accounts_and_identity(tree, spec)
    _spec_files(tree, spec)
    _airflow_home(tree, spec)
    return tree


def finish(tree: StageTree, order: Sequence[str], pyc_compiled: int) -> Stage:
    """Modes normalised and the tree split into its layers (in ``order``)."""
    _normalise_modes(tree)
    by_layer: dict[str, list[str]] = {name: [] for name in order}
    for rel, layer in tree.layer_of.items():
        if layer not in by_layer:
            raise BuildError(f"internal: path {rel!r} was given to unknown layer {layer!r}")
        by_layer[layer].append(rel)
    layers = tuple(
        LayerSpec(name=name, paths=tuple(sorted(paths)))
        for name, paths in by_layer.items()
        if paths
    )
    return Stage(
        root=tree.root,
        owners=dict(tree.owners),
        layers=layers,
        setuid_cleared=tuple(sorted(tree.setuid_cleared)),
        dropped_files=tree.dropped,
        pyc_compiled=pyc_compiled,
        notes=tuple(tree.notes),
    )


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
                continue  # its target was dropped (e.g. a doc file): drop the link too
            tree.file(rel, data_of[target], m.mode, layer)
    name = deb.locked.name
    record = status_record(contents.control_text)
    tree.file(f"var/lib/dpkg/status.d/{name}", record.encode(), 0o644, layer)


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
    """/etc/ssl/certs/ca-certificates.crt from the package's certificates, in a fixed order."""
    certs_dir = tree.root / "usr/share/ca-certificates"
    if not certs_dir.is_dir():
        return
    certs = sorted(p for p in certs_dir.rglob("*.crt") if p.is_file())
    bundle = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in certs)
    tree.file("etc/ssl/certs/ca-certificates.crt", bundle, 0o644, "debian-base")
    # OpenSSL's compiled-in defaults (OPENSSLDIR=/usr/lib/ssl) point here; the openssl
    # package that usually makes these links is excluded.
    tree.symlink("usr/lib/ssl/certs", "/etc/ssl/certs", "debian-base")
    tree.symlink("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt", "debian-base")


def _python_runtime(tree: StageTree, spec: ImageSpec) -> None:
    interp = spec.python.interpreter_path.lstrip("/")
    if not (tree.root / interp).exists():
        raise BuildError(
            f"the target interpreter {spec.python.interpreter_path} is not in the image",
            hint=f"add python{spec.python.version} to debian.packages in {spec.source}",
        )
    name = PurePosixPath(interp).name
    for alias in ("usr/bin/python3", "usr/bin/python"):
        if not (tree.root / alias).exists():
            tree.symlink(alias, name, "python-runtime")


_TEST_DIRS = frozenset({"test", "tests", "testing", "testdata", "test_data"})


def _drop_test_private_keys(tree: StageTree, spec: ImageSpec) -> list[str]:
    """Remove private keys that packages ship as test data (e.g. a web framework's TLS test
    key). The image contract allows no secret in any layer, and these protect nothing; the
    files live in test directories that no run-time import reads."""
    site = tree.root / f"usr/local/lib/python{spec.python.version}"
    removed: list[str] = []
    if not site.is_dir():
        return removed
    for path in sorted(site.rglob("*")):
        if not _TEST_DIRS & set(path.relative_to(site).parts[:-1]):
            continue
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 256 * 1024:
            continue
        if b"PRIVATE KEY-----" in path.read_bytes():
            rel = str(path.relative_to(tree.root))
            path.unlink()
            tree.layer_of.pop(rel, None)
            removed.append(rel)
    return removed


def _accounts_and_identity(tree: StageTree, spec: ImageSpec) -> None:
    u, home = spec.user, spec.home
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{u}:x:{spec.uid}:{spec.gid}:{u}:{home}:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = "root:x:0:\n" + (f"{u}:x:{spec.gid}:\n" if spec.gid else "") + "nogroup:x:65534:\n"
    shadow = f"root:*:0:0:99999:7:::\n{u}:*:0:0:99999:7:::\nnobody:*:0:0:99999:7:::\n"
    tree.file("etc/passwd", passwd.encode(), 0o644, "hardflow")
    tree.file("etc/group", group.encode(), 0o644, "hardflow")
    tree.file("etc/shadow", shadow.encode(), 0o640, "hardflow")
    tree.file(
        "etc/nsswitch.conf",
        b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
        b"protocols: files\nservices: files\n",
        0o644,
        "hardflow",
    )
    codename, version_id = debian_release(spec)
    os_release = (
        f'PRETTY_NAME="hardflow {spec.name}:{spec.tag} (Debian GNU/Linux {version_id} '
        f'({codename}) packages)"\n'
        'NAME="Debian GNU/Linux"\n'
        f'VERSION_ID="{version_id}"\n'
        f'VERSION="{version_id} ({codename})"\n'
        f"VERSION_CODENAME={codename}\n"
        "ID=debian\n"
        "VARIANT=hardflow\n"
        "VARIANT_ID=hardflow\n"
    )
    tree.file("usr/lib/os-release", os_release.encode(), 0o644, "hardflow")
    tree.symlink("etc/os-release", "../usr/lib/os-release", "hardflow")


def debian_release(spec: ImageSpec) -> tuple[str, str]:
    """(codename, VERSION_ID) of the spec's Debian release ("" when unknown)."""
    codename = next((s for s in spec.debian.suites if "-" not in s), spec.debian.suites[0])
    return codename, {"bookworm": "12", "trixie": "13", "forky": "14"}.get(codename, "")


def _debian_identity(tree: StageTree, spec: ImageSpec) -> None:
    """Files the hardflow layer writes (accounts, os-release) leave the Debian layers, so no
    path is in two layers; ``/etc/debian_version`` is there for scanners."""
    for loc in HARDFLOW_WRITES:
        path = tree.root / loc
        if path.is_symlink() or path.exists():
            path.unlink()
        tree.layer_of.pop(loc, None)
    _, version_id = debian_release(spec)
    if version_id and not (tree.root / "etc/debian_version").exists():
        tree.file("etc/debian_version", f"{version_id}\n".encode(), 0o644, "debian-base")


def _spec_files(tree: StageTree, spec: ImageSpec) -> None:
    for f in spec.files:
        rel = f.dest.lstrip("/")
        tree.file(rel, read_extra_file(spec, f), f.mode, "hardflow")
        if rel.startswith(spec.home.lstrip("/") + "/"):
            tree.owners[rel] = (spec.uid, spec.gid)


def _airflow_home(tree: StageTree, spec: ImageSpec) -> None:
    owner = (spec.uid, spec.gid)
    home = spec.home.lstrip("/")
    for rel in (home, f"{home}/dags", f"{home}/logs", f"{home}/plugins"):
        # group rights equal user rights, so an arbitrary UID in GID 0 can write (OpenShift)
        tree.directory(rel, 0o775, "hardflow", owner)
        tree.layer_of[rel] = "hardflow"


def _normalise_modes(tree: StageTree) -> None:
    """Files readable by all; nothing world-writable but /tmp; no set-id bits anywhere."""
    for dirpath, dirnames, filenames in os.walk(tree.root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            rel = str(p.relative_to(tree.root))
            mode = stat.S_IMODE(st.st_mode)
            new = tree._mode(rel, mode) if rel != "tmp" else 0o1777
            if new != mode:
                os.chmod(p, new)


# ---------------------------------------------------------------------------------------------
# Bytecode

_COMPILE_SCRIPT = r"""
import py_compile, sys
ok = 0
for line in sys.stdin:
    path, _, shown = line.rstrip("\n").partition("\t")
    try:
        py_compile.compile(path, dfile=shown or path, doraise=True, quiet=2,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        ok += 1
    except (py_compile.PyCompileError, SyntaxError, UnicodeDecodeError, ValueError):
        pass  # files that are not valid Python 3 (templates, test data) stay source-only
print(ok)
"""


CompileJob = tuple[str, str]
"""(path of a ``.py`` relative to the compile root, its path in the image, for ``co_filename``).

The two differ for the upper layers' stages, which sit below ``STAGE_DIR`` in the base tree;
bytecode compiled with the image path as ``dfile`` is byte for byte what compiling the file at
that path gives."""

Compiler = Callable[[Path, Sequence[CompileJob], ImageSpec], None]
"""Compiles the given ``.py`` files under the compile root to ``__pycache__`` in place."""


def chroot_compiler(root: Path, jobs_: Sequence[CompileJob], spec: ImageSpec) -> None:
    """Run the image's own interpreter over the tree (chroot; ``unshare -r`` when not root).

    The host's Python may be another version, and bytecode must match the target's magic
    number; on a read-only root nothing can be compiled at start, so it is done here.
    ``PYTHONHASHSEED=0`` keeps marshalled sets/frozensets in a stable order.
    """
    jobs = max(1, min(os.cpu_count() or 1, 4))
    chunks = [jobs_[i::jobs] for i in range(jobs)]
    chroot = shutil.which("chroot") or shutil.which("chroot", path="/usr/sbin:/sbin") or "chroot"
    base = [chroot, str(root)]
    if os.geteuid() != 0:
        base = [shutil.which("unshare") or "unshare", "--map-root-user", *base]
    # -B: the compiling processes import stdlib modules (functools, _colorize, ...) from the
    # tree; without -B they write timestamp .pyc files for them and race with the process
    # that py_compiles the same file, so the layer differed from build to build.
    # -s -S -P rather than -I: -I implies -E, which ignores PYTHONHASHSEED. The environment is
    # built here from scratch, so -E would isolate nothing more.
    argv = [*base, spec.python.interpreter_path, "-B", "-s", "-S", "-P", "-c", _COMPILE_SCRIPT]
    env = {"PYTHONHASHSEED": "0", "LANG": "C.UTF-8", "PATH": "/usr/bin"}
    procs = []
    try:
        for chunk in chunks:
            if not chunk:
                continue
            p = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, text=True,
            )  # fmt: skip
            procs.append((p, "".join(f"/{src}\t{shown}\n" for src, shown in chunk)))
        results = [p.communicate(data) for p, data in procs]
    except FileNotFoundError as exc:
        raise BuildError(f"cannot run the image's interpreter to compile bytecode: {exc}") from None
    for (p, _), (_out, err) in zip(procs, results, strict=True):
        if p.returncode != 0:
            raise BuildError(
                f"compiling bytecode with {spec.python.interpreter_path} failed "
                f"(exit {p.returncode}): {err.strip()[-2000:]}",
                hint="building needs root or unprivileged user namespaces (unshare -r)",
            )


def bytecode_sources(tree: StageTree, spec: ImageSpec) -> list[str]:
    """The ``.py`` files of the tree's Python directories (relative to the tree), after
    removing any bytecode that came with packages: only the target interpreter's counts."""
    pyver = spec.python.version
    candidates = (
        f"usr/lib/python{pyver}",
        f"usr/local/lib/python{pyver}",
        "usr/local/lib/hardflow",
    )
    roots = [tree.root / r for r in candidates if (tree.root / r).is_dir()]
    for r in roots:
        for cache in list(r.rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)
    return sorted(
        str(p.relative_to(tree.root))
        for r in roots
        for p in r.rglob("*.py")
        if p.is_file() and not p.is_symlink()
    )


def compile_stages(
    compile_root: Path,
    trees: Sequence[StageTree],
    spec: ImageSpec,
    progress: ProgressFn | None = None,
    compiler: Compiler | None = None,
) -> list[int]:
    """Compile the ``.py`` files of every tree (each at or below ``compile_root``, which holds
    the interpreter) in one run; each ``.pyc`` joins its source's layer. Returns the number
    compiled per tree."""
    per_tree: list[tuple[StageTree, str, list[str]]] = []
    jobs: list[CompileJob] = []
    for tree in trees:
        prefix = os.path.relpath(tree.root, compile_root)
        if prefix.startswith(".."):
            raise BuildError(f"internal: stage {tree.root} is not below {compile_root}")
        prefix = "" if prefix == "." else prefix + "/"
        sources = bytecode_sources(tree, spec)
        per_tree.append((tree, prefix, sources))
        jobs.extend((prefix + src, "/" + src) for src in sources)
    if jobs:
        (compiler or chroot_compiler)(compile_root, jobs, spec)
    tag = f"cpython-{spec.python.version.replace('.', '')}"
    counts: list[int] = []
    done = 0
    for tree, _prefix, sources in per_tree:
        count = 0
        for src in sources:
            path = PurePosixPath(src)
            pyc = path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc"
            if (tree.root / pyc).exists():
                count += 1
                layer = tree.layer_of.get(src, "hardflow")
                tree.register(str(pyc), layer)
                tree.layer_of.setdefault(str(pyc.parent), layer)
        counts.append(count)
        done += count
    if progress and jobs:
        progress("compile bytecode", done, len(jobs))
    return counts
