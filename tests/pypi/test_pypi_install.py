"""Installing wheels into an image tree for the target interpreter."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardflow.errors import ArchiveError
from hardflow.pypi.install import install_wheel
from helpers.fixtures_wheels import build_wheel

SITE = "usr/local/lib/python3.13/dist-packages"


@pytest.fixture
def strict_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_install_writes_files_scripts_and_metadata(tmp_path: Path, strict_umask: None) -> None:
    wheel = build_wheel(
        tmp_path / "w", "Tool-Kit", "1.2",
        files={"toolkit/__init__.py": b"def main():\n    return 0\n",
               "toolkit/native.so": b"\x7fELF", "toolkit/run.sh": b"#!/bin/sh\n"},
        executables=["toolkit/run.sh"],
        console_scripts={"toolkit": "toolkit:main"},
        data={"scripts/legacy-tool": b"#!python\nprint('hi')\n",
              "data/share/toolkit/readme.txt": b"doc\n",
              "headers/toolkit.h": b"/* h */\n"},
    )  # fmt: skip
    root = tmp_path / "root"
    result = install_wheel(wheel, root, "3.13", "/usr/bin/python3.13")

    assert result.name == "tool-kit" and result.version == "1.2"
    assert set(result.files) == _tree(root)  # every written file is reported, nothing else
    dist_info = f"{SITE}/Tool_Kit-1.2.dist-info"
    for rel in (
        f"{SITE}/toolkit/__init__.py",
        f"{SITE}/toolkit/native.so",
        "usr/local/bin/toolkit",
        "usr/local/bin/legacy-tool",
        "usr/local/share/toolkit/readme.txt",
        "usr/local/include/python3.13/tool-kit/toolkit.h",
        f"{dist_info}/METADATA",
        f"{dist_info}/INSTALLER",
        f"{dist_info}/RECORD",
    ):
        assert rel in result.files, rel

    script = (root / "usr/local/bin/toolkit").read_text()
    assert script.splitlines()[0] == "#!/usr/bin/python3.13"
    assert "from toolkit import main" in script
    assert (root / "usr/local/bin/legacy-tool").read_text().splitlines()[0] == (
        "#!/usr/bin/python3.13"
    )
    assert (root / dist_info / "INSTALLER").read_text() == "hardflow\n"
    record = (root / dist_info / "RECORD").read_text()
    assert "../../../bin/toolkit,sha256=" in record
    assert "toolkit/__init__.py,sha256=" in record
    assert not any(p.endswith(".pyc") for p in result.files)  # target compiles later

    def mode(rel: str) -> int:
        return stat.S_IMODE((root / rel).stat().st_mode)

    assert mode("usr/local/bin/toolkit") == 0o755
    assert mode(f"{SITE}/toolkit/run.sh") == 0o755
    assert mode(f"{SITE}/toolkit/__init__.py") == 0o644
    assert mode(f"{dist_info}/RECORD") == 0o644
    assert mode(f"{SITE}/toolkit") == 0o755
    assert mode("usr/local/bin") == 0o755


def test_custom_site_packages(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "w", "alpha", "1.0")
    result = install_wheel(
        wheel, tmp_path / "root", "3.13", "/opt/py/bin/python3",
        site_packages="opt/py/lib/python{v}/site-packages", scripts_dir="opt/py/bin",
    )  # fmt: skip
    assert "opt/py/lib/python3.13/site-packages/alpha/__init__.py" in result.files


@pytest.mark.parametrize("member", ["../evil.py", "alpha/../../evil.py", "/etc/evil"])
def test_path_traversal_rejected(tmp_path: Path, member: str) -> None:
    wheel = build_wheel(tmp_path / "w", "alpha", "1.0", extra_members={member: b"x"})
    root = tmp_path / "img" / "root"
    with pytest.raises(ArchiveError) as info:
        install_wheel(wheel, root, "3.13", "/usr/bin/python3.13")
    assert wheel.name in info.value.message and member in info.value.message
    assert not (tmp_path / "img").exists()  # nothing written at all


def test_record_hash_mismatch_rejected(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "w", "alpha", "1.0", bad_hash_for="alpha/__init__.py")
    root = tmp_path / "root"
    with pytest.raises(ArchiveError) as info:
        install_wheel(wheel, root, "3.13", "/usr/bin/python3.13")
    assert wheel.name in info.value.message
    assert "alpha/__init__.py" in info.value.message
    assert not root.exists()


def test_member_missing_from_record_rejected(tmp_path: Path) -> None:
    good = build_wheel(tmp_path / "w", "alpha", "1.0")
    import zipfile

    with zipfile.ZipFile(good, "a") as zf:
        zf.writestr("alpha/sneaky.py", b"import os\n")
    with pytest.raises(ArchiveError, match=r"sneaky\.py is not mentioned in RECORD"):
        install_wheel(good, tmp_path / "root", "3.13", "/usr/bin/python3.13")


def test_overwriting_another_wheels_file_rejected(tmp_path: Path) -> None:
    a = build_wheel(tmp_path / "w", "alpha", "1.0", files={"shared/x.py": b"a\n"})
    b = build_wheel(tmp_path / "w", "beta", "1.0", files={"shared/x.py": b"b\n"})
    root = tmp_path / "root"
    install_wheel(a, root, "3.13", "/usr/bin/python3.13")
    with pytest.raises(ArchiveError, match=r"beta-1\.0-py3-none-any\.whl would overwrite"):
        install_wheel(b, root, "3.13", "/usr/bin/python3.13")


def test_symlink_member_rejected(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "w", "alpha", "1.0")
    import zipfile

    with zipfile.ZipFile(wheel, "a") as zf:
        info = zipfile.ZipInfo("alpha/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"/etc/passwd")
    with pytest.raises(ArchiveError, match="alpha/link' is not a regular file"):
        install_wheel(wheel, tmp_path / "root", "3.13", "/usr/bin/python3.13")


def test_not_a_wheel(tmp_path: Path) -> None:
    bogus = tmp_path / "alpha-1.0-py3-none-any.whl"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match=r"alpha-1\.0-py3-none-any\.whl"):
        install_wheel(bogus, tmp_path / "root", "3.13", "/usr/bin/python3.13")


@pytest.mark.parametrize("linked", ["usr", "usr/local/lib", f"{SITE}/alpha"])
def test_install_never_writes_through_a_symlink_in_the_tree(tmp_path: Path, linked: str) -> None:
    """Whatever the tree holds (here a link to a host directory), the installer's writes stay
    below the root: it refuses rather than follow the link."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("host")
    wheel = build_wheel(tmp_path / "w", "alpha", "1.0")
    root = tmp_path / "root"
    (root / linked).parent.mkdir(parents=True, exist_ok=True)
    (root / linked).symlink_to(victim)
    with pytest.raises(ArchiveError) as info:
        install_wheel(wheel, root, "3.13", "/usr/bin/python3.13")
    assert wheel.name in info.value.message and "is a symlink" in info.value.message
    assert [p.name for p in victim.iterdir()] == ["keep"]


