"""Folders a spec names (``[python] find-links``, ``[image] dags`` and ``plugins``), what of
them is baked (``baked_files``), their place in the checksums, and ``with_additions``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hardflow.errors import SpecError
from hardflow.spec import (
    BakedFile,
    ImageSpec,
    baked_files,
    load_embedded,
    load_spec,
    with_additions,
)
from hardflow.spec_inputs import BAKED_MAX_BYTES, BAKED_MAX_ENTRIES

SPEC = """
name = "acme/airflow"
tag = "1.0"
[debian]
suites = ["trixie"]
packages = ["bash"]
[python]
version = "3.13"
requirements = ["apache-airflow==3.3.2"]
"""


def project(tmp_path: Path, extra: str = "") -> Path:
    folder = tmp_path / "project"
    for sub in ("dags", "plugins", "wheels", "more-wheels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "dags" / "etl.py").write_text("# a DAG\n")
    (folder / "plugins" / "plugin.py").write_text("# a plugin\n")
    spec = folder / "img.toml"
    spec.write_text(SPEC + extra.removeprefix("[python]\n"))  # SPEC ends in [python]
    return spec


FOLDERS = '[image]\ndags = "dags"\nplugins = "./plugins/"\n'


def test_folders_are_absolute_and_resolved(tmp_path: Path) -> None:
    path = project(tmp_path, '[python]\nfind-links = ["wheels", "more-wheels/", "."]\n' + FOLDERS)
    spec = load_spec(path)
    root = path.parent.resolve()
    assert spec.python.find_links == (str(root / "wheels"), str(root / "more-wheels"), str(root))
    assert (spec.dags, spec.plugins) == (str(root / "dags"), str(root / "plugins"))


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[python]\nfind-links = ["../outside"]\n', "python.find-links[0]"),
        ('[python]\nfind-links = ["wheels", "/tmp"]\n', "python.find-links[1]"),
        ('[python]\nfind-links = ["escape"]\n', "python.find-links[0]"),
        ('[python]\nfind-links = ["missing"]\n', "python.find-links[0]"),
        ('[python]\nfind-links = "wheels"\n', "python.find-links"),
        ('[image]\ndags = "../outside"\n', "image.dags"),
        ('[image]\ndags = "escape"\n', "image.dags"),
        ('[image]\ndags = "."\n', "image.dags"),  # the spec's own folder is not a DAG folder
        ('[image]\ndags = "dags/etl.py"\n', "image.dags"),
        ('[image]\nplugins = "dags/../../outside"\n', "image.plugins"),
        ('[image]\nplugins = "escape"\n', "image.plugins"),
        ('[image]\nplugins = "missing"\n', "image.plugins"),
        ("[image]\nplugins = 1\n", "image.plugins"),
    ],
)
def test_folders_stay_inside_the_spec_folder_and_exist(
    tmp_path: Path, extra: str, key: str
) -> None:
    (tmp_path / "outside").mkdir()
    path = project(tmp_path, extra)
    (path.parent / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    msg = exc.value.message
    assert msg.startswith(str(path)) and f"key '{key}'" in msg and "expected" in msg


def test_a_base_folder_resolves_in_the_base_folder(tmp_path: Path) -> None:
    base = project(tmp_path, '[python]\nfind-links = ["wheels"]\n' + FOLDERS)
    app = tmp_path / "app"
    (app / "wheels").mkdir(parents=True)
    (app / "dags").mkdir()
    child = app / "app.toml"
    child.write_text('extends = "../project/img.toml"\n[python]\nfind-links = ["wheels"]\n')
    spec = load_spec(child)
    root = base.parent.resolve()
    assert spec.python.find_links == (str(root / "wheels"), str(app.resolve() / "wheels"))
    assert (spec.dags, spec.plugins) == (str(root / "dags"), str(root / "plugins"))
    child.write_text('extends = "../project/img.toml"\n[image]\ndags = "dags"\n')
    spec = load_spec(child)  # a scalar: the child's own folder replaces the base's
    assert (spec.dags, spec.plugins) == (str(app.resolve() / "dags"), str(root / "plugins"))


# --------------------------------------------------------------------------------------------
# baked_files


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_baked_files_lists_files_and_folders_sorted_parents_first(tmp_path: Path) -> None:
    root = tree(tmp_path / "dags", {
        "b.py": "b", "a/z.py": "z", "a/sub/deep.py": "d", ".airflowignore": "x.*\n",
        "a-b/c.py": "c", "a/__pycache__/z.cpython-313.pyc": "", "a/stale.pyc": "",
        ".git/config": "", "sub/.git": "gitdir: elsewhere", "run.sh": "#!/bin/sh\n",
    })  # fmt: skip
    (root / "empty").mkdir()
    (root / "run.sh").chmod(0o700)
    (root / "b.py").chmod(0o600)
    found = baked_files(str(root))
    assert [(b.rel, b.is_dir, b.mode) for b in found] == [
        (".airflowignore", False, 0o644),
        ("a", True, 0o755),
        ("a/sub", True, 0o755),
        ("a/sub/deep.py", False, 0o644),
        ("a/z.py", False, 0o644),
        ("a-b", True, 0o755),
        ("a-b/c.py", False, 0o644),
        ("b.py", False, 0o644),
        ("empty", True, 0o755),
        ("run.sh", False, 0o755),  # any exec bit: executable for all
        ("sub", True, 0o755),
    ]
    assert all(isinstance(b, BakedFile) and b.path == root / b.rel for b in found)


@pytest.mark.parametrize("kind", ["symlink-file", "symlink-dir", "dangling", "fifo", "socket"])
def test_special_entries_are_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    root = tree(tmp_path / "dags", {"ok.py": "", "inner/ok.py": ""})
    bad = root / "inner" / "bad"
    if kind == "symlink-file":
        bad.symlink_to(root / "ok.py")
    elif kind == "symlink-dir":
        bad.symlink_to(tmp_path, target_is_directory=True)
    elif kind == "dangling":
        bad.symlink_to(tmp_path / "nowhere")
    elif kind == "fifo":
        os.mkfifo(bad)
    else:
        import socket

        monkeypatch.chdir(bad.parent)  # AF_UNIX paths are short: bind a relative name
        sock = socket.socket(socket.AF_UNIX)
        sock.bind("bad")
        sock.close()
    with pytest.raises(SpecError) as exc:
        baked_files(str(root))
    msg = exc.value.message
    assert msg.startswith(str(bad)) and "expected a regular file or a folder" in msg


def test_an_unreadable_file_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "dags", {"ok.py": "", "secret.py": ""})
    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(path).name == "secret.py":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(SpecError, match=r"secret\.py: expected a readable.*Permission denied"):
        baked_files(str(root))


def test_a_symlink_or_file_as_the_folder_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path / "dags", {"ok.py": ""})
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    for folder in (tmp_path / "link", root / "ok.py", tmp_path / "missing"):
        with pytest.raises(SpecError, match="expected a folder to bake"):
            baked_files(str(folder))


def test_the_caps_are_enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hardflow.spec_inputs as inputs

    root = tree(tmp_path / "dags", {f"d{i}.py": "x" * 100 for i in range(5)})
    monkeypatch.setattr(inputs, "BAKED_MAX_ENTRIES", 4)
    with pytest.raises(SpecError, match="at most 4 files and folders"):
        baked_files(str(root))
    monkeypatch.setattr(inputs, "BAKED_MAX_ENTRIES", BAKED_MAX_ENTRIES)
    monkeypatch.setattr(inputs, "BAKED_MAX_BYTES", 450)
    with pytest.raises(SpecError, match=r"at most 0 MiB of files"):
        baked_files(str(root))
    assert BAKED_MAX_ENTRIES == 20_000 and BAKED_MAX_BYTES == 256 << 20


# --------------------------------------------------------------------------------------------
# checksums


def test_a_dag_edit_changes_the_checksum_but_never_the_lock(tmp_path: Path) -> None:
    path = project(tmp_path, FOLDERS)
    spec = load_spec(path)
    without = load_spec(project(tmp_path))
    sums = [spec.checksum()]
    dag = path.parent / "dags" / "etl.py"
    dag.write_text("# an edited DAG\n")
    sums.append(spec.checksum())
    dag.chmod(0o755)
    sums.append(spec.checksum())
    (path.parent / "dags" / "new").mkdir()
    sums.append(spec.checksum())
    (path.parent / "plugins" / "plugin.py").write_text("# edited\n")
    sums.append(spec.checksum())
    (path.parent / "dags" / "__pycache__").mkdir()
    (path.parent / "dags" / "__pycache__" / "etl.cpython-313.pyc").write_bytes(b"\0")
    sums.append(spec.checksum())  # not baked: no change
    assert len(set(sums)) == 5 and sums[-1] == sums[-2]
    assert spec.lock_checksum() == without.lock_checksum()  # dags/plugins never re-lock
    assert spec.checksum() != without.checksum()


def test_the_checksum_does_not_depend_on_where_the_project_is(tmp_path: Path) -> None:
    extra = '[python]\nfind-links = ["wheels"]\n' + FOLDERS
    one = load_spec(project(tmp_path / "one", extra))
    two = load_spec(project(tmp_path / "elsewhere" / "two", extra))
    assert one.checksum() == two.checksum()
    assert one.lock_checksum() == two.lock_checksum()


def test_find_links_and_requirements_files_are_lock_inputs(tmp_path: Path) -> None:
    plain = load_spec(project(tmp_path)).lock_checksum()
    path = project(tmp_path, '[python]\nfind-links = ["wheels"]\n')
    assert load_spec(path).lock_checksum() != plain
    (path.parent / "requirements.txt").write_text("tabulate\n")
    path.write_text(SPEC.replace('version = "3.13"', 'version = "3.13"\n'
                                 'requirements-file = "requirements.txt"'))  # fmt: skip
    with_file = load_spec(path).lock_checksum()
    assert with_file != plain
    (path.parent / "requirements.txt").write_text("tabulate==0.9.0\n")
    assert load_spec(path).lock_checksum() != with_file


def test_unset_new_keys_leave_the_checksums_unchanged(tmp_path: Path) -> None:
    spec = load_spec(project(tmp_path))
    assert spec.python.find_links == () and spec.dags == spec.plugins == ""
    data = spec.python
    assert data.requirements_file == "" and dict(data.hashes) == {}
    # the values a spec without the new keys had before they existed (spec.py of 9b38d3f)
    assert spec.lock_checksum() == (
        "sha256:1935b69af2cd2c02abf0c3ae42b3b5c2435bfb581b2531785de957588e12fd46"
    )
    assert spec.checksum() == (
        "sha256:57e3ead861fe6b3456006f2ffee574023abaaf2458ef4e65acc5015658357a0e"
    )


# --------------------------------------------------------------------------------------------
# with_additions (hardflow build --with X --debian Y)


def test_with_additions_appends_once_each() -> None:
    spec = load_embedded()
    more = with_additions(spec, ["tabulate", "apache-airflow==3.3.2", "tabulate"], ["curl"])
    assert more.python.requirements == (*spec.python.requirements, "tabulate")
    assert more.debian.packages == (*spec.debian.packages, "curl")
    assert more.lock_checksum() != spec.lock_checksum()
    assert with_additions(spec) == spec
    assert isinstance(more, ImageSpec) and more.source == spec.source


@pytest.mark.parametrize(
    ("requirements", "packages", "expected"),
    [
        (["not a requirement!"], [], "--with: expected a Python requirement"),
        ([""], [], "--with: expected a Python requirement"),
        (["x\0"], [], "--with: expected a Python requirement"),
        ([], ["Curl"], "--debian: expected a Debian package name"),
        ([], ["x"], "--debian: expected a Debian package name"),
        ([], ["curl;rm"], "--debian: expected a Debian package name"),
    ],
)
def test_with_additions_refuses_bad_values(
    requirements: list[str], packages: list[str], expected: str
) -> None:
    with pytest.raises(SpecError) as exc:
        with_additions(load_embedded(), requirements, packages)
    assert exc.value.message.startswith(expected)
    assert repr((requirements or packages)[0]) in exc.value.message


def test_mode_bits_are_read_without_following_links(tmp_path: Path) -> None:
    root = tree(tmp_path / "plugins", {"x.py": ""})
    (root / "x.py").chmod(stat.S_IRUSR | stat.S_IXGRP)
    (entry,) = baked_files(str(root))
    assert entry.mode == 0o755
