"""The ELF reader: real objects made by gcc, and hostile files that must fail cleanly."""

from __future__ import annotations

import io
import random
import struct
import time
from pathlib import Path

import pytest

from hardflow.build.elf import (
    EM_AARCH64,
    EM_X86_64,
    ElfFormatError,
    ElfInfo,
    probe,
    read_elf,
)
from helpers.elf_objects import program, shared_library


def read(data: bytes) -> ElfInfo:
    return read_elf(io.BytesIO(data), len(data), "/test.so")


def test_reads_soname_needed_and_runpath(tmp_path: Path) -> None:
    lib = shared_library(tmp_path, "stub", soname="libxml2.so.2")
    mod = shared_library(tmp_path, "_bar", links=[lib], runpath="$ORIGIN/../foo.libs")
    info = read(lib.read_bytes())
    assert info.soname == "libxml2.so.2"
    assert info.needed == ()
    assert info.machine == EM_X86_64 and info.dynamic and not info.executable
    mod_info = read(mod.read_bytes())
    assert mod_info.needed == ("libxml2.so.2",)
    assert mod_info.runpath == "$ORIGIN/../foo.libs"
    assert mod_info.rpath == ""
    assert mod_info.soname == ""


def test_reads_the_older_rpath(tmp_path: Path) -> None:
    lib = shared_library(tmp_path, "stub", soname="libfoo.so.1")
    mod = shared_library(tmp_path, "_baz", links=[lib], rpath="$ORIGIN:/opt/x")
    info = read(mod.read_bytes())
    assert (info.rpath, info.runpath) == ("$ORIGIN:/opt/x", "")


def test_reads_a_program_and_its_interpreter(tmp_path: Path) -> None:
    info = read(program(tmp_path, "prog").read_bytes())
    assert info.executable
    assert "libc.so.6" in info.needed
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"


def test_probe_tells_supported_foreign_and_other_files(tmp_path: Path) -> None:
    data = shared_library(tmp_path, "stub", soname="libx.so.1").read_bytes()
    assert probe(data[:64]) == "elf"
    aarch64 = data[:18] + struct.pack("<H", EM_AARCH64) + data[20:]
    assert probe(aarch64[:64]) == "elf"
    assert read(aarch64).machine == EM_AARCH64  # same layout: read the same way
    assert probe(data[:4] + b"\x01" + data[5:64]) == "foreign"  # 32-bit
    assert probe(data[:5] + b"\x02" + data[6:64]) == "foreign"  # big-endian
    assert probe(data[:18] + struct.pack("<H", 40) + data[20:64]) == "foreign"  # ARM 32
    assert probe(b"#!/bin/sh\n" + b"x" * 60) == "not-elf"
    assert probe(b"\x7fELF") == "not-elf"  # too short to say


def _phdr_patch(data: bytes, **fields: int) -> bytes:
    """The ELF header with e_phoff / e_phnum / e_phentsize replaced."""
    out = bytearray(data)
    offsets = {"phoff": (32, "<Q"), "phentsize": (54, "<H"), "phnum": (56, "<H")}
    for name, value in fields.items():
        at, fmt = offsets[name]
        struct.pack_into(fmt, out, at, value)
    return bytes(out)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"phnum": 0xFFFF}, r"program headers \(at most"),
        ({"phoff": 1 << 62}, "lies outside the file"),
        ({"phentsize": 32}, "program header size 32"),
    ],
)
def test_hostile_headers_are_refused_before_reading(
    tmp_path: Path, patch: dict[str, int], message: str
) -> None:
    data = shared_library(tmp_path, "stub", soname="libx.so.1").read_bytes()
    with pytest.raises(ElfFormatError, match=message) as caught:
        read(_phdr_patch(data, **patch))
    assert "/test.so" in caught.value.message


def test_truncated_files_fail_cleanly(tmp_path: Path) -> None:
    lib = shared_library(tmp_path, "stub", soname="libxml2.so.2")
    data = shared_library(tmp_path, "_bar", links=[lib]).read_bytes()
    for cut in (10, 63, 64, 100, 400, len(data) // 2):
        try:
            read(data[:cut])
        except ElfFormatError as exc:
            assert "malformed ELF file" in exc.message


def test_random_corruption_never_escapes_or_hangs(tmp_path: Path) -> None:
    """Flipped bytes give a result or an ElfFormatError: never another exception, never long."""
    lib = shared_library(tmp_path, "stub", soname="libxml2.so.2")
    data = shared_library(tmp_path, "_bar", links=[lib], runpath="$ORIGIN").read_bytes()
    rng = random.Random(1234)
    start = time.monotonic()
    outcomes = {"ok": 0, "error": 0}
    for _ in range(2000):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(16, min(len(mutated), 1024))  # keep the magic: the header matters
            mutated[at] = rng.randrange(256)
        try:
            read(bytes(mutated))
            outcomes["ok"] += 1
        except ElfFormatError:
            outcomes["error"] += 1
    assert time.monotonic() - start < 30
    assert outcomes["error"] > 0 and outcomes["ok"] > 0


def test_a_string_table_outside_every_segment_is_refused(tmp_path: Path) -> None:
    lib = shared_library(tmp_path, "stub", soname="libxml2.so.2")
    data = bytearray(shared_library(tmp_path, "_bar", links=[lib]).read_bytes())
    # find PT_DYNAMIC, then point DT_STRTAB at an address no PT_LOAD maps
    (phoff,) = struct.unpack_from("<Q", data, 32)
    (phnum,) = struct.unpack_from("<H", data, 56)
    for i in range(phnum):
        at = phoff + i * 56
        p_type, _, offset, _, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, at)
        if p_type == 2:
            for j in range(filesz // 16):
                tag, _ = struct.unpack_from("<qQ", data, offset + j * 16)
                if tag == 5:
                    struct.pack_into("<qQ", data, offset + j * 16, 5, 1 << 60)
    with pytest.raises(ElfFormatError, match="DT_STRTAB address"):
        read(bytes(data))


def test_a_static_or_headerless_file_has_no_needs() -> None:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", header, 16, 2, EM_X86_64)  # ET_EXEC, no program headers
    info = read(bytes(header))
    assert info.needed == () and not info.dynamic
