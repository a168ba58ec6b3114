"""The ``make_image`` fixture (helpers in ``audit_fixtures``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from audit_fixtures import BASE_FILES, SDE, MakeImage, RawEntry, raw_layer, tree_layer

from hardflow.oci.writer import ImageConfig, write_docker_archive, write_oci_layout


@pytest.fixture
def make_image(tmp_path: Path) -> MakeImage:
    """Build a fixture image; returns the OCI layout (or docker-archive) path."""
    counter = iter(range(1000))

    def make(
        *,
        files: Mapping[str, str | None] | None = None,
        user: str = "50000:0",
        env: Sequence[str] = ("PATH=/usr/bin",),
        labels: Mapping[str, str] | None = None,
        healthcheck: bool = True,
        history: Sequence[str] | None = None,
        reference: str = "test/app:1.0",
        raw: Sequence[Sequence[RawEntry]] = (),
        volumes: Sequence[str] = (),
        ports: Sequence[str] = (),
        fmt: str = "oci",
    ) -> Path:
        n = next(counter)
        work = tmp_path / f"img{n}"
        blobs = work / "layers"
        merged: dict[str, str | None] = dict(BASE_FILES)
        for key, value in (files or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        layers = [
            tree_layer(work / "trees", "base", merged, blobs),
            tree_layer(work / "trees", "app", {"opt/app/README": "app\n"}, blobs),
        ]
        for i, entries in enumerate(raw):
            layers.append(raw_layer(blobs, f"raw{i}", entries))
        default_history = ["test: base", "test: app"] + [f"test: raw{i}" for i in range(len(raw))]
        config = ImageConfig(
            user=user,
            env=tuple(env),
            entrypoint=("/usr/bin/app",),
            cmd=(),
            workdir="/app",
            exposed_ports=tuple(ports),
            labels=dict(labels or {}),
            stop_signal="SIGTERM",
            healthcheck=("CMD", "/usr/bin/app", "--health") if healthcheck else None,
            volumes=tuple(volumes),
            created=SDE,
            history=tuple(history) if history is not None else tuple(default_history),
        )
        result = write_oci_layout(layers, config, {}, reference, work / "oci")
        if fmt == "docker":
            return write_docker_archive(result, work / "docker-archive.tar")
        return result.layout_dir

    return make
