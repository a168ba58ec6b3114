"""What one layer contributes to dynamic linking, read from its blob and cached by diff_id.

:func:`scan_layer` streams a layer once through the one image reader
(:func:`hardflow.oci.stream.open_layer_file`, which checks the blob's digest and diff_id) and
records, for every member: its kind (directory, file, symlink with its target; a hard link
becomes a file with its target's facts), the whiteouts, the dynamic-linking facts of every ELF
file of a supported machine (:mod:`hardflow.build.elf`), the text of ``/etc/ld.so.conf*``,
and the ELF files that could not be read (with the reason). That is everything
:mod:`hardflow.build.elfcheck` needs to decide, over the merged layers, whether each
``DT_NEEDED`` entry finds its library.

A layer's facts depend only on its bytes, so they are cached under its diff_id
(``<layer cache>/elf-facts/<hex[:2]>/<hex>.json``, written atomically). An unchanged layer then
costs one small JSON read: editing a DAG rescans only the small top layer. A cache entry is
input like any other: one that does not parse, names another diff_id or another format is a
miss, and the layer is scanned again.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hardflow.build.elf import HEADER_SIZE, ElfFormatError, ElfInfo, probe, read_elf
from hardflow.fsutil import ConfinementError, atomic_write, confined
from hardflow.oci.layer import Layer
from hardflow.oci.stream import normalize_member, open_layer_file, whiteout_target

FACTS_FORMAT = 1
SPOOL_IN_MEMORY = 32 << 20  # larger ELF files are spooled to a temporary file to be read
MAX_CONF_BYTES = 64 << 10
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONF = re.compile(r"etc/ld\.so\.conf(?:\.d/[^/]+)?")

# kinds of entries
DIR, FILE, LINK = "d", "f", "l"


@dataclass(frozen=True)
class Entry:
    kind: str  # DIR, FILE or LINK
    target: str = ""  # a symlink's target, as written
    elf: ElfInfo | None = None  # a FILE that is an ELF file of a supported machine


@dataclass(frozen=True)
class LayerFacts:
    diff_id: str
    entries: tuple[tuple[str, Entry], ...]  # normalized path (no leading "/"), in layer order
    whiteouts: tuple[str, ...]  # whiteout member paths (``dir/.wh.name``, ``dir/.wh..wh..opq``)
    conf: Mapping[str, str]  # etc/ld.so.conf and etc/ld.so.conf.d/* -> their text
    unreadable: tuple[tuple[str, str], ...]  # (path, why) of ELF files that could not be read


# ---------------------------------------------------------------------------------------------
# scanning


def _elf_facts(path: str, head: bytes, rest: IO[bytes]) -> ElfInfo:
    """Spool the member (``head`` already read from ``rest``, the open member) and read it:
    the reader seeks, a layer stream cannot. Large files spill to a temporary file."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        spool.write(head)
        shutil.copyfileobj(rest, spool, 1 << 20)
        size = spool.tell()
        return read_elf(spool, size, f"/{path}")  # type: ignore[arg-type]


def scan_layer(layer: Layer) -> LayerFacts:
    """Read ``layer``'s blob once (digest and diff_id checked) and collect its facts."""
    entries: list[tuple[str, Entry]] = []
    whiteouts: list[str] = []
    conf: dict[str, str] = {}
    unreadable: list[tuple[str, str]] = []
    elves: dict[str, ElfInfo] = {}
    label = f"layer {layer.name} ({layer.digest})"
    with open_layer_file(layer.path, digest=layer.digest, diff_id=layer.diff_id,
                         label=label) as stream:  # fmt: skip
        for info in stream:
            path = normalize_member(info.name)
            if not path:
                continue
            if whiteout_target(path) is not None:
                whiteouts.append(path)
            elif info.isdir():
                entries.append((path, Entry(DIR)))
            elif info.issym():
                entries.append((path, Entry(LINK, info.linkname)))
            elif info.islnk():  # same content as an earlier member of this layer
                target = normalize_member(info.linkname)
                entries.append((path, Entry(FILE, elf=elves.get(target))))
                if target in elves:
                    elves[path] = elves[target]
                if target in conf:
                    conf[path] = conf[target]
            elif info.isreg():
                elf = None
                if info.size >= HEADER_SIZE or _CONF.fullmatch(path):
                    member = stream.open_member(info)
                    head = member.read(HEADER_SIZE)
                    if probe(head) == "elf":
                        try:
                            elf = _elf_facts(path, head, member)
                        except ElfFormatError as exc:
                            unreadable.append((path, exc.message))
                        if elf is not None:
                            elves[path] = elf
                    elif _CONF.fullmatch(path) and info.size <= MAX_CONF_BYTES:
                        text = head + member.read(MAX_CONF_BYTES)
                        conf[path] = text.decode("utf-8", "replace")
                entries.append((path, Entry(FILE, elf=elf)))
            else:  # devices, FIFOs: nothing a loader can use
                entries.append((path, Entry(FILE)))
    return LayerFacts(layer.diff_id, tuple(entries), tuple(whiteouts), conf, tuple(unreadable))


