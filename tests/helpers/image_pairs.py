"""Two small images for ``hardflow diff`` tests, written with the builder's own writers.

A and B differ in a Debian package version, a wheel version, packages added and removed on
both sides, a changed layer, a removed layer and an added one; the ``tools`` layer is the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hardflow.build.layers import LayerSpec, list_tree, write_layer
from hardflow.oci.writer import ImageConfig, write_docker_archive, write_oci_layout

SDE = 1_700_000_000
SITE = "usr/local/lib/python3.13/site-packages"
Layers = Mapping[str, Mapping[str, str]]


def status(name: str, version: str) -> dict[str, str]:
    return {f"var/lib/dpkg/status.d/{name}": f"Package: {name}\nVersion: {version}\n"}


def dist(name: str, version: str) -> dict[str, str]:
    folder = f"{SITE}/{name.replace('-', '_')}-{version}.dist-info"
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    return {f"{folder}/METADATA": text}


A_LAYERS: Layers = {
    "debian-base": {
        "etc/os-release": 'ID=debian\nVERSION_ID="13"\n',
        **status("libc6", "2.41-12"),
        **status("libssl3t64", "3.5.1-1"),
        **status("libgone1", "1.0-1"),
    },
    "python-runtime": {**dist("requests", "2.32.3"), **dist("old-pkg", "1.0")},
    "tools": {"usr/bin/tool": "#!/bin/sh\necho tool\n"},
    "legacy": {"opt/legacy/README": "to be dropped\n"},
    "hardflow": {"opt/app/version": "1\n"},
}
B_LAYERS: Layers = {
    "debian-base": {
        "etc/os-release": 'ID=debian\nVERSION_ID="13"\n',
        **status("libc6", "2.41-12"),
        **status("libssl3t64", "3.5.4-1~deb13u1"),
        **status("libnew2", "2.0-3"),
    },
    "python-runtime": {
        **dist("requests", "2.32.5"),
        **dist("New_Pkg", "0.1"),
        **dist("urllib3", "2.5.0"),
    },
    "tools": {"usr/bin/tool": "#!/bin/sh\necho tool\n"},
    "hardflow": {"opt/app/version": "2\n"},
    "extra": {"opt/extra/README": "new\n"},
}


def make_image(
    work: Path,
    layers: Layers,
    *,
    history: Sequence[str] = (),
    env: Sequence[str] = ("PATH=/usr/bin",),
    fmt: str = "oci",
) -> Path:
    """An image with one layer per entry of ``layers`` (name → files)."""
    blobs = work / "blobs"
    written = []
    for name, files in layers.items():
        tree = work / "trees" / name
        for rel, text in files.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
        written.append(write_layer(tree, LayerSpec(name, list_tree(tree)), {}, SDE, blobs))
    config = ImageConfig(
        user="50000:0", env=tuple(env), entrypoint=("/usr/bin/tool",), cmd=(), workdir="/",
        exposed_ports=(), labels={}, stop_signal="SIGTERM", healthcheck=None, volumes=(),
        created=SDE, history=tuple(history),
    )  # fmt: skip
    result = write_oci_layout(written, config, {}, "test/diff:1", work / "oci")
    if fmt == "docker":
        return write_docker_archive(result, work / "image.tar")
    return result.layout_dir
