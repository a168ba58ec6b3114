"""After assembly: every shared object's ``DT_NEEDED`` libraries must be in the image.

A library the image lacks surfaces only when the code that loads it runs, often in production
(``ImportError: libxml2.so.2: cannot open shared object file``). This check finds it at build
time: it reads the dynamic-linking facts of every ELF file in the image's layers
(:mod:`hardflow.build.elffacts`, cached per layer by diff_id, so a rebuild after a DAG edit
rescans only the top layer), merges the layers as a container engine does, and looks for each
``DT_NEEDED`` name where the dynamic loader would:

- the object's ``DT_RPATH`` (when it has no ``DT_RUNPATH``) and ``DT_RUNPATH``, with
  ``$ORIGIN`` (the object's own directory: auditwheel's ``<pkg>.libs``) and ``$LIB`` expanded;
- ``LD_LIBRARY_PATH`` of the image's environment;
- the directories of ``/etc/ld.so.conf`` (and its ``include`` files), but only when the image
  carries the ``/etc/ld.so.cache`` they are compiled into: without it the loader never reads
  them;
- the loader's built-in directories for the architecture: ``/lib/<triplet>``,
  ``/usr/lib/<triplet>``, ``/lib``, ``/usr/lib`` (Debian's ld.so; on a merged-/usr image
  ``/lib`` is a symlink and is followed like any other);
- the loader itself (``ld-linux-x86-64.so.2``, ``ld-linux-aarch64.so.1``) is always loaded, so
  it counts when the image has the architecture's interpreter path.

A name counts as found when the path resolves inside the image (symlinks followed, at most 40)
to an ELF file of the same machine: a text file or a 32-bit library of that name is skipped
by the loader, and so here. A program's ``PT_INTERP`` must resolve the same way.

Whatever is missing fails the build, grouped by library, naming each file that needs it and,
when the archive's Contents indices can be searched (:mod:`hardflow.debian.contents`), the
Debian package that provides it, so that the fix is one line in ``[debian] packages``. The
lookup runs only when something is missing.

Files that can never be loaded in the image and would only trip the check are pruned
(:mod:`hardflow.build.prune`); :data:`ALLOWED` lists the few NEEDED entries accepted with
their reason. Architectures other than x86-64 and AArch64 are not checked (a note says so).
"""

from __future__ import annotations

import fnmatch
import posixpath
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hardflow.build.elf import EM_AARCH64, EM_X86_64
from hardflow.build.elffacts import DIR, FILE, LINK, Entry, FactsCache, LayerFacts, layer_facts
from hardflow.debian.contents import (
    ListedFile,
    Lookup,
    Provider,
    SuiteSource,
    find_providers,
)
from hardflow.errors import HardflowError, LinkError
from hardflow.lock.fetch import Artifact, Cache, http_get
from hardflow.lock.mirrors import resolve_mirrors
from hardflow.oci.layer import Layer
from hardflow.oci.stream import merge_layer
from hardflow.progress import NullProgress, Progress
from hardflow.spec import ImageSpec

MAX_LINKS = 40  # as the kernel and the loader: more symlinks in one path is a loop
MAX_FILES_SHOWN = 8


@dataclass(frozen=True)
class Arch:
    debian: str
    machine: int
    triplet: str
    interpreter: str  # the PT_INTERP path of the architecture's programs


ARCHES = {
    "amd64": Arch("amd64", EM_X86_64, "x86_64-linux-gnu", "lib64/ld-linux-x86-64.so.2"),
    "arm64": Arch("arm64", EM_AARCH64, "aarch64-linux-gnu", "lib/ld-linux-aarch64.so.1"),
}


@dataclass(frozen=True)
class Allowance:
    """A NEEDED entry accepted although the image lacks the library, with the evidence."""

    path: str  # fnmatch pattern of the needing file's image path (no leading "/")
    library: str  # the DT_NEEDED name
    reason: str


# Empty: the embedded images need no exception (a file that can never load is pruned instead,
# see build/prune.py). An entry needs its evidence in ``reason``.
ALLOWED: tuple[Allowance, ...] = ()


@dataclass(frozen=True)
class Missing:
    library: str  # the DT_NEEDED name, or the interpreter's path
    needed_by: tuple[str, ...]  # image paths (no leading "/"), sorted
    interpreter: bool = False  # a program interpreter (PT_INTERP), not a DT_NEEDED entry


