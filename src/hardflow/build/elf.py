"""The dynamic-linking facts of one ELF file: its SONAME, NEEDED, RPATH, RUNPATH, interpreter.

Hand-written with :mod:`struct` rather than pyelftools: the check needs four dynamic tags and
the program interpreter, which is about a hundred lines, and owning those lines lets every read
be bounded up front (a header that claims 2^64 program headers or a string table past the end
of the file is refused before anything is allocated). pyelftools would add a dependency whose
failure modes on hostile input (its own exception types, ``struct.error``, lazily parsed
sections) we would have to wrap anyway.

What is read is what the dynamic loader reads: the ELF header, the program headers, the
``PT_DYNAMIC`` segment and the string table its ``DT_STRTAB`` names (a virtual address, mapped
to a file offset through the ``PT_LOAD`` segments). Section headers are never needed, so
stripped files read the same.

Only 64-bit little-endian files for the machines hardflow builds for (x86-64, AArch64) are
read; anything else is *foreign* (:func:`probe`) and skipped by the caller. A file that starts
like a supported ELF but does not hold together raises :class:`ElfFormatError`, never an
unbounded read, a hang or a bare ``struct.error``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Literal

from hardflow.errors import ArchiveError

MAGIC = b"\x7fELF"
HEADER_SIZE = 64
EM_X86_64 = 62
EM_AARCH64 = 183
MACHINES = {EM_X86_64: "x86-64", EM_AARCH64: "aarch64"}

_ET_EXEC, _ET_DYN = 2, 3
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ = 0, 1, 5, 10
_DT_SONAME, _DT_RPATH, _DT_RUNPATH = 14, 15, 29

_HEADER = struct.Struct("<HHIQQQIHHHHHH")  # e_type .. e_shstrndx (after e_ident)
_PHDR = struct.Struct("<IIQQQQQQ")
_DYN = struct.Struct("<qQ")

# Bounds no real file comes near: a hostile header is refused before anything is read.
MAX_PHNUM = 1024
MAX_DYNAMIC_BYTES = 1 << 20  # 65536 dynamic entries
MAX_STRTAB_BYTES = 64 << 20
MAX_NEEDED = 4096
MAX_STRING = 4096  # a path list (RPATH) longer than this is not one a loader would use

Probe = Literal["elf", "foreign", "not-elf"]


class ElfFormatError(ArchiveError):
    """A file that starts like a supported ELF file but whose headers do not hold together."""


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader reads from one ELF file."""

    machine: int  # e_machine (EM_X86_64 or EM_AARCH64)
    executable: bool  # ET_EXEC, or ET_DYN with a program interpreter (a PIE)
    soname: str  # DT_SONAME, "" if absent
    needed: tuple[str, ...]  # DT_NEEDED, in order
    rpath: str  # DT_RPATH as written (":"-separated), "" if absent
    runpath: str  # DT_RUNPATH as written, "" if absent
    interpreter: str  # PT_INTERP, "" if absent (a shared library, a static binary)
    dynamic: bool  # has a PT_DYNAMIC segment (a static executable has none)


