"""`hardflow diff`: two fixture images written with the builder's own writers, and the
default image in podman against itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hardflow.imagediff import (
    DiffError,
    ImageDiff,
    LayerChange,
    compare_layers,
    diff_images,
    layer_names,
)
from helpers.image_pairs import A_LAYERS, B_LAYERS, make_image
from helpers.loaded_images import LoadedImage


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    a = make_image(tmp_path / "a", A_LAYERS)
    b = make_image(tmp_path / "b", B_LAYERS, env=("PATH=/usr/bin", "APP_MODE=b"), fmt="docker")
    return a, b


def by_name(result: ImageDiff) -> dict[str, LayerChange]:
    return {change.label: change for change in result.layers}


def versions(result: ImageDiff, kind: str, status: str) -> list[tuple[str, str | None, str | None]]:
    return [(p.name, p.old, p.new) for p in result.packages if (p.kind, p.status) == (kind, status)]


# ---------------------------------------------------------------------------------------------
# by package


def test_packages_added_removed_and_changed(pair: tuple[Path, Path]) -> None:
    result = diff_images(str(pair[0]), str(pair[1]))
    assert versions(result, "debian", "changed") == [("libssl3t64", "3.5.1-1", "3.5.4-1~deb13u1")]
    assert versions(result, "debian", "added") == [("libnew2", None, "2.0-3")]
    assert versions(result, "debian", "removed") == [("libgone1", "1.0-1", None)]
    assert versions(result, "python", "changed") == [("requests", "2.32.3", "2.32.5")]
    assert versions(result, "python", "added") == [("New_Pkg", None, "0.1"),
                                                   ("urllib3", None, "2.5.0")]  # fmt: skip
    assert versions(result, "python", "removed") == [("old-pkg", "1.0", None)]
    assert result.differs
    assert result.a.debs["libc6"] == result.b.debs["libc6"]  # unchanged: not listed


def test_the_same_image_in_two_formats_does_not_differ(pair: tuple[Path, Path]) -> None:
    archive = write_docker_archive_of(pair[0])
    result = diff_images(str(pair[0]), str(archive))
    assert result.packages == () and result.config_changes == ()
    assert {c.status for c in result.layers} == {"identical"}
    assert not result.differs
    doc = result.to_json()
    assert doc["summary"]["size"]["change"] == 0 and doc["differs"] is False


def write_docker_archive_of(layout: Path) -> Path:
    """The docker-archive of a fixture layout (the layout's own writer result is gone: read
    the same tree again)."""
    return make_image(layout.parent / "again", A_LAYERS, fmt="docker")


# ---------------------------------------------------------------------------------------------
# by layer


def test_layers_by_name(pair: tuple[Path, Path]) -> None:
    result = diff_images(str(pair[0]), str(pair[1]))
    assert result.matched_by == "name"
    layers = by_name(result)
    assert {n: c.status for n, c in layers.items()} == {
        "debian-base": "changed",
        "python-runtime": "changed",
        "tools": "identical",
        "legacy": "removed",
        "hardflow": "changed",
        "extra": "added",
    }
    # B's order, a removed layer after the one it sat on
    assert [c.label for c in result.layers] == [
        "debian-base", "python-runtime", "tools", "legacy", "hardflow", "extra",
    ]  # fmt: skip
    tools = layers["tools"]
    assert tools.a is not None and tools.b is not None
    assert (tools.a.digest, tools.a.size) == (tools.b.digest, tools.b.size)
    assert (tools.a.index, tools.b.index) == (2, 2)
    assert layers["hardflow"].a.diff_id != layers["hardflow"].b.diff_id  # type: ignore[union-attr]
    assert layers["legacy"].b is None and layers["extra"].a is None


def test_summary_totals(pair: tuple[Path, Path]) -> None:
    result = diff_images(str(pair[0]), str(pair[1]))
    doc = result.to_json()
    assert doc["summary"]["layers"] == {"identical": 1, "changed": 3, "added": 1, "removed": 1}
    size = doc["summary"]["size"]
    assert size["a"] == sum(layer.size for layer in result.a.layers)
    assert size["change"] == size["b"] - size["a"] != 0
    raw = doc["summary"]["uncompressed_size"]
    assert raw["a"] == result.a.uncompressed_size > size["a"]
    assert raw["change"] == raw["b"] - raw["a"]
    assert doc["config_changes"] == ["config.Env[APP_MODE]"]
    assert doc["b"]["argument"] == str(pair[1]) and doc["b"]["debian_packages"] == 3


def test_layers_without_names_are_matched_by_position(tmp_path: Path) -> None:
    layers = {"one": {"a": "1\n"}, "two": {"b": "2\n"}}
    a = make_image(tmp_path / "a", layers, history=("RUN one", "RUN two"))
    b = make_image(tmp_path / "b", {**layers, "two": {"b": "3\n"}, "three": {"c": "3\n"}},
                   history=("RUN one", "RUN two", "RUN three"))  # fmt: skip
    result = diff_images(str(a), str(b))
    assert result.matched_by == "position"
    assert [(c.label, c.status) for c in result.layers] == [
        ("layer 0", "identical"), ("layer 1", "changed"), ("layer 2", "added"),
    ]  # fmt: skip
    shorter = compare_layers(result.b.layers, result.a.layers)[0]
    assert [c.status for c in shorter] == ["identical", "changed", "removed"]


def test_layer_names_come_from_hardflow_history() -> None:
    history = [
        {"created_by": "hardflow 0.1.0: debian-base (2800 entries)"},
        {"created_by": "ENV X=1", "empty_layer": True},
        {"created_by": "hardflow: python-runtime"},
        {"created_by": "RUN pip install x"},
    ]
    assert layer_names({"history": history}, 3) == ("debian-base", "python-runtime", None)
    assert layer_names({"history": history}, 4) == (None, None, None, None)
    assert layer_names({}, 2) == (None, None)


# ---------------------------------------------------------------------------------------------
# sources and errors


def test_an_engine_reference_is_saved_to_a_temporary_archive(pair: tuple[Path, Path]) -> None:
    saved: list[Path] = []

    def saver(ref: str, dest: Path) -> None:
        assert ref == "localhost/test/diff:2"
        shutil.copyfile(pair[1], dest)
        saved.append(dest)

    result = diff_images(str(pair[0]), "localhost/test/diff:2", saver=saver)
    assert result.b.reference == "localhost/test/diff:2"
    assert versions(result, "python", "changed") == [("requests", "2.32.3", "2.32.5")]
    assert saved and not saved[0].exists()  # the temporary archive is gone


def test_an_unreadable_image_names_the_argument(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    not_image = tmp_path / "plain"
    not_image.mkdir()
    with pytest.raises(DiffError, match=r"image B \(.*plain\).*not an OCI image layout"):
        diff_images(str(pair[0]), str(not_image))
    with pytest.raises(DiffError, match=r"image A \(\./missing\.tar\).*no such file"):
        diff_images("./missing.tar", str(pair[1]))
    text = tmp_path / "text.tar"
    text.write_text("hello")
    with pytest.raises(DiffError, match=r"image A .*text\.tar.*not an image"):
        diff_images(str(text), str(pair[1]))
    broken = make_image(tmp_path / "broken", {"base": {"var/lib/dpkg/status.d/x": "Package: x\n"}})
    with pytest.raises(DiffError, match=r"image B .*broken.*status\.d/x: not a dpkg status"):
        diff_images(str(pair[0]), str(broken))


# ---------------------------------------------------------------------------------------------
# the real image in podman


@pytest.mark.podman
@pytest.mark.slow
def test_the_default_image_in_podman_against_itself(loaded_image: LoadedImage) -> None:
    ref = loaded_image("default")
    result = diff_images(ref, ref, engine="podman")
    assert not result.differs
    assert result.packages == () and result.config_changes == ()
    assert result.matched_by == "name"
    assert {c.status for c in result.layers} == {"identical"}
    assert "bash" in result.a.debs and "apache-airflow" in result.a.dists
    assert result.a.size == result.b.size > 0