@dataclass(frozen=True)
class CheckResult:
    objects: int  # dynamic ELF files checked
    missing: tuple[Missing, ...]
    allowed: tuple[tuple[str, str], ...]  # (path, library) accepted by ALLOWED
    unreadable: tuple[tuple[str, str], ...]  # (path, why) ELF files that could not be read
    layers_scanned: int
    layers_cached: int
    notes: tuple[str, ...] = ()
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# the merged view


class ImageTree:
    """The merged file system of the layers, as far as linking is concerned."""

    def __init__(self, layers: Sequence[LayerFacts]) -> None:
        tree: dict[str, Entry] = {}
        conf: dict[str, str] = {}
        for facts in layers:
            merge_layer(tree, facts.entries, facts.whiteouts, lambda e: e.kind == DIR)
            conf.update(facts.conf)
        self.entries = tree
        self.conf = {path: text for path, text in conf.items() if path in tree}
        self._dirs: dict[str, str | None] = {"": ""}

    def _walk(self, path: str, links: int) -> tuple[str | None, int]:
        """The real path of ``path`` (every component's symlinks followed; it may not exist),
        or None when a file is used as a directory or the links loop."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        done: list[str] = []
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            current = "/".join([*done, part])
            entry = self.entries.get(current)
            if entry is not None and entry.kind == LINK:
                links += 1
                if links > MAX_LINKS:
                    return None, links
                target = [p for p in entry.target.split("/") if p not in ("", ".")]
                if entry.target.startswith("/"):
                    done = []
                parts = target + parts
                continue
            if entry is not None and entry.kind == FILE and parts:
                return None, links  # a file used as a directory
            done.append(part)
        return "/".join(done), links

    def real_dir(self, path: str) -> str | None:
        key = path.strip("/")
        if key not in self._dirs:
            real, _ = self._walk(key, 0)
            self._dirs[key] = real if real is not None and (
                real == "" or self.entries.get(real, Entry(DIR)).kind == DIR
            ) else None  # fmt: skip
        return self._dirs[key]

    def file(self, directory: str, name: str) -> tuple[str, Entry] | None:
        """The file ``directory/name`` resolves to (its real path and entry), if any."""
        real = self.real_dir(directory)
        if real is None:
            return None
        path, _ = self._walk(f"{real}/{name}" if real else name, 0)
        if path is None:
            return None
        entry = self.entries.get(path)
        if entry is None or entry.kind != FILE:
            return None
        return path, entry


def _conf_dirs(tree: ImageTree) -> list[str]:
    """Directories of /etc/ld.so.conf, following ``include`` lines (globs) once each."""
    if "etc/ld.so.conf" not in tree.conf:
        return []
    dirs: list[str] = []
    seen: set[str] = set()
    pending = ["etc/ld.so.conf"]
    while pending:
        path = pending.pop(0)
        if path in seen:
            continue
        seen.add(path)
        for raw in tree.conf.get(path, "").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line.startswith("include") and line[7:8] in (" ", "\t"):
                for pattern in line[8:].split():
                    pattern = pattern.lstrip("/") if pattern.startswith("/") else (
                        posixpath.join(posixpath.dirname(path), pattern)
                    )  # fmt: skip
                    pending.extend(sorted(p for p in tree.conf if fnmatch.fnmatch(p, pattern)))
            elif line.startswith("hwcap"):
                continue
            elif line:
                dirs.extend(d.lstrip("/") for d in line.replace(",", " ").split() if "=" not in d)
    return dirs


# ---------------------------------------------------------------------------------------------
# the check


def _expand(entry: str, origin: str, arch: Arch) -> str | None:
    """One RPATH/RUNPATH element with $ORIGIN/$LIB expanded; None when it cannot be known."""
    text = entry.replace("${ORIGIN}", "$ORIGIN").replace("${LIB}", "$LIB")
    text = text.replace("$ORIGIN", "/" + origin).replace("$LIB", f"lib/{arch.triplet}")
    if "$" in text or not text.startswith("/"):
        return None  # $PLATFORM, or relative to the working directory: unknowable here
    return text


def _search_dirs(path: str, rpath: str, runpath: str, fixed: Sequence[str],
                 arch: Arch) -> list[str]:  # fmt: skip
    origin = posixpath.dirname(path)
    own: list[str] = []
    for value in ([] if runpath else [rpath]) + [runpath]:
        for item in value.split(":"):
            if item and (expanded := _expand(item, origin, arch)) is not None:
                own.append(expanded)
    return own + list(fixed)


def find_missing(
    tree: ImageTree, arch: Arch, env: Mapping[str, str]
) -> tuple[int, list[Missing], list[tuple[str, str]]]:
    """(objects checked, what is missing, what :data:`ALLOWED` accepted) over ``tree``."""
    fixed: list[str] = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    if "etc/ld.so.cache" in tree.entries:
        fixed += _conf_dirs(tree)
    fixed += [f"lib/{arch.triplet}", f"usr/lib/{arch.triplet}", "lib", "usr/lib"]
    loader = posixpath.basename(arch.interpreter)
    has_loader = tree.file(posixpath.dirname(arch.interpreter), loader) is not None
    needers: dict[tuple[str, bool], list[str]] = {}
    allowed: list[tuple[str, str]] = []
    checked = 0

    def is_lib(found: tuple[str, Entry] | None) -> bool:
        return found is not None and found[1].elf is not None and (
            found[1].elf.machine == arch.machine
        )  # fmt: skip

    for path, entry in sorted(tree.entries.items()):
        elf = entry.elf
        if elf is None or elf.machine != arch.machine or entry.kind != FILE:
            continue
        checked += 1
        if elf.interpreter:
            interp = elf.interpreter.lstrip("/")
            if not is_lib(tree.file(posixpath.dirname(interp), posixpath.basename(interp))):
                needers.setdefault((elf.interpreter, True), []).append(path)
        dirs = _search_dirs(path, elf.rpath, elf.runpath, fixed, arch)
        for name in elf.needed:
            if "/" in name:
                found = is_lib(tree.file(posixpath.dirname(name), posixpath.basename(name)))
            elif name == loader and has_loader:
                found = True
            else:
                found = any(is_lib(tree.file(d, name)) for d in dirs)
            if found:
                continue
            if any(fnmatch.fnmatch(path, a.path) and a.library == name for a in ALLOWED):
                allowed.append((path, name))
                continue
            needers.setdefault((name, False), []).append(path)
    missing = [Missing(name, tuple(sorted(paths)), interp)
               for (name, interp), paths in sorted(needers.items())]  # fmt: skip
    return checked, missing, allowed


def check_tree(
    layers: Sequence[Layer],
    arch_name: str,
    env: Mapping[str, str],
    cache_root: Path,
    progress: Progress | None = None,
    jobs: int = 4,
) -> CheckResult:
    """Collect the layers' facts (cached by diff_id) and find what is missing."""
    t0 = time.monotonic()
    arch = ARCHES.get(arch_name)
    if arch is None:
        return CheckResult(0, (), (), (), 0, 0, notes=(
            f"shared libraries not checked: architecture {arch_name!r} is not one of "
            f"{', '.join(ARCHES)}",
        ))  # fmt: skip
    cache = FactsCache(cache_root)
    progress = progress or NullProgress()
    task = progress.task("check shared libraries", total=len(layers))

    lock = threading.Lock()

    def one(layer: Layer) -> tuple[LayerFacts, bool]:
        got = layer_facts(layer, cache)
        with lock:
            task.advance()
        return got

    workers = max(1, min(jobs, len(layers)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, layers))
    task.finish()
    tree = ImageTree([facts for facts, _ in results])
    checked, missing, allowed = find_missing(tree, arch, env)
    unreadable = tuple(
        (path, why)
        for facts, _ in results
        for path, why in facts.unreadable
        if tree.entries.get(path, Entry(DIR)).kind == FILE
    )
    cached = sum(1 for _, hit in results if hit)
    return CheckResult(checked, tuple(missing), tuple(allowed), unreadable,
                       len(results) - cached, cached,
                       seconds=time.monotonic() - t0)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the Debian package that provides a library, and the message