def test_install_data_scheme_cannot_reach_outside(tmp_path: Path) -> None:
    """``.data/data/`` lands in the data dir (usr/local): a name climbing from there is refused
    by the member check before anything is written."""
    wheel = build_wheel(tmp_path / "w", "alpha", "1.0",
                        extra_members={"alpha-1.0.data/data/../../../escape": b"x"})  # fmt: skip
    root = tmp_path / "img"
    with pytest.raises(ArchiveError):
        install_wheel(wheel, root, "3.13", "/usr/bin/python3.13")
    assert not root.exists() and not (tmp_path / "escape").exists()


def test_a_hostile_locked_file_name_cannot_place_the_wheel_link(tmp_path: Path) -> None:
    """The lock's schema refuses such a name; the wheel stage refuses it again on its own."""
    from hardflow.build.rootfs import WheelInput, assemble_wheels
    from hardflow.lock.model import LockedWheel
    from hardflow.spec import parse_spec

    wheel = build_wheel(tmp_path / "w", "alpha", "1.0")
    victim = tmp_path / "victim.whl"
    victim.write_text("host file")
    spec = parse_spec({"name": "t/x", "tag": "1",
                       "debian": {"suites": ["trixie"], "packages": ["a1"]},
                       "python": {"version": "3.13"}}, "t.toml")  # fmt: skip
    hostile = LockedWheel("alpha", "1.0", "../victim.whl", "0" * 64, 0)
    with pytest.raises(ArchiveError, match=r"'\.\.' component"):
        assemble_wheels(spec, "wheels-0", [WheelInput(hostile, wheel)], tmp_path / "stage",
                        tmp_path / "links")  # fmt: skip
    assert victim.read_text() == "host file" and not victim.is_symlink()
