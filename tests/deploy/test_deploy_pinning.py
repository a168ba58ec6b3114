"""Images pinned by digest: a given digest is kept, hardflow's own builds are pinned from their
build record, anything else stays a tag and is named; podman's variant keeps tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hardflow.cli.deploy import deploy
from hardflow.deploy.k8s import K8sOptions, for_podman_play, render_manifests
from hardflow.deploy.pinning import (
    build_record_digest,
    is_pinned,
    pin,
    pin_images,
    split_pinned,
    unpinned,
)
from hardflow.deploy.topology import Images, Topology, embedded_reference
from hardflow.errors import HardflowError

yaml = pytest.importorskip("yaml")
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def record(path: Path, reference: str, digest: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"reference": reference, "manifest_digest": digest}))
    return path


def test_references() -> None:
    assert is_pinned(f"x/y:1@{A}") and is_pinned(f"x/y@{A}") and not is_pinned("x/y:1")
    assert split_pinned(f"x/y:1@{A}") == ("x/y:1", A)
    assert split_pinned("x/y:1") == ("x/y:1", "")
    assert unpinned(f"x/y:1@{A}") == "x/y:1"
    assert pin("x/y:1", A) == f"x/y:1@{A}" and pin(f"x/y:1@{A}", A) == f"x/y:1@{A}"
    with pytest.raises(HardflowError, match="already pinned"):
        pin(f"x/y:1@{A}", B)
    with pytest.raises(HardflowError, match="sha256"):
        pin("x/y:1", "sha256:short")
    with pytest.raises(HardflowError, match="after '@'"):
        split_pinned("x/y@md5:00")


def test_build_record(tmp_path: Path) -> None:
    path = record(tmp_path / "build.json", "hardflow/airflow:3.3.2", A)
    # the engine's name (localhost/...) and the build's name are the same image
    assert build_record_digest(path, "localhost/hardflow/airflow:3.3.2") == A
    assert build_record_digest(path, "hardflow/airflow:3.3.1") == ""  # another image
    assert build_record_digest(tmp_path / "missing.json", "hardflow/airflow:3.3.2") == ""
    record(path, "hardflow/airflow:3.3.2", "sha256:nothex")
    with pytest.raises(HardflowError, match="manifest_digest"):
        build_record_digest(path, "hardflow/airflow:3.3.2")
    path.write_text("{not json")
    with pytest.raises(HardflowError, match=str(path)):
        build_record_digest(path, "hardflow/airflow:3.3.2")


def test_pin_images(tmp_path: Path) -> None:
    rec = record(tmp_path / "pg.json", "hardflow/postgres:17", B)
    result = pin_images(
        {"airflow": f"me/airflow:1@{A}", "postgres": "localhost/hardflow/postgres:17",
         "redis": "localhost/hardflow/redis:8"},
        {"postgres": rec, "redis": tmp_path / "none.json"},
    )  # fmt: skip
    assert result.references == {
        "airflow": f"me/airflow:1@{A}",
        "postgres": f"localhost/hardflow/postgres:17@{B}",
        "redis": "localhost/hardflow/redis:8",
    }
    assert result.sources["airflow"] == "given" and result.sources["postgres"] == str(rec)
    assert result.unpinned == ("redis",) and "redis" in result.note()


def test_cli_pins_from_the_build_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for spec, digest in (("default", A), ("postgres", B)):
        name = embedded_reference(spec).removeprefix("localhost/")
        record(tmp_path / "out" / name.replace("/", "_").replace(":", "-") / "build.json",
               name, digest)  # fmt: skip
    result = CliRunner().invoke(deploy, ["k8s", "--out", "k", "--podman-play", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["unpinned"] == ["redis"]
    images = {
        c["name"]: c["image"]
        for d in yaml.safe_load_all((tmp_path / "k/manifests.yaml").read_text())
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images["scheduler"] == f"{embedded_reference('default')}@{A}"
    assert images["postgres"] == f"{embedded_reference('postgres')}@{B}"
    assert images["redis"] == embedded_reference("redis")
    # podman kube play finds loaded images by name: its variant keeps the tags
    assert "@sha256:" not in (tmp_path / "k/podman-play.yaml").read_text()
    values = CliRunner().invoke(deploy, ["helm-values", "--out", "h", "--json"])
    assert json.loads(values.output)["pinned"] is True
    assert A in (tmp_path / "h/values.yaml").read_text()


def test_podman_variant_strips_digests() -> None:
    top = Topology(Images(f"a/airflow:1@{A}", f"a/postgres:1@{B}", f"a/redis:1@{B}"))
    docs = for_podman_play(render_manifests(top, K8sOptions()))
    images = [
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert images and all("@" not in i for i in images)
    assert "a/airflow:1" in images