def candidate_paths(library: str, arch: Arch, interpreter: bool) -> list[str]:
    """Where a Debian package would put ``library`` (Contents paths, no leading slash)."""
    if interpreter:
        path = library.lstrip("/")
        return list(dict.fromkeys([path, f"usr/{path}"]))
    return [f"{d}/{library}" for d in (f"usr/lib/{arch.triplet}", f"lib/{arch.triplet}",
                                       "usr/lib", "lib")]  # fmt: skip


LookupFn = Callable[[Sequence[str]], Lookup]


def archive_lookup(spec: ImageSpec, cache: Cache) -> LookupFn:
    """Search the Contents indices of the spec's suites (through the download cache)."""

    def fetch(listed: ListedFile) -> Path:
        urls = list(listed.urls or (listed.url,))
        return cache.get(Artifact(listed.path, listed.sha256, listed.size, lambda: urls))

    def lookup(paths: Sequence[str]) -> Lookup:
        if cache.offline:
            return Lookup({}, ("--offline was given: the archive's Contents index was not "
                               "fetched",), ())  # fmt: skip
        try:
            mirrors = resolve_mirrors(spec.debian)
        except HardflowError as exc:
            return Lookup({}, (exc.message,), ())
        sources = [SuiteSource(mirrors.for_suite(s), s) for s in spec.debian.suites]
        return find_providers(sources, spec.debian.components, spec.debian.architecture,
                              Path(spec.debian.keyring), http_get, fetch, paths)  # fmt: skip

    return lookup