# ---------------------------------------------------------------------------------------------
# the cache


def _elf_json(elf: ElfInfo) -> list[Any]:
    return [elf.machine, elf.executable, elf.soname, list(elf.needed), elf.rpath, elf.runpath,
            elf.interpreter, elf.dynamic]  # fmt: skip


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, found {type(value).__name__}")
    return value


def _elf_from_json(value: object) -> ElfInfo:
    if not isinstance(value, list) or len(value) != 8:
        raise ValueError("an ELF record is not a list of 8 fields")
    machine, executable, soname, needed, rpath, runpath, interp, dynamic = value
    if type(machine) is not int or not isinstance(executable, bool) or not isinstance(
        dynamic, bool
    ) or not isinstance(needed, list):  # fmt: skip
        raise ValueError("an ELF record has fields of the wrong type")
    return ElfInfo(machine, executable, _str(soname), tuple(_str(n) for n in needed),
                   _str(rpath), _str(runpath), _str(interp), dynamic)  # fmt: skip


def facts_json(facts: LayerFacts) -> bytes:
    entries = []
    for path, entry in facts.entries:
        row: list[Any] = [path, entry.kind]
        if entry.kind == LINK:
            row.append(entry.target)
        elif entry.elf is not None:
            row.append(_elf_json(entry.elf))
        entries.append(row)
    doc = {
        "format": FACTS_FORMAT,
        "diff_id": facts.diff_id,
        "entries": entries,
        "whiteouts": list(facts.whiteouts),
        "conf": dict(facts.conf),
        "unreadable": [list(x) for x in facts.unreadable],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def facts_from_json(data: bytes, diff_id: str) -> LayerFacts:
    """Parse a cache entry; ``ValueError`` (and only that) when it is not one for ``diff_id``."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FACTS_FORMAT:
        raise ValueError("another format")
    if doc.get("diff_id") != diff_id:
        raise ValueError("the entry belongs to another layer")
    rows, whiteouts = doc.get("entries"), doc.get("whiteouts")
    conf, unreadable = doc.get("conf"), doc.get("unreadable")
    if not (isinstance(rows, list) and isinstance(whiteouts, list) and isinstance(conf, dict)
            and isinstance(unreadable, list)):  # fmt: skip
        raise ValueError("a field has the wrong type")
    entries: list[tuple[str, Entry]] = []
    for row in rows:
        if not isinstance(row, list) or len(row) not in (2, 3) or row[1] not in (DIR, FILE, LINK):
            raise ValueError("an entry is malformed")
        path, kind = _str(row[0]), row[1]
        if kind == LINK:
            entries.append((path, Entry(LINK, _str(row[2]) if len(row) == 3 else "")))
        elif kind == FILE and len(row) == 3:
            entries.append((path, Entry(FILE, elf=_elf_from_json(row[2]))))
        else:
            entries.append((path, Entry(kind)))
    pairs = []
    for item in unreadable:
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError("an unreadable record is malformed")
        pairs.append((_str(item[0]), _str(item[1])))
    return LayerFacts(
        diff_id,
        tuple(entries),
        tuple(_str(w) for w in whiteouts),
        {_str(k): _str(v) for k, v in conf.items()},
        tuple(pairs),
    )


class FactsCache:
    """Layer facts under ``<root>/elf-facts/``, one JSON file per diff_id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, diff_id: str) -> Path | None:
        hex_ = diff_id.removeprefix("sha256:")
        if not diff_id.startswith("sha256:") or not _HEX64.fullmatch(hex_):
            return None
        try:
            return confined(self.root, f"elf-facts/{hex_[:2]}/{hex_}.json")
        except ConfinementError:
            return None

    def get(self, diff_id: str) -> LayerFacts | None:
        path = self._path(diff_id)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            return facts_from_json(data, diff_id)
        except ValueError:
            path.unlink(missing_ok=True)
            return None

    def put(self, facts: LayerFacts) -> None:
        path = self._path(facts.diff_id)
        if path is None:
            return
        with contextlib.suppress(OSError):  # a cache not written costs time, not correctness
            atomic_write(path, facts_json(facts))


def layer_facts(layer: Layer, cache: FactsCache) -> tuple[LayerFacts, bool]:
    """The facts of ``layer`` and whether they came from the cache."""
    found = cache.get(layer.diff_id)
    if found is not None:
        return found, True
    facts = scan_layer(layer)  # an unreadable or modified blob raises ImageError
    cache.put(facts)
    return facts, False


__all__ = [
    "DIR",
    "FACTS_FORMAT",
    "FILE",
    "LINK",
    "Entry",
    "FactsCache",
    "LayerFacts",
    "facts_from_json",
    "facts_json",
    "layer_facts",
    "scan_layer",
]
