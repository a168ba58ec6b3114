"""Static figures of an image, read from its layer tars the same way for every image.

Both images of the comparison are measured by this one function from their layers (gzip'd or
plain tars, applied in order with OCI whiteouts), so no figure depends on how the image was
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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hardflow.errors import BuildError
from hardflow.oci.layer import ZSTD_LEVEL as LAYER_ZSTD_LEVEL
from hardflow.oci.layer import open_layer, zstd_compressor

GZIP_LEVEL = 6
ZSTD_LEVEL = LAYER_ZSTD_LEVEL
_CHUNK = 1 << 20
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
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
    """Apply one layer's entries to ``tree`` (OCI whiteout and opaque-directory rules)."""
    for raw, node in members:
        path = normalize(raw)
        if not path:
            continue
        base = posixpath.basename(path)
        parent = posixpath.dirname(path)
        if base == _OPAQUE:
            prefix = parent + "/" if parent else ""
            for key in [k for k in tree if k.startswith(prefix) and k != parent]:
                del tree[key]
            continue
        if base.startswith(_WHITEOUT):
            gone = posixpath.join(parent, base[len(_WHITEOUT):])
            for key in [k for k in tree if k == gone or k.startswith(gone + "/")]:
                del tree[key]
            continue
        old = tree.get(path)
        if old is not None and old.kind == "dir" and node.kind != "dir":
            for key in [k for k in tree if k.startswith(path + "/")]:
                del tree[key]
        while parent and parent not in tree:  # a tar may omit parent directories
            tree[parent] = Node("dir", 0o755, 0)
            parent = posixpath.dirname(parent)
        tree[path] = node


def normalize(name: str) -> str:
    name = name.strip("/")
    while name.startswith("./"):
        name = name[2:]
    return "" if name in (".", "") else posixpath.normpath(name)


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
            if not key.startswith(prefix) or "/" in key[len(prefix):]:
                continue
            target = resolve(tree, key)
            node = tree.get(target) if target else None
            if node is not None and node.kind == "file" and node.mode & 0o111:
                names.add(key[len(prefix):])
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


def _open_stream(path: Path) -> IO[bytes]:
    """The layer's tar stream, whether the blob is gzip, zstd or a plain tar."""
    return open_layer(path)


def _sizes(path: Path) -> tuple[int, int, int]:
    """(uncompressed, gzip -6, zstd -3) sizes of one layer's tar stream.

    zstd with the settings ``hardflow build --compression zstd`` writes layers with, so the
    figure is the size of that build's layer blobs."""
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    zstd = zstd_compressor().compressobj()
    raw = gz = zs = 0
    with _open_stream(path) as stream:
        while chunk := stream.read(_CHUNK):
            raw += len(chunk)
            gz += len(deflate.compress(chunk))
            zs += len(zstd.compress(chunk))
    gz += len(deflate.flush())
    zs += len(zstd.flush())
    return raw, gz, zs


def _members(path: Path, texts: dict[str, str]) -> Iterator[tuple[str, Node]]:
    try:
        with _open_stream(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for m in tar:
                name = normalize(m.name)
                if m.isreg():
                    node = Node("file", m.mode, m.size)
                    if name == _STATUS or name.startswith(_STATUS_D):
                        data = tar.extractfile(m)
                        if data is not None:
                            texts[name] = data.read().decode("utf-8", "replace")
                elif m.isdir():
                    node = Node("dir", m.mode, 0)
                elif m.issym():
                    node = Node("symlink", m.mode, 0, m.linkname)
                elif m.islnk():
                    node = Node("file", m.mode, 0, normalize(m.linkname))
                else:
                    node = Node("other", m.mode, 0)
                yield m.name, node
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BuildError(f"cannot read image layer {path}: {exc}") from None


def measure_layers(layer_paths: Sequence[Path], path_env: str) -> ImageMetrics:
    """Every static figure of an image from its layers (bottom first)."""
    tree: dict[str, Node] = {}
    texts: dict[str, str] = {}
    raw = gz = zs = 0
    for path in layer_paths:
        r, g, z = _sizes(path)
        raw, gz, zs = raw + r, gz + g, zs + z
        apply_layer(tree, _members(path, texts))
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
