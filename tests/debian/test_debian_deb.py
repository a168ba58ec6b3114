"""Reading .deb files safely."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from hardflow.debian.deb import read_deb, symlink_escapes
from hardflow.errors import ArchiveError
from helpers.fixtures_debian import FakePackage, TarEntry, ar_archive, build_deb

CONTROL = {
    "Package": "tool",
    "Source": "toolsrc (1.0-1)",
    "Version": "1.0-1+b1",
    "Architecture": "amd64",
    "Maintainer": "Tests <t@example.invalid>",
    "Depends": "libc6 (>= 2.36)",
    "Description": "a tool\n for tests",
}


def good_entries() -> list[TarEntry]:
    return [
        TarEntry("./", "dir", mode=0o755),
        TarEntry("./usr/", "dir", mode=0o755),
        TarEntry("./usr/bin/", "dir", mode=0o755),
        TarEntry("./usr/bin/tool", data=b"\x7fELF tool", mode=0o755),
        TarEntry("./usr/bin/suid-tool", data=b"\x7fELF suid", mode=0o4755),
        TarEntry("./usr/bin/tool-alias", "hardlink", mode=0o755, link="./usr/bin/tool"),
        TarEntry("./usr/bin/t", "symlink", mode=0o777, link="tool"),
        TarEntry("./usr/lib/", "dir", mode=0o755),
        TarEntry("./usr/lib/tool.so", "symlink", mode=0o777, link="/usr/lib/x86_64/tool.so.1"),
        TarEntry("./usr/lib/cfg", "symlink", mode=0o777, link="../../etc/tool.conf"),
        TarEntry("./etc/", "dir", mode=0o755),
        TarEntry("./etc/tool.conf", data=b"opt=1\n", mode=0o644),
        TarEntry("./tmp/", "dir", mode=0o1777),
    ]


@pytest.mark.parametrize("compression", ["gz", "xz", "zst", "bz2", ""])
def test_good_deb_is_read_completely(tmp_path: Path, compression: str) -> None:
    deb = build_deb(
        tmp_path / "tool.deb",
        CONTROL,
        good_entries(),
        conffiles=["/etc/tool.conf"],
        compression=compression,
    )
    contents = read_deb(deb)
    assert contents.control["Package"] == "tool"
    assert contents.control["Version"] == "1.0-1+b1"
    assert contents.control["Source"] == "toolsrc (1.0-1)"
    assert contents.control["Depends"] == "libc6 (>= 2.36)"
    assert contents.control_text.startswith("Package: tool\nSource: toolsrc (1.0-1)\n")
    assert contents.control_text.endswith("Description: a tool\n for tests\n")
    assert contents.conffiles == ("/etc/tool.conf",)

    members = {m.path: m for m in contents.members}
    assert list(members) == [
        "usr",
        "usr/bin",
        "usr/bin/tool",
        "usr/bin/suid-tool",
        "usr/bin/tool-alias",
        "usr/bin/t",
        "usr/lib",
        "usr/lib/tool.so",
        "usr/lib/cfg",
        "etc",
        "etc/tool.conf",
        "tmp",
    ]
    tool = members["usr/bin/tool"]
    assert (tool.kind, tool.mode, tool.data, tool.link) == ("file", 0o755, b"\x7fELF tool", "")
    assert members["usr/bin/suid-tool"].mode == 0o4755
    assert members["tmp"].kind == "dir" and members["tmp"].mode == 0o1777
    alias = members["usr/bin/tool-alias"]
    assert (alias.kind, alias.link, alias.data) == ("hardlink", "usr/bin/tool", b"")
    assert (members["usr/bin/t"].kind, members["usr/bin/t"].link) == ("symlink", "tool")
    assert members["usr/lib/tool.so"].link == "/usr/lib/x86_64/tool.so.1"
    assert members["usr/lib/cfg"].link == "../../etc/tool.conf"
    assert members["etc/tool.conf"].data == b"opt=1\n"


def test_fake_package_deb_round_trips(tmp_path: Path) -> None:
    pkg = FakePackage(
        "libfoo1",
        "2.0-1",
        files={"usr/lib/libfoo.so.1": b"lib", "usr/bin/foo": b"bin"},
        modes={"usr/lib/libfoo.so.1": 0o600},
        symlinks={"usr/lib/libfoo.so": "libfoo.so.1"},
    )
    deb = build_deb(tmp_path / "x.deb", pkg.control(), pkg.entries())
    contents = read_deb(deb)
    kinds = {m.path: (m.kind, m.mode) for m in contents.members}
    assert kinds == {
        "usr": ("dir", 0o755),
        "usr/bin": ("dir", 0o755),
        "usr/lib": ("dir", 0o755),
        "usr/bin/foo": ("file", 0o755),
        "usr/lib/libfoo.so.1": ("file", 0o600),
        "usr/lib/libfoo.so": ("symlink", 0o777),
    }


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
def test_fixture_debs_are_accepted_by_dpkg(tmp_path: Path) -> None:
    """Our hand-made .debs are real ones: dpkg-deb reads them as we do."""
    deb = build_deb(tmp_path / "tool.deb", CONTROL, good_entries(), compression="xz")
    info = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Package", "Version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert info.stdout.split() == ["Package:", "tool", "Version:", "1.0-1+b1"]
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True
    )
    assert "./usr/bin/suid-tool" in listing.stdout


def bad_deb(tmp_path: Path, *extra: TarEntry) -> Path:
    return build_deb(tmp_path / "evil.deb", CONTROL, [*good_entries(), *extra])


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (TarEntry("../etc/passwd", data=b"root::0:0"), "'..' component"),
        (TarEntry("./usr/../../etc/passwd", data=b"x"), "'..' component"),
        (TarEntry("/etc/passwd", data=b"root::0:0"), "absolute path"),
        (TarEntry("./usr/lib/up", "symlink", link="../../.."), "points outside the root"),
        (TarEntry("./esc", "symlink", link="../etc/shadow"), "points outside the root"),
        (TarEntry("./usr/bin/x", "symlink", link="a/../../../../b"), "points outside the root"),
        (TarEntry("./usr/bin/empty", "symlink", link=""), "empty target"),
        (TarEntry("./usr/bin/pw", "hardlink", link="../etc/passwd"), "'..' component"),
        (TarEntry("./usr/bin/pw", "hardlink", link="/etc/passwd"), "absolute path"),
        (TarEntry("./usr/bin/pw", "hardlink", link="./usr/bin/later"), "not an earlier"),
        (TarEntry("./usr/bin/pw", "hardlink", link="./usr/lib"), "not an earlier"),
        (TarEntry("./run/ctl", "fifo"), "unsupported member type"),
    ],
)
def test_unsafe_members_are_rejected(tmp_path: Path, entry: TarEntry, reason: str) -> None:
    deb = bad_deb(tmp_path, entry, TarEntry("./usr/bin/later", data=b"x"))
    with pytest.raises(ArchiveError) as err:
        read_deb(deb)
    message = str(err.value)
    assert str(deb) in message
    assert repr(entry.path) in message or repr(entry.link) in message
    assert reason in message


def test_device_nodes_are_skipped_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deb = bad_deb(tmp_path, TarEntry("./dev/null", "chardev"), TarEntry("./dev/sda", "blockdev"))
    with caplog.at_level(logging.WARNING, logger="hardflow.debian.deb"):
        contents = read_deb(deb)
    paths = [m.path for m in contents.members]
    assert "dev/null" not in paths and "dev/sda" not in paths
    assert "usr/bin/tool" in paths
    assert "device nodes do not belong in an image" in caplog.text
    assert "./dev/null" in caplog.text


@pytest.mark.parametrize(
    ("path", "target", "escapes"),
    [
        ("usr/lib/a", "../../etc/x", False),
        ("usr/lib/a", "../../../etc/x", True),
        ("a", "..", True),
        ("usr/a", "..", False),
        ("usr/lib/a", "/etc/x", False),
        ("usr/lib/a", "/../../x", False),  # absolute: resolved inside the image root
        ("usr/lib/a", "b/../../../../x", True),
    ],
)
def test_symlink_escape_rule(path: str, target: str, escapes: bool) -> None:
    assert symlink_escapes(path, target) is escapes


def test_truncated_deb_is_rejected(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "tool.deb", CONTROL, good_entries())
    blob = deb.read_bytes()
    for cut in (len(blob) - 7, len(blob) // 2, 70, 30):
        deb.write_bytes(blob[:cut])
        with pytest.raises(ArchiveError) as err:
            read_deb(deb)
        assert str(deb) in str(err.value)


def test_corrupt_data_member_is_rejected(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "tool.deb", CONTROL, good_entries(), compression="xz")
    blob = bytearray(deb.read_bytes())
    blob[-40] ^= 0xFF  # inside data.tar.xz
    deb.write_bytes(bytes(blob))
    with pytest.raises(ArchiveError, match=r"data\.tar\.xz"):
        read_deb(deb)


def test_non_ar_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "not.deb"
    path.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(ArchiveError, match="no ar archive signature"):
        read_deb(path)


def test_missing_file_is_an_archive_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot read"):
        read_deb(tmp_path / "absent.deb")


def test_ar_without_debian_binary_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "odd.deb"
    path.write_bytes(ar_archive([("control.tar.gz", b""), ("data.tar.gz", b"")]))
    with pytest.raises(ArchiveError, match="debian-binary"):
        read_deb(path)


def test_deb_without_data_member_is_rejected(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "tool.deb", CONTROL, good_entries())
    from hardflow.debian.deb import read_ar

    members = read_ar(deb.read_bytes(), "x")[:2]
    deb.write_bytes(ar_archive(members))
    with pytest.raises(ArchiveError, match=r"no data\.tar member"):
        read_deb(deb)


def test_a_member_name_that_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    deb = bad_deb(tmp_path, TarEntry("./usr/bin/\udcffbad", data=b"x"))
    with pytest.raises(ArchiveError, match="not UTF-8") as err:
        read_deb(deb)
    assert str(deb) in err.value.message and "\\xff" in err.value.message


def test_absolute_symlink_targets_are_read_as_they_are(tmp_path: Path) -> None:
    """Legitimate in Debian (resolved inside the image); the writer never follows them."""
    deb = bad_deb(tmp_path, TarEntry("./usr/lib/host", "symlink", link="/etc"))
    links = {m.path: m.link for m in read_deb(deb).members if m.kind == "symlink"}
    assert links["usr/lib/host"] == "/etc"
    assert links["usr/lib/tool.so"] == "/usr/lib/x86_64/tool.so.1"