def _files(paths: Sequence[str]) -> str:
    shown = ", ".join(f"/{p}" for p in paths[:MAX_FILES_SHOWN])
    more = len(paths) - MAX_FILES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def describe(missing: Sequence[Missing], lookup: Lookup, arch: Arch, suites: Sequence[str],
             excludes: Collection[str] = ()) -> str:  # fmt: skip
    """The failure message: one line per missing library (``excludes``: the spec's)."""
    lines = [f"{len(missing)} shared "
             f"{'library is' if len(missing) == 1 else 'libraries are'} needed but not in the "
             "image:"]  # fmt: skip
    for item in missing:
        first, rest = item.needed_by[0], item.needed_by[1:]
        what = "needs the program interpreter" if item.interpreter else "needs"
        text = f"- /{first} {what} {item.library}, which the image does not have"
        if rest:
            text += f" (so do {_files(rest)})"
        providers: list[Provider] = []
        for path in candidate_paths(item.library, arch, item.interpreter):
            providers.extend(p for p in lookup.providers.get(path, ()) if p not in providers)
        if providers:
            order = {s: i for i, s in enumerate(suites)}
            providers.sort(key=lambda p: order.get(p.suite, len(order)))
            names = list(dict.fromkeys(p.package for p in providers))
            best = providers[0]
            text += f"; Debian package {best.package} ({best.suite}) provides it: " + (
                f'remove "{best.package}" from [debian] excludes'
                if best.package in excludes
                else f'add "{best.package}" to [debian] packages'
            )
            if len(names) > 1:
                text += f" (also provided by {', '.join(names[1:])})"
        elif lookup.searched and not lookup.problems:
            text += (
                f"; no Debian package of {', '.join(suites)} provides it (searched "
                f"{'; '.join(lookup.searched)}): it must come from a wheel or be removed"
            )
        else:
            why = "; ".join(" ".join(p.split()) for p in lookup.problems) or (
                "no Contents index was searched"
            )
            text += f"; the Debian package that provides it could not be looked up ({why})"
        lines.append(text)
    return "\n".join(lines)


def check_shared_libraries(
    spec: ImageSpec,
    layers: Sequence[Layer],
    cache: Cache,
    facts_dir: Path | None = None,
    progress: Progress | None = None,
    lookup: LookupFn | None = None,
) -> CheckResult:
    """Fail (:class:`~hardflow.errors.LinkError`) when a shared object of the image needs a
    library the image does not have; otherwise return what was checked.

    ``facts_dir`` is the layer cache's root (default: the download cache's); ``lookup``
    replaces the archive search (tests).
    """
    progress = progress or NullProgress()
    result = check_tree(layers, spec.debian.architecture, spec.env,
                        facts_dir or cache.root, progress)  # fmt: skip
    for note in result.notes:
        progress.log(note)
    for path, why in result.unreadable:
        progress.log(f"not checked: /{path}: {why}")
    if not result.missing:
        return result
    arch = ARCHES[spec.debian.architecture]
    wanted = [p for m in result.missing for p in candidate_paths(m.library, arch, m.interpreter)]
    found = (lookup or archive_lookup(spec, cache))(wanted)
    raise LinkError(
        describe(result.missing, found, arch, spec.debian.suites, spec.debian.excludes),
        hint="add the package named to [debian] packages (then `hardflow lock`), or remove "
        "the file that needs the library",
    )


__all__ = [
    "ALLOWED",
    "ARCHES",
    "Allowance",
    "Arch",
    "CheckResult",
    "ImageTree",
    "Missing",
    "archive_lookup",
    "candidate_paths",
    "check_shared_libraries",
    "check_tree",
    "describe",
    "find_missing",
]
