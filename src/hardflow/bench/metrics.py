"""Static figures of an image, read from its layer tars the same way for every image.

Both images of the comparison are measured by this one function from their layers (gzip'd,
zstd'd or plain tars, read once each through the image reader and applied in order with OCI
whiteouts), so no figure depends on how the image was
made: sizes are the uncompressed tar streams, and the same streams compressed here with gzip
level 6 and zstd level 3 (the levels registries and ``podman push --compression-format`` use by
default); files are the regular files of the final tree; Debian packages are the installed
stanzas of ``var/lib/dpkg/status`` plus the records in ``var/lib/dpkg/status.d/`` (distroless
style); set-id files are regular files with the setuid or setgid bit; binaries in the PATH are
the distinct command names an executable file (or a symlink to one) provides in the PATH dirs.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hardflow.oci.layer import ZSTD_LEVEL as LAYER_ZSTD_LEVEL
from hardflow.oci.layer import zstd_compressor
from hardflow.oci.stream import merge_layer, normalize_member, open_layer_file, whiteout_target

GZIP_LEVEL = 6
ZSTD_LEVEL = LAYER_ZSTD_LEVEL
_MAX_STATUS = 64 << 20  # a dpkg status file larger than this is refused, not read
_STATUS = "var/lib/dpkg/status"
_STATUS_D = "var/lib/dpkg/status.d/"


@dataclass(frozen=True)
class Node:
    """One path of the final tree."""

    kind: str  # "file", "dir", "symlink", "other"
    mode: int
    size: int
    link: str = ""


@dataclass(frozen=True)
class ImageMetrics:
    layers: int
    uncompressed_bytes: int
    gzip_bytes: int
    zstd_bytes: int
    files: int  # regular files of the final tree
    entries: int  # every path (files, directories, symlinks, ...)
    debian_packages: int
    setid_files: tuple[str, ...]
    path_binaries: tuple[str, ...]
    python_distributions: int

    def to_json(self) -> dict[str, object]:
        return {
            "layers": self.layers,
            "uncompressed_bytes": self.uncompressed_bytes,
            "gzip_bytes": self.gzip_bytes,
            "zstd_bytes": self.zstd_bytes,
            "files": self.files,
            "entries": self.entries,
            "debian_packages": self.debian_packages,
            "setid_files": len(self.setid_files),
            "setid_file_paths": list(self.setid_files),
            "path_binaries": len(self.path_binaries),
            "python_distributions": self.python_distributions,
        }


# ---------------------------------------------------------------------------------------------
# pure functions


def apply_layer(tree: dict[str, Node], members: Iterable[tuple[str, Node]]) -> None:
    """Apply one layer's entries to ``tree`` (OCI whiteout and opaque-directory rules, through
    :func:`hardflow.oci.stream.merge_layer`); parent directories a tar omits are added."""
    entries: list[tuple[str, Node]] = []
    whiteouts: list[str] = []
    for raw, node in members:
        path = normalize(raw)
        if not path:
            continue
        if whiteout_target(path) is not None:
            whiteouts.append(path)
        else:
            entries.append((path, node))
    merge_layer(tree, entries, whiteouts, lambda node: node.kind == "dir")
    for path, _ in entries:
        parent = posixpath.dirname(path)
        while parent and parent not in tree:  # a tar may omit parent directories
            tree[parent] = Node("dir", 0o755, 0)
            parent = posixpath.dirname(parent)


def normalize(name: str) -> str:
    """A member name as a path below the root (``./usr/bin/`` → ``usr/bin``)."""
    return normalize_member(name)


def resolve(tree: Mapping[str, Node], path: str, limit: int = 40) -> str | None:
    """Follow symlinks (in every component) inside the tree; None if it dangles or loops."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        if part == ".":
            continue
        current = "/".join([*done, part])
        node = tree.get(current)
        if node is None:
            return None
        if node.kind == "symlink":
            hops += 1
            if hops > limit:
                return None
            target = node.link
            base = [] if target.startswith("/") else done
            parts = [p for p in target.split("/") if p] + parts
            done = list(base)
            continue
        done.append(part)
    return "/".join(done)


def path_binaries(tree: Mapping[str, Node], path_env: str) -> tuple[str, ...]:
    """Distinct command names on ``PATH`` that resolve to an executable regular file."""
    names: set[str] = set()
    seen_dirs: set[str] = set()
    for entry in path_env.split(":"):
        real = resolve(tree, entry.strip("/")) if entry.strip("/") else None
        if real is None or real in seen_dirs or tree.get(real, Node("x", 0, 0)).kind != "dir":
            continue
        seen_dirs.add(real)
        prefix = real + "/"
        for key in tree:
            if not key.startswith(prefix) or "/" in key[len(prefix) :]:
                continue
            target = resolve(tree, key)
            node = tree.get(target) if target else None
            if node is not None and node.kind == "file" and node.mode & 0o111:
                names.add(key[len(prefix) :])
    return tuple(sorted(names))


