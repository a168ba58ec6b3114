"""Helpers for the audit tests' fixture images, written with the builder's own writers.

``make_image(...)`` writes a small, clean image (non-root user, health check, locked
accounts, package metadata, a version tag) with
``hardflow.build.layers.write_layer`` and ``hardflow.oci.writer.write_oci_layout`` /
``write_docker_archive``; keyword arguments break one rule at a time. ``write_layer`` refuses
setuid files and cannot write whiteouts, so such layers are written with :mod:`tarfile`
(``raw_layer``) and appended.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hardflow.build.layers import LayerSpec, list_tree, write_layer
from hardflow.oci.layer import Layer

SDE = 1_700_000_000

PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(["MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"] * 6)
    + "\n-----END RSA PRIVATE KEY-----\n"
)

BASE_FILES: dict[str, str] = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/usr/sbin/nologin\napp:x:50000:0:app:/app:/usr/sbin/nologin\n"
    ),
    "etc/group": "root:x:0:\napp:x:50000:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\napp:*:19000:0:99999:7:::\n",
    "usr/bin/app": "#!/usr/bin/python3\nprint('hello')\n",
    "var/lib/dpkg/status.d/app": "Package: app\nVersion: 1.0\n",
}


@dataclass(frozen=True)
class RawEntry:
    """One member of a layer written with tarfile: a file, a directory or a symlink."""

    path: str
    data: bytes | None = b""  # None: directory
    mode: int = 0o644
    link: str | None = None
    mtime: int | None = None  # default: the layer's mtime
    uname: str = ""


def raw_layer(out_dir: Path, name: str, entries: Sequence[RawEntry], mtime: int = SDE) -> Layer:
    """A gzip layer written with tarfile (setuid bits, whiteouts: what write_layer refuses)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.mtime = mtime if entry.mtime is None else entry.mtime
            info.mode = entry.mode
            info.uname = entry.uname
            if entry.link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.link
                tar.addfile(info)
            elif entry.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    tar_bytes = buf.getvalue()
    gz = gzip.compress(tar_bytes, mtime=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = "sha256:" + hashlib.sha256(gz).hexdigest()
    path = out_dir / f"{name}.tar.gz"
    path.write_bytes(gz)
    return Layer(
        name=name,
        path=path,
        digest=digest,
        diff_id="sha256:" + hashlib.sha256(tar_bytes).hexdigest(),
        size=len(gz),
        uncompressed_size=len(tar_bytes),
        file_count=len(entries),
    )


def tree_layer(root: Path, name: str, files: Mapping[str, str | None], out: Path) -> Layer:
    tree = root / name
    for rel, content in files.items():
        target = tree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            continue
        if content.startswith("->"):
            os.symlink(content[2:], target)
            continue
        target.write_text(content)
        os.chmod(target, 0o755 if rel.startswith(("usr/bin/", "bin/", "usr/sbin/")) else 0o644)
    return write_layer(tree, LayerSpec(name, list_tree(tree)), {}, SDE, out)


MakeImage = Callable[..., Path]
