"""The hardflow stage writes ``[[files]] link`` entries as symlinks, at their merged-/usr place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hardflow.build.rootfs import assemble_hardflow, finish
from hardflow.errors import BuildError
from hardflow.spec import ImageSpec, image_dest, load_embedded, parse_spec


def spec(*files: dict[str, str]) -> ImageSpec:
    return parse_spec(
        {"name": "t/x", "tag": "1", "debian": {"suites": ["trixie"], "packages": ["a1"]},
         "python": {"version": "3.13"}, "files": list(files)},
        "links.toml",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("dest", "where"),
    [
        ("/bin/sh", "/usr/bin/sh"),
        ("/sbin/x", "/usr/sbin/x"),
        ("/lib64/ld.so", "/usr/lib64/ld.so"),
        ("/entrypoint", "/entrypoint"),
        ("/bin", "/bin"),  # the link itself is the Debian layer's: not remapped
        ("/binaries/x", "/binaries/x"),
        ("/lib32/x", "/lib32/x"),  # no /lib32 link in the image
        ("/usr/bin/x", "/usr/bin/x"),
    ],
)
def test_image_dest_follows_the_merged_usr_layout(dest: str, where: str) -> None:
    assert image_dest(dest) == where


def test_links_are_written_as_symlinks(tmp_path: Path) -> None:
    tree = assemble_hardflow(
        spec(
            {"dest": "/bin/sh", "link": "bash"},
            {"dest": "/entrypoint", "link": "/usr/local/lib/hardflow/entrypoint.py"},
            {"dest": "/opt/airflow/dags/latest", "link": "x.py"},
        ),
        tmp_path / "stage",
    )
    root = tree.root
    assert os.readlink(root / "usr/bin/sh") == "bash"
    assert os.readlink(root / "entrypoint") == "/usr/local/lib/hardflow/entrypoint.py"
    # no real bin/ directory: it would hide the base layer's /bin -> usr/bin link
    assert not (root / "bin").exists() and not (root / "bin").is_symlink()
    stage = finish(tree, ("hardflow",), 0)
    paths = stage.layers[0].paths
    assert {"usr/bin/sh", "entrypoint", "opt/airflow/dags/latest"} <= set(paths)
    assert stage.owners["opt/airflow/dags/latest"] == (50000, 0)


def test_a_link_never_writes_through_an_existing_link(tmp_path: Path) -> None:
    # /etc/os-release is the stage's own symlink: a link entry at a path below it is refused
    victim = tmp_path / "victim"
    victim.mkdir()
    with pytest.raises(BuildError) as err:
        assemble_hardflow(spec({"dest": "/etc/os-release/x", "link": str(victim)}),
                          tmp_path / "stage")  # fmt: skip
    assert "links.toml" in err.value.message and "/etc/os-release/x" in err.value.message
    assert list(victim.iterdir()) == []


def test_the_default_spec_gets_sh_entrypoint_and_clean_logs(tmp_path: Path) -> None:
    tree = assemble_hardflow(load_embedded("default"), tmp_path / "stage")
    root = tree.root
    assert os.readlink(root / "usr/bin/sh") == "bash"
    assert os.readlink(root / "entrypoint") == "/usr/local/lib/hardflow/entrypoint.py"
    assert (root / "usr/local/lib/hardflow/entrypoint.py").stat().st_mode & 0o777 == 0o755
    wrapper = root / "clean-logs"
    assert wrapper.stat().st_mode & 0o777 == 0o755
    assert "/usr/local/lib/hardflow/clean_logs.py" in wrapper.read_text()
    assert (root / "usr/local/lib/hardflow/webserver_config.py").is_file()
