"""The OCI layout and the docker-archive: structure, determinism, atomicity, podman."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from hardflow.build.layers import LayerSpec, write_layer
from hardflow.errors import BuildError
from hardflow.oci.layer import Layer
from hardflow.oci.writer import (
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    ImageConfig,
    ImageResult,
    canonical_json,
    split_reference,
    write_docker_archive,
    write_oci_layout,
)

SDE = 1_700_000_000
REFERENCE = "hardflow-test/airflow:3.0.1"
ANNOTATIONS = {
    "org.opencontainers.image.title": "airflow",
    "org.opencontainers.image.version": "3.0.1",
}


def image_config(**changes: Any) -> ImageConfig:
    base = ImageConfig(
        user="50000:0",
        env=("PATH=/usr/bin:/bin", "AIRFLOW_HOME=/opt/airflow"),
        entrypoint=("/usr/bin/tini", "--", "/entrypoint"),
        cmd=("airflow", "standalone"),
        workdir="/opt/airflow",
        exposed_ports=("8080/tcp",),
        labels={"org.opencontainers.image.title": "airflow"},
        stop_signal="SIGTERM",
        healthcheck=("CMD", "/usr/bin/healthcheck"),
        volumes=("/opt/airflow",),
        created=SDE,
        history=("hardflow: base", "hardflow: app"),
    )
    return dataclasses.replace(base, **changes)


def make_layers(tmp: Path, name: str, sde: int = SDE) -> list[Layer]:
    root = tmp / f"root-{name}"
    (root / "bin").mkdir(parents=True)
    (root / "bin/tool").write_bytes(b"#!/bin/sh\n")
    (root / "opt/airflow").mkdir(parents=True)
    (root / "opt/airflow/app.py").write_bytes(b"print('hi')\n")
    out = tmp / f"layers-{name}"
    owners = {"opt/airflow": (50000, 0)}
    return [
        write_layer(root, LayerSpec("base", ("bin", "bin/tool")), owners, sde, out),
        write_layer(root, LayerSpec("app", ("opt/airflow/app.py",)), owners, sde, out),
    ]


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def load_json(path: Path) -> Any:
    data = path.read_bytes()
    doc = json.loads(data)
    assert canonical_json(doc) == data, f"{path} is not canonical JSON"
    return doc


def validate_layout(layout: Path, result: ImageResult) -> dict[str, Any]:
    """Walk index → manifest → config → layers, checking every digest and size."""
    assert load_json(layout / "oci-layout") == {"imageLayoutVersion": "1.0.0"}
    index = load_json(layout / "index.json")
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == MEDIA_INDEX
    (desc,) = index["manifests"]
    assert desc["mediaType"] == MEDIA_MANIFEST
    assert desc["digest"] == result.manifest_digest
    manifest_path = blob(layout, desc["digest"])
    assert sha(manifest_path) == desc["digest"]
    assert manifest_path.stat().st_size == desc["size"]

    manifest = load_json(manifest_path)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MEDIA_MANIFEST
    assert manifest["config"]["mediaType"] == MEDIA_CONFIG
    config_path = blob(layout, manifest["config"]["digest"])
    assert sha(config_path) == manifest["config"]["digest"] == result.config_digest
    assert config_path.stat().st_size == manifest["config"]["size"]

    config = load_json(config_path)
    diff_ids = config["rootfs"]["diff_ids"]
    assert config["rootfs"]["type"] == "layers"
    assert len(diff_ids) == len(manifest["layers"]) == len(config["history"])
    for layer_desc, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        assert layer_desc["mediaType"] == MEDIA_LAYER_GZIP
        layer_path = blob(layout, layer_desc["digest"])
        assert sha(layer_path) == layer_desc["digest"]
        assert layer_path.stat().st_size == layer_desc["size"]
        uncompressed = gzip.decompress(layer_path.read_bytes())
        assert "sha256:" + hashlib.sha256(uncompressed).hexdigest() == diff_id
    return {"index": index, "manifest": manifest, "config": config}


def test_layout_validates_structurally(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, "a")
    result = write_oci_layout(layers, image_config(), ANNOTATIONS, REFERENCE, tmp_path / "img")
    assert result.layout_dir == tmp_path / "img"
    docs = validate_layout(result.layout_dir, result)

    (desc,) = docs["index"]["manifests"]
    assert desc["annotations"] == {
        "org.opencontainers.image.ref.name": "3.0.1",
        "io.containerd.image.name": REFERENCE,
    }
    assert docs["manifest"]["annotations"] == ANNOTATIONS
    assert [d["digest"] for d in docs["manifest"]["layers"]] == [x.digest for x in layers]

    config = docs["config"]
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["rootfs"]["diff_ids"] == [x.diff_id for x in layers]
    assert [h["created_by"] for h in config["history"]] == ["hardflow: base", "hardflow: app"]
    assert all(h["created"] == "2023-11-14T22:13:20Z" for h in config["history"])
    run = config["config"]
    assert run["User"] == "50000:0"
    assert run["Entrypoint"] == ["/usr/bin/tini", "--", "/entrypoint"]
    assert run["Cmd"] == ["airflow", "standalone"]
    assert run["ExposedPorts"] == {"8080/tcp": {}}
    assert run["Volumes"] == {"/opt/airflow": {}}
    assert run["StopSignal"] == "SIGTERM"
    assert run["WorkingDir"] == "/opt/airflow"
    assert run["Healthcheck"] == {
        "Test": ["CMD", "/usr/bin/healthcheck"],
        "Interval": 10_000_000_000,
        "Timeout": 5_000_000_000,
        "StartPeriod": 60_000_000_000,
        "Retries": 3,
    }
    assert result.compressed_size == sum(x.size for x in layers)
    assert result.uncompressed_size == sum(x.uncompressed_size for x in layers)
    assert result.archive_path is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".img")]


def test_no_healthcheck_no_history_defaults(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, "a")
    cfg = image_config(healthcheck=None, history=(), volumes=(), exposed_ports=())
    result = write_oci_layout(layers, cfg, {}, "plain", tmp_path / "img")
    docs = validate_layout(result.layout_dir, result)
    run = docs["config"]["config"]
    assert "Healthcheck" not in run
    assert "Volumes" not in run
    assert "ExposedPorts" not in run
    assert "annotations" not in docs["manifest"]
    assert [h["created_by"] for h in docs["config"]["history"]] == [
        "hardflow: base",
        "hardflow: app",
    ]
    refs = docs["index"]["manifests"][0]["annotations"]
    assert refs["org.opencontainers.image.ref.name"] == "latest"


def test_same_inputs_same_manifest_digest(tmp_path: Path) -> None:
    first = write_oci_layout(
        make_layers(tmp_path, "a"), image_config(), ANNOTATIONS, REFERENCE, tmp_path / "one"
    )
    second = write_oci_layout(
        make_layers(tmp_path, "b"), image_config(), ANNOTATIONS, REFERENCE, tmp_path / "two"
    )
    assert first.manifest_digest == second.manifest_digest
    assert first.config_digest == second.config_digest
    for name in ("index.json", "oci-layout"):
        assert (first.layout_dir / name).read_bytes() == (second.layout_dir / name).read_bytes()


def test_different_sde_changes_config_and_manifest(tmp_path: Path) -> None:
    first = write_oci_layout(
        make_layers(tmp_path, "a"), image_config(), {}, REFERENCE, tmp_path / "one"
    )
    later = SDE + 86_400
    second = write_oci_layout(
        make_layers(tmp_path, "b", sde=later),
        image_config(created=later),
        {},
        REFERENCE,
        tmp_path / "two",
    )
    assert first.config_digest != second.config_digest
    assert first.manifest_digest != second.manifest_digest


def test_rewrite_replaces_the_layout_atomically(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, "a")
    out = tmp_path / "img"
    old = write_oci_layout(layers, image_config(), {}, REFERENCE, out)
    (out / "stray").write_text("from an older build")
    new = write_oci_layout(layers, image_config(cmd=("airflow", "version")), {}, REFERENCE, out)
    assert new.manifest_digest != old.manifest_digest
    assert not (out / "stray").exists()
    validate_layout(out, new)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_failure_leaves_the_old_layout_untouched(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, "a")
    out = tmp_path / "img"
    old = write_oci_layout(layers, image_config(), {}, REFERENCE, out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    broken = dataclasses.replace(layers[1], path=tmp_path / "gone.tar.gz")
    with pytest.raises(BuildError, match=r"gone\.tar\.gz"):
        write_oci_layout([layers[0], broken], image_config(), {}, REFERENCE, out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    validate_layout(out, old)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failure_with_no_old_layout_leaves_nothing(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, "a")
    wrong_size = dataclasses.replace(layers[0], size=layers[0].size + 1)
    with pytest.raises(BuildError, match="expected"):
        write_oci_layout([wrong_size], image_config(history=()), {}, REFERENCE, tmp_path / "img")
    assert not (tmp_path / "img").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_history_must_match_layers(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, "a")
    with pytest.raises(BuildError, match="history"):
        write_oci_layout(layers, image_config(history=("one",)), {}, REFERENCE, tmp_path / "i")
    with pytest.raises(BuildError, match="at least one layer"):
        write_oci_layout([], image_config(), {}, REFERENCE, tmp_path / "i")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("airflow:3.0", ("airflow", "3.0")),
        ("airflow", ("airflow", "latest")),
        ("registry.example:5000/team/airflow", ("registry.example:5000/team/airflow", "latest")),
        ("registry.example:5000/team/airflow:v1", ("registry.example:5000/team/airflow", "v1")),
    ],
)
def test_split_reference(reference: str, expected: tuple[str, str]) -> None:
    assert split_reference(reference) == expected


@pytest.mark.parametrize("bad", ["", "Airflow:1", "airflow@sha256:00", "air flow", "airflow:"])
def test_bad_references_are_refused(bad: str) -> None:
    with pytest.raises(BuildError):
        split_reference(bad)


def test_docker_archive_is_deterministic_and_complete(tmp_path: Path) -> None:
    result = write_oci_layout(
        make_layers(tmp_path, "a"), image_config(), {}, REFERENCE, tmp_path / "img"
    )
    first = write_docker_archive(result, tmp_path / "one" / "image.tar")
    again = write_oci_layout(
        make_layers(tmp_path, "b"), image_config(), {}, REFERENCE, tmp_path / "img2"
    )
    second = write_docker_archive(again, tmp_path / "two.tar")
    assert first.read_bytes() == second.read_bytes()

    with tarfile.open(first) as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        assert names[:2] == ["blobs", "blobs/sha256"]
        assert names[2:-1] == sorted(names[2:-1])
        assert names[-1] == "manifest.json"
        for member in members:
            assert member.mtime == SDE
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        manifest_file = archive.extractfile("manifest.json")
        assert manifest_file is not None
        (entry,) = json.loads(manifest_file.read())
        assert entry["RepoTags"] == [REFERENCE]
        assert entry["Config"] == "blobs/sha256/" + result.config_digest.removeprefix("sha256:")
        assert entry["Layers"] == [
            "blobs/sha256/" + x.digest.removeprefix("sha256:") for x in result.layers
        ]
        for name in [entry["Config"], *entry["Layers"]]:
            member_file = archive.extractfile(name)
            assert member_file is not None
            assert member_file.read() == (result.layout_dir / name).read_bytes()
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------------------------------------
# podman


def _podman_problem() -> str | None:
    podman = shutil.which("podman")
    if podman is None:
        return "podman is not installed"
    probe = subprocess.run([podman, "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`podman info` failed: {probe.stderr.strip()[:200]}"
    busybox = _static_busybox()
    if busybox is None:
        return "no statically linked busybox (apt-get install busybox-static)"
    return None


def _static_busybox() -> Path | None:
    for candidate in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if candidate.is_file() and b"ld-linux" not in candidate.read_bytes()[:8192]:
            return candidate
    return None


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def busybox_image(tmp_path: Path) -> ImageResult:
    problem = _podman_problem()
    if problem is not None:
        pytest.skip(f"podman is not usable here: {problem}")
    busybox = _static_busybox()
    assert busybox is not None
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    shutil.copyfile(busybox, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    (root / "opt/airflow").mkdir(parents=True)
    owners = {"opt/airflow": (50000, 0)}
    layers = [
        write_layer(root, LayerSpec("busybox", ("bin/busybox", "tmp")), owners, SDE, tmp_path),
        write_layer(root, LayerSpec("home", ("opt/airflow",)), owners, SDE, tmp_path),
    ]
    tag = uuid.uuid4().hex[:12]
    config = image_config(
        entrypoint=(),
        cmd=("/bin/busybox", "echo", "hi"),
        healthcheck=("CMD", "/bin/busybox", "true"),
        labels={"test.hardflow.run": tag},  # a unique config, hence a unique image ID
        history=(),
    )
    return write_oci_layout(
        layers, config, ANNOTATIONS, f"hardflow-test/busybox:{tag}", tmp_path / "layout"
    )


@pytest.mark.podman
def test_podman_loads_and_runs_the_docker_archive(busybox_image: ImageResult) -> None:
    archive = write_docker_archive(busybox_image, busybox_image.layout_dir.parent / "image.tar")
    image_id = busybox_image.config_digest.removeprefix("sha256:")
    try:
        loaded = _podman("load", "-i", str(archive))
        assert loaded.returncode == 0, loaded.stderr
        assert f"localhost/{busybox_image.reference}" in loaded.stdout
        ran = _podman(
            "run", "--rm", "--network=none", "--read-only", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", "--user=50000:0",
            f"localhost/{busybox_image.reference}",
            "/bin/busybox", "sh", "-c", "echo hi; id -u; stat -c %u:%g /opt/airflow",
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.split() == ["hi", "50000", "50000:0"]
        inspected = _podman("image", "inspect", image_id)
        assert inspected.returncode == 0, inspected.stderr
        (info,) = json.loads(inspected.stdout)
        assert info["Id"] == image_id
        assert info["Healthcheck"]["Test"] == ["CMD", "/bin/busybox", "true"]
        assert info["Config"]["User"] == "50000:0"
    finally:
        _podman("rmi", "--force", image_id)


@pytest.mark.podman
def test_podman_copies_the_oci_layout_keeping_the_manifest_digest(
    busybox_image: ImageResult,
) -> None:
    image_id = busybox_image.config_digest.removeprefix("sha256:")
    _, tag = split_reference(busybox_image.reference)
    try:
        pulled = _podman("pull", "-q", f"oci:{busybox_image.layout_dir}:{tag}")
        assert pulled.returncode == 0, pulled.stderr
        inspected = _podman("image", "inspect", image_id)
        assert inspected.returncode == 0, inspected.stderr
        (info,) = json.loads(inspected.stdout)
        assert info["Digest"] == busybox_image.manifest_digest
        # podman ignores Docker's Healthcheck in an image stored with an OCI manifest
        assert not info.get("Healthcheck")
        ran = _podman("run", "--rm", "--network=none", image_id)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == "hi"
    finally:
        _podman("rmi", "--force", image_id)
