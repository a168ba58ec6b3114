"""Baked DAG and plugin folders: one top layer of their own, and a DAG edit rebuilds it alone.

The builds run on the fixture world of ``test_build_pipeline`` (a signed fake Debian
repository, tiny wheels, bytecode by the host interpreter).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest
from test_build_pipeline import World, world  # noqa: F401 - world is a fixture

from hardflow.build.baked import _read_regular, collect, hardflow_view, stage_parts
from hardflow.build.pipeline import BuildResult
from hardflow.errors import BuildError
from hardflow.oci.layer import iter_tar_entries
from hardflow.spec import load_spec

DAG = "from mylib import greet\n\nprint(greet())\n"


@pytest.fixture
def baked(world: World) -> World:  # noqa: F811 - the imported fixture
    """The world's spec with a DAG folder and a plugin folder (the lock stays valid: the
    folders are image fields, not lock inputs)."""
    dags = world.root / "dags"
    (dags / "sub").mkdir(parents=True)
    (dags / "my_dag.py").write_text(DAG)
    (dags / "sub" / "helper.py").write_text("X = 1\n")
    (dags / "run.sh").write_text("#!/bin/bash\n")
    (dags / "run.sh").chmod(0o755)
    (dags / ".airflowignore").write_text("sub/\n")
    (dags / "__pycache__").mkdir()
    (dags / "__pycache__" / "my_dag.cpython-313.pyc").write_bytes(b"stale")
    (world.root / "plugins").mkdir()
    (world.root / "plugins" / "mylib.py").write_text("def greet():\n    return 'hi'\n")
    text = world.spec_path.read_text()
    world.spec_path.write_text(
        text.replace("[image]\n", '[image]\ndags = "dags"\nplugins = "plugins"\n')
    )
    return world


def layer_members(result: BuildResult, name: str) -> dict[str, tarfile.TarInfo]:
    (layer,) = [x for x in result.image.layers if x.name == name]
    return {i.name.rstrip("/"): i for i in iter_tar_entries(layer.path)}


def digests(result: BuildResult) -> dict[str, str]:
    return {layer.name: layer.digest for layer in result.image.layers}


def test_baked_folders_are_the_top_layer(baked: World) -> None:
    result = baked.build("a")
    names = [layer.name for layer in result.image.layers]
    assert names[-2:] == ["hardflow", "baked"]
    baked = layer_members(result, "baked")
    hardflow = layer_members(result, "hardflow")
    dag = baked["opt/airflow/dags/my_dag.py"]
    assert (dag.uid, dag.gid, dag.mode) == (0, 0, 0o644)
    assert dag.mtime == result.source_date_epoch
    assert baked["opt/airflow/dags/run.sh"].mode == 0o755
    assert baked["opt/airflow/dags/sub"].isdir() and baked["opt/airflow/dags/sub"].mode == 0o755
    assert "opt/airflow/dags/.airflowignore" in baked
    assert "opt/airflow/plugins/mylib.py" in baked
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in baked)
    # the DAG and plugin folders themselves: root:0 0755, not writable by the image's user
    for folder in ("opt/airflow/dags", "opt/airflow/plugins"):
        assert (baked[folder].uid, baked[folder].gid, baked[folder].mode) == (0, 0, 0o755)
    # the parents exactly as the hardflow layer has them: stacking changes nothing above
    for parent in ("opt", "opt/airflow"):
        a, b = baked[parent], hardflow[parent]
        assert (a.uid, a.gid, a.mode, a.mtime) == (b.uid, b.gid, b.mode, b.mtime), parent
    assert set(baked) == {
        "opt", "opt/airflow", "opt/airflow/dags", "opt/airflow/dags/.airflowignore",
        "opt/airflow/dags/my_dag.py", "opt/airflow/dags/run.sh", "opt/airflow/dags/sub",
        "opt/airflow/dags/sub/helper.py", "opt/airflow/plugins", "opt/airflow/plugins/mylib.py",
    }  # fmt: skip
    with tarfile.open(result.image.layers[-1].path) as tar:
        member = tar.extractfile("opt/airflow/dags/my_dag.py")
        assert member is not None and member.read().decode() == DAG
    # the baked folder replaces the spec's [[files]] entry below it
    assert "opt/airflow/dags/hello.py" not in hardflow
    assert any("/opt/airflow/dags/hello.py left out" in n for n in result.notes)


def test_a_dag_edit_rebuilds_the_baked_layer_alone(baked: World) -> None:
    a = baked.build("a")
    assert a.layers_built  # a cold cache
    b = baked.build("b")
    assert b.layers_built == () and b.image.manifest_digest == a.image.manifest_digest
    (baked.root / "dags" / "my_dag.py").write_text(DAG + "# edited\n")
    c = baked.build("c")
    assert c.layers_built == ("baked",)
    assert set(c.layers_cached) == set(digests(a)) - {"baked"}
    before, after = digests(a), digests(c)
    assert [n for n in before if before[n] != after[n]] == ["baked"]
    assert c.image.config_digest != a.image.config_digest
    assert c.image.manifest_digest != a.image.manifest_digest


def test_same_folders_elsewhere_give_the_same_image(baked: World) -> None:
    """Where the spec and its folders are on the build host is not part of the image."""
    a = baked.build("a")
    moved = baked.root / "elsewhere"
    moved.mkdir()
    for name in ("dags", "plugins"):
        shutil.copytree(baked.root / name, moved / name)
    shutil.copy(baked.spec_path, moved / baked.spec_path.name)
    os.utime(moved / "dags" / "my_dag.py", (1, 1))  # host mtimes do not count either
    baked.spec_path = moved / baked.spec_path.name
    b = baked.build("b")
    assert b.image.manifest_digest == a.image.manifest_digest
    assert b.layers_built == ()


def test_without_folders_there_is_no_baked_layer_and_files_stay(world: World) -> None:  # noqa: F811
    result = world.build("a")
    assert "baked" not in digests(result)
    assert "opt/airflow/dags/hello.py" in layer_members(result, "hardflow")


def test_the_hardflow_layer_does_not_depend_on_the_folders(baked: World) -> None:
    spec = load_spec(baked.spec_path)
    view, dropped = hardflow_view(spec)
    assert dropped == ("/opt/airflow/dags/hello.py",)
    assert (view.dags, view.plugins, view.files) == ("", "", ())
    before = stage_parts(spec, collect(spec))
    (baked.root / "dags" / "my_dag.py").write_text("changed\n")
    again, _ = hardflow_view(load_spec(baked.spec_path))
    assert again.checksum() == view.checksum()
    # ... while the baked stage's key follows the bytes
    after = stage_parts(spec, collect(load_spec(baked.spec_path)))
    assert before != after


def test_only_plugins_keeps_the_example_dag(baked: World) -> None:
    text = baked.spec_path.read_text().replace('dags = "dags"\n', "")
    baked.spec_path.write_text(text)
    spec = load_spec(baked.spec_path)
    view, dropped = hardflow_view(spec)
    assert dropped == () and len(view.files) == 1
    (folder,) = collect(spec)
    assert (folder.kind, folder.dest) == ("plugins", "opt/airflow/plugins")


def test_a_swapped_in_fifo_or_symlink_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.py")
    with pytest.raises(BuildError, match="expected a regular file"):
        _read_regular(tmp_path, "pipe.py", "dags")
    (tmp_path / "secret").write_text("x")
    (tmp_path / "link.py").symlink_to(tmp_path / "secret")
    with pytest.raises(BuildError, match=r"link\.py"):
        _read_regular(tmp_path, "link.py", "dags")
    assert _read_regular(tmp_path, "secret", "dags") == b"x"