def count_dpkg_stanzas(text: str, *, need_status: bool) -> int:
    """Installed packages in dpkg status text (a ``status.d`` record may omit Status)."""
    count = 0
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        if "package" not in fields:
            continue
        status = fields.get("status")
        if status is None and need_status:
            continue
        if status is None or status.split()[-1:] == ["installed"]:
            count += 1
    return count


def summarise_tree(
    tree: Mapping[str, Node], texts: Mapping[str, str], path_env: str
) -> tuple[int, int, int, tuple[str, ...], tuple[str, ...], int]:
    """(files, entries, debian packages, set-id files, PATH binaries, Python distributions)."""
    files = sum(1 for n in tree.values() if n.kind == "file")
    setid = tuple(
        sorted(
            k for k, n in tree.items()
            if n.kind == "file" and n.mode & (stat.S_ISUID | stat.S_ISGID)
        )
    )  # fmt: skip
    debs = 0
    for path, text in texts.items():
        if path not in tree:
            continue
        debs += count_dpkg_stanzas(text, need_status=path == _STATUS)
    dists = sum(
        1 for k, n in tree.items()
        if n.kind == "dir" and k.endswith(".dist-info")
        and posixpath.dirname(k).endswith(("site-packages", "dist-packages"))
    )  # fmt: skip
    return files, len(tree), debs, setid, path_binaries(tree, path_env), dists


# ---------------------------------------------------------------------------------------------
# the I/O shell


class _Sizes:
    """Counts the uncompressed tar stream and what gzip -6 and zstd -3 make of it.

    zstd with the settings ``hardflow build --compression zstd`` writes layers with, so the
    figure is the size of that build's layer blobs."""

    def __init__(self) -> None:
        self.raw = self.gz = self.zs = 0
        self._deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        self._zstd = zstd_compressor().compressobj()

    def feed(self, chunk: bytes) -> None:
        self.raw += len(chunk)
        self.gz += len(self._deflate.compress(chunk))
        self.zs += len(self._zstd.compress(chunk))

    def close(self) -> tuple[int, int, int]:
        self.gz += len(self._deflate.flush())
        self.zs += len(self._zstd.flush())
        return self.raw, self.gz, self.zs


def _node(member: tarfile.TarInfo) -> Node:
    if member.isreg():
        return Node("file", member.mode, member.size)
    if member.isdir():
        return Node("dir", member.mode, 0)
    if member.issym():
        return Node("symlink", member.mode, 0, member.linkname)
    if member.islnk():
        return Node("file", member.mode, 0, normalize(member.linkname))
    return Node("other", member.mode, 0)


def _read_layer(
    path: Path, texts: dict[str, str]
) -> tuple[tuple[int, int, int], list[tuple[str, Node]]]:
    """One pass over a layer through the image reader: its sizes and its members (the dpkg
    status texts go to ``texts``)."""
    sizes = _Sizes()
    members: list[tuple[str, Node]] = []
    with open_layer_file(path, label=f"image layer {path}", tap=sizes.feed) as layer:
        for member in layer:
            name = normalize(member.name)
            if member.isreg() and (name == _STATUS or name.startswith(_STATUS_D)):
                texts[name] = layer.read(member, _MAX_STATUS).decode("utf-8", "replace")
            members.append((member.name, _node(member)))
    return sizes.close(), members


def measure_layers(layer_paths: Sequence[Path], path_env: str) -> ImageMetrics:
    """Every static figure of an image from its layers (bottom first)."""
    tree: dict[str, Node] = {}
    texts: dict[str, str] = {}
    raw = gz = zs = 0
    for path in layer_paths:
        (r, g, z), members = _read_layer(path, texts)
        raw, gz, zs = raw + r, gz + g, zs + z
        apply_layer(tree, members)
    files, entries, debs, setid, binaries, dists = summarise_tree(tree, texts, path_env)
    return ImageMetrics(
        layers=len(layer_paths),
        uncompressed_bytes=raw,
        gzip_bytes=gz,
        zstd_bytes=zs,
        files=files,
        entries=entries,
        debian_packages=debs,
        setid_files=setid,
        path_binaries=binaries,
        python_distributions=dists,
    )


def image_path_env(env: Sequence[str], default: str = "/usr/local/bin:/usr/bin:/bin") -> str:
    for item in env:
        if item.startswith("PATH="):
            return item[5:]
    return default