def probe(head: bytes) -> Probe:
    """What the first bytes of a file say: a supported ELF file, another ELF file (32-bit,
    big-endian, another machine) or no ELF file at all."""
    if len(head) < 20 or head[:4] != MAGIC:
        return "not-elf"
    if head[4] != 2 or head[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        return "foreign"
    machine = int.from_bytes(head[18:20], "little")
    return "elf" if machine in MACHINES else "foreign"


class _Reader:
    """Bounded reads at offsets of a seekable file of known size."""

    def __init__(self, fh: BinaryIO, size: int, name: str) -> None:
        self.fh = fh
        self.size = size
        self.name = name

    def fail(self, what: str) -> ElfFormatError:
        return ElfFormatError(f"{self.name}: malformed ELF file: {what}")

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.fail(
                f"{what} at offset {offset} ({length} bytes) lies outside the file "
                f"({self.size} bytes)"
            )
        self.fh.seek(offset)
        data = self.fh.read(length)
        if len(data) != length:
            raise self.fail(f"{what}: the file ended early")
        return data


def _map_address(loads: list[tuple[int, int, int]], address: int) -> int | None:
    """The file offset of virtual ``address`` through the PT_LOAD segments."""
    for offset, vaddr, filesz in loads:
        if vaddr <= address < vaddr + filesz:
            return offset + (address - vaddr)
    return None


def _string(table: bytes, offset: int, reader: _Reader, what: str) -> str:
    if not 0 <= offset < len(table):
        raise reader.fail(f"{what} names string {offset}, outside the string table")
    end = table.find(b"\0", offset, offset + MAX_STRING + 1)
    if end < 0:
        raise reader.fail(f"{what} at string {offset} is not terminated within {MAX_STRING} bytes")
    raw = table[offset:end]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise reader.fail(f"{what} at string {offset} is not UTF-8") from None


def read_elf(fh: BinaryIO, size: int, name: str) -> ElfInfo:
    """Read the dynamic-linking facts of a supported ELF file (see :func:`probe`).

    ``fh`` is seekable and holds ``size`` bytes; ``name`` names the file in errors.
    """
    reader = _Reader(fh, size, name)
    head = reader.read(0, HEADER_SIZE, "the ELF header")
    if probe(head) != "elf":
        raise reader.fail("not a 64-bit little-endian x86-64 or AArch64 ELF file")
    (e_type, machine, _version, _entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = _HEADER.unpack_from(head, 16)  # fmt: skip
    if phnum == 0:
        return ElfInfo(machine, e_type == _ET_EXEC, "", (), "", "", "", False)
    if phentsize != _PHDR.size:
        raise reader.fail(f"program header size {phentsize}, expected {_PHDR.size}")
    if phnum > MAX_PHNUM:
        raise reader.fail(f"{phnum} program headers (at most {MAX_PHNUM} are read)")
    table = reader.read(phoff, phnum * phentsize, "the program headers")
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    interp: tuple[int, int] | None = None
    for i in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, filesz, _memsz, _align = _PHDR.unpack_from(
            table, i * phentsize
        )
        if p_type == _PT_LOAD:
            loads.append((offset, vaddr, filesz))
        elif p_type == _PT_DYNAMIC and dynamic is None:
            dynamic = (offset, filesz)
        elif p_type == _PT_INTERP and interp is None:
            interp = (offset, filesz)
    interpreter = ""
    if interp is not None:
        if interp[1] > MAX_STRING:
            raise reader.fail(f"program interpreter of {interp[1]} bytes")
        raw = reader.read(interp[0], interp[1], "the program interpreter")
        interpreter = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    executable = e_type == _ET_EXEC or (e_type == _ET_DYN and bool(interpreter))
    if dynamic is None:
        return ElfInfo(machine, executable, "", (), "", "", interpreter, False)
    if dynamic[1] > MAX_DYNAMIC_BYTES:
        raise reader.fail(f"dynamic segment of {dynamic[1]} bytes")
    dyn = reader.read(dynamic[0], dynamic[1] - dynamic[1] % _DYN.size, "the dynamic segment")
    tags: list[tuple[int, int]] = []
    strtab = strsz = None
    for i in range(len(dyn) // _DYN.size):
        tag, value = _DYN.unpack_from(dyn, i * _DYN.size)
        if tag == _DT_NULL:
            break
        if tag == _DT_STRTAB:
            strtab = value
        elif tag == _DT_STRSZ:
            strsz = value
        elif tag in (_DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_RUNPATH):
            tags.append((tag, value))
    if not tags:
        return ElfInfo(machine, executable, "", (), "", "", interpreter, True)
    if strtab is None or strsz is None:
        raise reader.fail("the dynamic segment names strings but has no DT_STRTAB/DT_STRSZ")
    if strsz > MAX_STRTAB_BYTES:
        raise reader.fail(f"string table of {strsz} bytes")
    start = _map_address(loads, strtab)
    if start is None:
        raise reader.fail(f"DT_STRTAB address {strtab:#x} lies in no loaded segment")
    strings = reader.read(start, min(strsz, size - start), "the dynamic string table")
    needed: list[str] = []
    found: dict[int, str] = {}
    for tag, value in tags:
        text = _string(strings, value, reader, f"dynamic tag {tag}")
        if tag == _DT_NEEDED:
            if len(needed) >= MAX_NEEDED:
                raise reader.fail(f"more than {MAX_NEEDED} DT_NEEDED entries")
            needed.append(text)
        else:
            found.setdefault(tag, text)
    return ElfInfo(
        machine=machine,
        executable=executable,
        soname=found.get(_DT_SONAME, ""),
        needed=tuple(needed),
        rpath=found.get(_DT_RPATH, ""),
        runpath=found.get(_DT_RUNPATH, ""),
        interpreter=interpreter,
        dynamic=True,
    )


__all__ = [
    "EM_AARCH64",
    "EM_X86_64",
    "HEADER_SIZE",
    "MACHINES",
    "ElfFormatError",
    "ElfInfo",
    "probe",
    "read_elf",
]
