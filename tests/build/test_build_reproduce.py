"""The reproducibility proof: two builds compared, and the first differing file named."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from test_build_pipeline import World, host_compiler, world  # noqa: F401 - world is a fixture

from hardflow.build.layers import LayerSpec, write_layer
from hardflow.build.pipeline import BuildOptions
from hardflow.build.reproduce import (
    check_reproducible,
    first_difference,
    first_json_difference,
    render_report,
)
from hardflow.lock.fetch import Cache
from hardflow.lock.model import read_lock
from hardflow.oci.layer import Compression
from hardflow.spec import ImageSpec

SDE = 1_700_000_000


def _options(w: World, name: str) -> BuildOptions:
    return BuildOptions(
        out_dir=w.root / name / "out",
        cache=Cache(w.root / "cache"),
        work_dir=w.root / name / "work",
        compiler=host_compiler,
    )


def test_fixture_image_is_reproducible_with_separate_caches(world: World) -> None:  # noqa: F811
    options = _options(world, "repro")
    report = check_reproducible(
        world.spec, read_lock(world.lock_path), world.lock_path, options, separate_caches=True
    )
    assert report.reproducible
    assert report.manifest_a == report.manifest_b and report.config_a == report.config_b
    assert report.layers and all(layer.same for layer in report.layers)
    assert report.config_difference is None
    lines = render_report(report)
    assert lines[0] == f"REPRODUCIBLE: two builds (separate caches) gave {report.manifest_a}"
    assert report.to_json()["reproducible"] is True
    # nothing is left behind, nothing written to the output directory
    assert not options.out_dir.exists()
    assert [p.name for p in (world.root / "repro").iterdir()] == ["work"] or not any(
        (world.root / "repro").iterdir()
    )


def test_a_nondeterministic_step_is_found_and_named(world: World) -> None:  # noqa: F811
    calls: list[int] = []
    victims: list[str] = []

    def leaky_compiler(root: Path, sources: Sequence[tuple[str, str]], spec: ImageSpec) -> None:
        host_compiler(root, sources, spec)
        stdlib = sorted(src for src, _ in sources if src.startswith("usr/lib/python"))
        if not stdlib:
            return
        calls.append(1)
        # a build-time value leaks into one file of the tree
        victims.append(stdlib[0])
        victim = root / victims[-1]
        victim.write_bytes(victim.read_bytes() + f"# build {len(calls)}\n".encode())

    options = replace(_options(world, "leaky"), compiler=leaky_compiler)
    report = check_reproducible(
        world.spec, read_lock(world.lock_path), world.lock_path, options, separate_caches=False
    )
    assert not report.reproducible
    differing = [layer for layer in report.layers if not layer.same]
    assert len(differing) == 1
    diff = differing[0].first_difference
    assert diff is not None
    assert diff.path == victims[0]
    assert diff.what.startswith("content sha256 ")  # "# build 1" vs "# build 2"
    text = "\n".join(render_report(report))
    assert "NOT REPRODUCIBLE" in text
    assert f"{diff.path!r}" in text and "first difference" in text
    assert report.config_difference == "only rootfs.diff_ids (they follow the layers)"


def _tree(root: Path, files: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        os.chmod(root / rel, (modes or {}).get(rel, 0o644))
    return root


def _layer(tmp: Path, name: str, files: dict[str, bytes], modes: dict[str, int] | None = None,
           sde: int = SDE, compression: Compression = "gzip") -> Path:  # fmt: skip
    root = _tree(tmp / name, files, modes)
    spec = LayerSpec("l", tuple(sorted(files)))
    return write_layer(root, spec, {}, sde, tmp / f"{name}-out", compression=compression).path


BASE = {"etc/a.conf": b"a\n", "usr/bin/tool": b"#!tool\n", "usr/lib/z.so": b"zzz"}


def test_first_difference_names_the_changed_file(tmp_path: Path) -> None:
    a = _layer(tmp_path, "a", BASE)
    same = _layer(tmp_path, "same", BASE)
    assert first_difference(a, same) is None
    b = _layer(tmp_path, "b", {**BASE, "usr/bin/tool": b"#!TOOL\n"})  # same size, new bytes
    diff = first_difference(a, b)
    assert diff is not None
    assert diff.path == "usr/bin/tool"
    assert diff.what.startswith("content sha256 ")
    mode = _layer(tmp_path, "mode", BASE, modes={"etc/a.conf": 0o600})
    diff = first_difference(a, mode)
    assert diff is not None and diff.path == "etc/a.conf" and diff.what == "mode 644 != 600"
    extra = _layer(tmp_path, "extra", {**BASE, "usr/lib/zz.so": b"1"})
    diff = first_difference(a, extra)
    assert diff is not None and diff.path == "usr/lib/zz.so" and diff.what == "only in build B"
    later = _layer(tmp_path, "later", BASE, sde=SDE + 1)
    diff = first_difference(a, later)
    assert diff is not None and diff.index == 0 and diff.what == f"mtime {SDE} != {SDE + 1}"


def test_first_json_difference() -> None:
    a = {"config": {"Env": ["A=1", "B=2"], "Labels": {"x": "1"}}, "created": "t"}
    assert first_json_difference(a, a) is None
    b = {"config": {"Env": ["A=1", "B=3"], "Labels": {"x": "1"}}, "created": "t"}
    assert first_json_difference(a, b) == 'config.Env[1]: "B=2" != "B=3"'
    c = {"config": {"Env": ["A=1", "B=2"], "Labels": {}}, "created": "t"}
    assert first_json_difference(a, c) == "config.Labels.x: only in build A"


def test_first_difference_in_a_zstd_build(tmp_path: Path) -> None:
    a = _layer(tmp_path, "a", BASE, compression="zstd")
    assert a.name.endswith(".tar.zst")
    assert first_difference(a, _layer(tmp_path, "same", BASE, compression="zstd")) is None
    # the same tar gzip'd holds the same entries: nothing differs entry by entry
    assert first_difference(a, _layer(tmp_path, "gz", BASE)) is None
    b = _layer(tmp_path, "b", {**BASE, "usr/bin/tool": b"#!TOOL\n"}, compression="zstd")
    diff = first_difference(a, b)
    assert diff is not None
    assert diff.path == "usr/bin/tool" and diff.what.startswith("content sha256 ")
