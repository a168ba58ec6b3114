"""The real archive, through a mirror named by the environment (never written in a file).

    HARDFLOW_TEST_DEBIAN_MIRROR=<archive base URL> pytest -m network tests/debian

``HARDFLOW_TEST_DEBIAN_SECURITY_MIRROR`` (optional) adds the trixie-security suite.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hardflow.debian.repo import SuiteIndex, load_suite
from hardflow.debian.resolve import resolve_closure
from hardflow.errors import FetchError

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def http_downloader(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            data: bytes = response.read()
            return data
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{url}: {exc}") from None


@pytest.mark.network
def test_real_trixie_closure() -> None:
    mirror = os.environ.get("HARDFLOW_TEST_DEBIAN_MIRROR")
    security = os.environ.get("HARDFLOW_TEST_DEBIAN_SECURITY_MIRROR")
    if not mirror:
        # the same choice a build makes: the host's apt sources
        from hardflow.errors import FetchError as NoMirror
        from hardflow.lock.mirrors import resolve_mirrors
        from hardflow.spec import DebianSpec

        try:
            found = resolve_mirrors(DebianSpec(suites=("trixie",)))
        except NoMirror as exc:
            pytest.skip(f"no Debian mirror: {exc.message}")
        mirror, security = found.main, security or found.security
    if not KEYRING.is_file():
        pytest.skip(f"{KEYRING} is missing (install debian-archive-keyring)")
    indices: list[SuiteIndex] = [
        load_suite(mirror, suite, ["main"], "amd64", KEYRING, http_downloader)
        for suite in ("trixie", "trixie-updates")
    ]
    if security:
        indices.append(
            load_suite(security, "trixie-security", ["main"], "amd64", KEYRING, http_downloader)
        )
    assert len(indices[0].packages) > 50_000

    result = resolve_closure(
        indices,
        ["python3.13", "bash", "tini", "ca-certificates", "tzdata"],
        ["debconf", "perl-base"],
        "amd64",
    )
    for record in result:
        print(f"{record.name} {record.version} ({record.suite})")
    names = [r.name for r in result]
    assert names == sorted(names)
    for needed in ("python3.13", "libpython3.13-stdlib", "libc6", "bash", "tini", "tzdata"):
        assert needed in names
    for absent in ("debconf", "perl-base", "cdebconf", "apt", "dpkg"):
        assert absent not in names
    assert len(result) < 80
