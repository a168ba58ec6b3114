from pathlib import Path

import pytest

from hardflow.errors import FetchError
from hardflow.lock.mirrors import resolve_mirrors
from hardflow.spec import DebianSpec

SPEC = DebianSpec(suites=("trixie",), packages=("bash",))


def apt_dir(tmp_path: Path, sources: str = "", one_line: str = "") -> Path:
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    if sources:
        (d / "sources.list.d" / "debian.sources").write_text(sources)
    if one_line:
        (d / "sources.list").write_text(one_line)
    return d


DEB822 = """Types: deb
# a comment
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
"""


def test_host_deb822_sources(tmp_path: Path) -> None:
    m = resolve_mirrors(SPEC, env={}, etc=apt_dir(tmp_path, DEB822))
    assert m.main == "http://mirror.invalid/debian"
    assert m.security == "http://mirror.invalid/debian-security"
    assert m.for_suite("trixie-security") == m.security
    assert m.for_suite("trixie-updates") == m.main
    assert "debian.sources" in m.origin


def test_one_line_sources_ignore_third_party(tmp_path: Path) -> None:
    text = (
        "deb [signed-by=/k.gpg] https://other.invalid/apt cloud-sdk main\n"
        "deb http://m.invalid/debian/ trixie main\n"
    )
    m = resolve_mirrors(SPEC, env={}, etc=apt_dir(tmp_path, one_line=text))
    assert m.main == "http://m.invalid/debian"
    assert m.security == "http://m.invalid/debian-security"  # conventional sibling


def test_env_beats_spec_beats_host(tmp_path: Path) -> None:
    etc = apt_dir(tmp_path, DEB822)
    spec = DebianSpec(suites=("trixie",), packages=("bash",), mirror="http://spec.invalid/debian")
    assert resolve_mirrors(spec, env={}, etc=etc).main == "http://spec.invalid/debian"
    env = {"HARDFLOW_DEBIAN_MIRROR": "http://snap.invalid/archive/debian/20260101T000000Z/"}
    m = resolve_mirrors(spec, env=env, etc=etc)
    assert m.main == "http://snap.invalid/archive/debian/20260101T000000Z"
    assert m.origin == "HARDFLOW_DEBIAN_MIRROR"


def test_no_mirror_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="no Debian mirror configured") as exc:
        resolve_mirrors(SPEC, env={}, etc=apt_dir(tmp_path))
    assert "HARDFLOW_DEBIAN_MIRROR" in exc.value.diagnostics()
