"""Bytecode: ``.pyc`` files compiled by the image's own interpreter, in unchecked-hash mode.

The host's Python may be another version, and bytecode must match the target's magic number;
on a read-only root nothing can be compiled at start, so it is done at build time. Each
``.pyc`` joins the layer of its source.

A foreign architecture's image (arm64 built on amd64) runs none of its own code at build time:
bytecode depends on the CPython version and the source, not on the machine (marshal is
little-endian everywhere; the unchecked-hash source hash is SipHash of the bytes), so the
host architecture's interpreter of the same Debian Python compiles it (:class:`CrossCompiler`)
with the image's paths. The multi-platform test compares the result with what the arm64
interpreter writes under qemu-user.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from hardflow.build.staging import ProgressFn, StageTree
from hardflow.errors import BuildError
from hardflow.spec import ImageSpec

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

    The chroot also confines the compiler's writes: a symlink in the tree resolves inside it.
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
                # the .pyc files and __pycache__ folders are made under the compilers' umask:
                # fixed, or a builder's umask 002 or 077 gives other modes, other digests
                umask=0o022,
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
    removing any bytecode that came with packages: only the target interpreter's counts.

    Only real directories are searched (a Python directory that is a symlink could point
    anywhere on the host), and a packaged ``__pycache__`` is removed whatever it is, a
    symlink included, without following it."""
    pyver = spec.python.version
    candidates = (
        f"usr/lib/python{pyver}",
        f"usr/local/lib/python{pyver}",
        "usr/local/lib/hardflow",
    )
    roots = [tree.path(r) for r in candidates if tree.is_dir(r)]
    for r in roots:
        for cache in list(r.rglob("__pycache__")):  # rglob does not enter symlinked dirs
            tree.remove(str(cache.relative_to(tree.root)))
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


_HOST_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def host_architecture() -> str:
    """The Debian architecture whose programs this machine runs natively."""
    machine = platform.machine()
    return _HOST_ARCHITECTURES.get(machine, machine)


class CrossCompiler:
    """A :data:`Compiler` for a foreign architecture's tree: the host architecture's image
    tree (``interpreter_root()``, prepared on first use) compiles it in its chroot.

    The sources are hard-linked (copied across file systems) into a scratch folder inside
    that tree, compiled there with their image paths as ``dfile`` (so ``co_filename`` is the
    image's), and each ``.pyc`` is moved back beside its source. ``cache_id`` names the
    compiler in the layer cache keys (the host interpreter's packages)."""

    def __init__(
        self, interpreter_root: Callable[[], Path], cache_id: str, inner: Compiler | None = None
    ) -> None:
        self.interpreter_root = interpreter_root
        self.cache_id = cache_id
        self.inner = inner or chroot_compiler

    def __call__(self, root: Path, jobs: Sequence[CompileJob], spec: ImageSpec) -> None:
        host = self.interpreter_root()
        scratch = Path(tempfile.mkdtemp(prefix=".hardflow-xc-", dir=host))
        try:
            for src, _ in jobs:
                link = scratch / src
                link.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(root / src, link, follow_symlinks=False)
                except OSError:
                    shutil.copy2(root / src, link, follow_symlinks=False)
            prefix = scratch.name
            self.inner(host, [(f"{prefix}/{src}", shown) for src, shown in jobs], spec)
            tag = f"cpython-{spec.python.version.replace('.', '')}"
            for src, _ in jobs:
                path = PurePosixPath(src)
                rel = path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc"
                made = scratch / rel
                if not made.is_file() or made.is_symlink():
                    continue  # not valid Python: stays source-only, as in the chroot
                dest = root / rel
                if not dest.parent.is_dir():
                    dest.parent.mkdir()
                    os.chmod(dest.parent, stat.S_IMODE(made.parent.stat().st_mode))
                os.replace(made, dest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
