"""Shrinking: file classes no workload reads, removed from the image tree before layering.

Every rule here names a whole class of files and why no run-time code needs it; the evidence
(what a real workload reads: every component starting, the example DAG, the UI) and the sizes
are in ``docs/shrinking.md`` and were measured with :mod:`hardflow.bench.trace`. Rules never
pick single modules, and nothing a Python ``import`` of the package's own code can reach is
removed (tests and test data are not imported by the packages themselves).

Besides removal, shared objects installed from wheels lose their symbol tables and debug
sections (:func:`strip_elf`): the dynamic loader reads only the program headers and the dynamic
symbol table, both kept byte for byte. Debian's own binaries are already stripped by Debian and
are left alone. The stripping is pure Python, so the result does not depend on the host's
binutils and the build stays reproducible.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from hardflow.fsutil import unlink_confined
from hardflow.spec import ImageSpec

_SITE = r"usr/local/lib/python3\.\d+/(?:dist|site)-packages/"
_STDLIB = r"usr/lib/python3\.\d+/"


@dataclass(frozen=True)
class PruneRule:
    name: str
    reason: str
    pattern: re.Pattern[str]  # matched against root-relative file paths
    # The rule applies only to a tree (all its root-relative paths) this returns True for;
    # None: to every tree.
    when: Callable[[Collection[str]], bool] | None = None

    def matches(self, rel: str) -> bool:
        return self.pattern.match(rel) is not None


def _rule(
    name: str, reason: str, regex: str, when: Callable[[Collection[str]], bool] | None = None
) -> PruneRule:
    return PruneRule(name, reason, re.compile(regex), when)


_LIBLLVM = re.compile(r"usr/lib/(?:[^/]+/)*libLLVM[^/]*\.so")


def _without_llvm(paths: Collection[str]) -> bool:
    return not any(_LIBLLVM.match(p) for p in paths)


PRUNE_RULES: tuple[PruneRule, ...] = (
    _rule(
        "package-tests",
        "test suites that wheels ship inside their package (a `tests/` or `test/` directory): "
        "run by the package's developers, never imported by the package itself",
        _SITE + r"(?:[^/]+/)*?(?:tests|test)/",
    ),
    _rule(
        "stdlib-test-package",
        "the standard library's `test` package (regrtest and test.support): CPython's own "
        "test harness",
        _STDLIB + r"test/",
    ),
    _rule(
        "c-headers-and-sources",
        "C/C++ headers and sources and Cython declarations shipped in wheels: only a compiler "
        "reads them, and the image has none",
        _SITE + r".*\.(?:h|hh|hpp|hxx|c|cc|cpp|cxx|pxd|pyx|pxi)$",
    ),
    _rule(
        "static-libraries",
        "static libraries and libtool archives: only a linker reads them",
        r"usr/(?:local/)?lib/.*\.(?:a|la)$",
    ),
    _rule(
        "type-stubs",
        "`.pyi` type stubs: read by type checkers and IDEs, never by the interpreter",
        _SITE + r".*\.pyi$",
    ),
    _rule(
        "javascript-source-maps",
        "`.map` source maps of the bundled web UI: fetched by a browser only when its "
        "developer tools are open",
        _SITE + r".*\.js\.map$|" + _SITE + r".*\.css\.map$",
    ),
    _rule(
        "glibc-gconv-modules",
        "glibc's iconv(3) charset modules: loaded only by iconv_open() for non-UTF-8 "
        "conversions; Python's codecs and the UTF-8 locale do not use them",
        r"usr/lib/[^/]+-linux-gnu/gconv/",
    ),
    _rule(
        "collectd-unloaded-plugins",
        "collectd's plugins but statsd and write_prometheus: the statsd-exporter image's "
        "configuration turns AutoLoadPlugin off and loads only those two, and collectd dlopens "
        "a plugin only when its configuration loads it",
        r"usr/lib/collectd/(?!(?:statsd|write_prometheus)\.so$)[^/]+\.so$",
    ),
    _rule(
        "postgres-jit-without-llvm",
        "PostgreSQL's LLVM JIT provider (llvmjit.so) and the bitcode only it reads, in a tree "
        "without libLLVM (the postgres spec excludes libllvm19): llvmjit.so has libLLVM in "
        "DT_NEEDED, so it can never load (the build's shared-library check, "
        "build/elfcheck.py, found it). PostgreSQL probes the provider file first and quietly "
        "runs without JIT when it is absent (jit.c, provider_init), whereas a provider that is "
        "present but cannot load fails every query that jit=on would compile",
        r"usr/lib/postgresql/[^/]+/lib/(?:llvmjit\.so$|llvmjit_types\.bc$|bitcode/)",
        when=_without_llvm,
    ),
)


def rule_for(rel: str, rules: Sequence[PruneRule] = PRUNE_RULES) -> PruneRule | None:
    return next((r for r in rules if r.matches(rel)), None)


def active_rules(paths: Collection[str]) -> tuple[PruneRule, ...]:
    """The rules that apply to a tree holding ``paths`` (see :attr:`PruneRule.when`)."""
    return tuple(r for r in PRUNE_RULES if r.when is None or r.when(paths))


@dataclass(frozen=True)
class PruneResult:
    removed: dict[str, int]  # rule name -> files removed
    removed_bytes: dict[str, int]
    stripped: int  # shared objects stripped
    stripped_bytes: int  # bytes saved by stripping


def prune(
    root: Path,
    spec: ImageSpec,
    layer_of: dict[str, str],
    *,
    strip: bool = True,
) -> PruneResult:
    """Remove the files of every rule under ``root`` (and from ``layer_of``); strip wheels'
    shared objects. Directories left empty by a removal are removed too."""
    del spec  # the rules are written for every spec; kept for a per-spec switch later
    removed: dict[str, int] = {r.name: 0 for r in PRUNE_RULES}
    removed_bytes: dict[str, int] = {r.name: 0 for r in PRUNE_RULES}
    touched_dirs: set[str] = set()
    rules = active_rules(layer_of)
    for rel in sorted(layer_of):
        full = root / rel
        if full.is_dir() and not full.is_symlink():
            continue
        rule = rule_for(rel, rules)
        if rule is None:
            continue
        if full.is_file() and not full.is_symlink():
            removed[rule.name] += 1
            removed_bytes[rule.name] += full.stat().st_size
        unlink_confined(root, rel)  # never through a symlink, whatever the tree holds
        del layer_of[rel]
        touched_dirs.add(os.path.dirname(rel))
    _remove_empty_dirs(root, touched_dirs, layer_of)
    stripped = saved = 0
    if strip:
        for rel in sorted(layer_of):
            if not re.match(_SITE, rel) or not _is_shared_object_name(rel):
                continue
            full = root / rel
            if full.is_symlink() or not full.is_file():
                continue
            before = full.stat().st_size
            if strip_elf(full):
                stripped += 1
                saved += before - full.stat().st_size
    return PruneResult(removed, removed_bytes, stripped, saved)


def _is_shared_object_name(rel: str) -> bool:
    name = os.path.basename(rel)
    return name.endswith(".so") or ".so." in name


def _remove_empty_dirs(root: Path, dirs: set[str], layer_of: dict[str, str]) -> None:
    pending = sorted(dirs, key=lambda d: d.count("/"), reverse=True)
    seen: set[str] = set()
    while pending:
        d = pending.pop(0)
        if not d or d in seen:
            continue
        seen.add(d)
        full = root / d
        if full.is_dir() and not full.is_symlink():
            if any(True for _ in full.iterdir()):
                continue
            full.rmdir()
            layer_of.pop(d, None)
            parent = os.path.dirname(d)
            if parent:
                pending.append(parent)
                pending.sort(key=lambda x: x.count("/"), reverse=True)


# ---------------------------------------------------------------------------------------------
# ELF: drop the sections the loader never reads

_SHF_ALLOC = 0x2
_SHF_INFO_LINK = 0x40
_SHT_NOBITS = 8
_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_SECTION = struct.Struct("<IIQQQQIIQQ")
_PROGRAM = struct.Struct("<IIQQQQQQ")


@dataclass(frozen=True)
class _Section:
    name: int
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int


def _cstr(table: bytes, offset: int) -> bytes:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)]


def strip_sections(data: bytes) -> bytes | None:
    """``data`` without its non-allocated sections (symbol tables, debug info, comments).

    Returns None when there is nothing to strip or the file is not a little-endian ELF64
    shared object/executable this code understands (it is then left as it is). Everything the
    program headers map is kept byte for byte; a new section name table and section header
    table listing the kept sections are appended after it.
    """
    if len(data) < _ELF_HEADER.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    (ident, e_type, machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum,
     shentsize, shnum, shstrndx) = _ELF_HEADER.unpack_from(data, 0)  # fmt: skip
    if e_type not in (2, 3) or shoff == 0 or shnum == 0 or shentsize != _SECTION.size:
        return None
    if phentsize != _PROGRAM.size or shstrndx >= shnum or shoff + shnum * shentsize > len(data):
        return None
    sections = [_Section(*_SECTION.unpack_from(data, shoff + i * shentsize)) for i in range(shnum)]
    names = data[sections[shstrndx].offset : sections[shstrndx].offset + sections[shstrndx].size]
    keep = {0} | {i for i, s in enumerate(sections) if s.flags & _SHF_ALLOC}
    changed = True
    while changed:  # keep what kept sections link to (e.g. .dynsym -> .dynstr)
        changed = False
        for i in sorted(keep):
            s = sections[i]
            for ref in (s.link, s.info if s.flags & _SHF_INFO_LINK else 0):
                if 0 < ref < shnum and ref not in keep:
                    keep.add(ref)
                    changed = True
    dropped = [i for i in range(shnum) if i not in keep and i != shstrndx]
    if not dropped:
        return None
    end = max(ehsize, phoff + phnum * phentsize)
    for i in range(phnum):
        _, _, p_offset, _, _, p_filesz, _, _ = _PROGRAM.unpack_from(data, phoff + i * phentsize)
        end = max(end, p_offset + p_filesz)
    for i in keep:
        s = sections[i]
        if s.type != _SHT_NOBITS:
            end = max(end, s.offset + s.size)
    if end > len(data):
        return None
    order = sorted(keep)
    index = {old: new for new, old in enumerate(order)}
    index[shstrndx] = len(order)
    strtab = bytearray(b"\0")
    name_at: dict[int, int] = {}
    for i in [*order, shstrndx]:
        if i == 0:
            continue
        name_at[i] = len(strtab)
        strtab += _cstr(names, sections[i].name) + b"\0"
    out = bytearray(data[:end])
    str_offset = len(out)
    out += strtab
    out += b"\0" * (-len(out) % 8)
    new_shoff = len(out)
    for i in [*order, shstrndx]:
        s = sections[i]
        if i == 0:
            out += _SECTION.pack(*([0] * 10))
            continue
        link = index.get(s.link, 0) if s.link else 0
        info = index.get(s.info, 0) if s.flags & _SHF_INFO_LINK and s.info else s.info
        if i == shstrndx:
            out += _SECTION.pack(name_at[i], s.type, s.flags, 0, str_offset, len(strtab),
                                 0, 0, 1, 0)  # fmt: skip
        else:
            out += _SECTION.pack(name_at[i], s.type, s.flags, s.addr, s.offset, s.size, link,
                                 info, s.addralign, s.entsize)  # fmt: skip
    header = _ELF_HEADER.pack(ident, e_type, machine, version, entry, phoff, new_shoff, flags,
                              ehsize, phentsize, phnum, shentsize, len(order) + 1, len(order))
    out[: _ELF_HEADER.size] = header
    if len(out) >= len(data):
        return None
    return bytes(out)


def strip_elf(path: Path) -> bool:
    """Strip ``path`` in place (mode kept); True if it got smaller."""
    data = path.read_bytes()
    stripped = strip_sections(data)
    if stripped is None:
        return False
    mode = path.stat().st_mode & 0o7777
    tmp = path.with_name(path.name + ".strip-tmp")
    tmp.write_bytes(stripped)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True
