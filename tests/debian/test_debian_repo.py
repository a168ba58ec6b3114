"""Archive indices: signature, Release checks, Packages hashes, parsing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from hardflow.debian.repo import ALLOW_EXPIRED_ENV, load_suite, parse_packages
from hardflow.errors import FetchError, TrustError
from helpers.fixtures_debian import (
    DEFAULT_DATE,
    DEFAULT_EPOCH,
    FakePackage,
    FakeRepo,
    SigningKey,
    build_repo,
    clearsign,
    file_downloader,
)

PACKAGES = [
    FakePackage("app", "1.0-1", depends="libfoo (>= 1.1), libc6", files={"usr/bin/app": b"#!"}),
    FakePackage(
        "libfoo1",
        "1:1.2-1",
        source="foo (1:1.2-1)",
        provides="libfoo (= 1.2)",
        pre_depends="libc6 (>= 2.36)",
        files={"usr/lib/libfoo.so.1": b"\x7fELF"},
    ),
    FakePackage("libc6", "2.41-1", essential=True, priority="required"),
    FakePackage("libc6", "2.41-2", suites=("trixie-security",)),
]


@pytest.fixture()
def repo(tmp_path: Path, signing_key: SigningKey) -> FakeRepo:
    return build_repo(
        tmp_path / "archive", PACKAGES, ("trixie", "trixie-security"), key=signing_key
    )


def load(repo: FakeRepo, suite: str = "trixie") -> object:
    return load_suite(repo.base_url, suite, ["main"], "amd64", repo.keyring, file_downloader)


def test_load_suite_parses_the_verified_index(repo: FakeRepo) -> None:
    index = load_suite(repo.base_url, "trixie", ["main"], "amd64", repo.keyring, file_downloader)
    assert index.suite == "trixie"
    assert index.date == DEFAULT_DATE
    assert index.epoch == DEFAULT_EPOCH
    by_name = {p.name: p for p in index.packages}
    assert sorted(by_name) == ["app", "libc6", "libfoo1"]  # the security-only libc6 is not here

    lib = by_name["libfoo1"]
    deb = repo.deb_path("libfoo1").read_bytes()
    assert lib.version == "1:1.2-1"
    assert lib.architecture == "amd64"
    assert lib.suite == "trixie"
    assert lib.filename == "pool/main/f/foo/libfoo1_1.2-1_amd64.deb"
    assert lib.sha256 == hashlib.sha256(deb).hexdigest()
    assert lib.size == len(deb)
    assert (lib.source, lib.source_version) == ("foo", "1:1.2-1")
    assert lib.provides == "libfoo (= 1.2)"
    assert lib.pre_depends == "libc6 (>= 2.36)"
    assert lib.depends == ""
    assert not lib.essential

    app = by_name["app"]
    assert (app.source, app.source_version) == ("app", "1.0-1")
    assert app.depends == "libfoo (>= 1.1), libc6"
    assert by_name["libc6"].essential
    assert by_name["libc6"].priority == "required"

    security = load(repo, "trixie-security")
    assert [(p.name, p.version, p.suite) for p in security.packages] == [  # type: ignore[attr-defined]
        ("libc6", "2.41-2", "trixie-security")
    ]


def test_gz_index_is_used_when_no_xz_is_listed(tmp_path: Path, signing_key: SigningKey) -> None:
    repo = build_repo(tmp_path, PACKAGES, key=signing_key, compressions=(".gz",))
    urls: list[str] = []

    def download(url: str) -> bytes:
        urls.append(url)
        return file_downloader(url)

    index = load_suite(repo.base_url, "trixie", ["main"], "amd64", repo.keyring, download)
    assert len(index.packages) == 3
    assert urls[-1].endswith("/dists/trixie/main/binary-amd64/Packages.gz")


def test_xz_is_preferred_over_plain(repo: FakeRepo) -> None:
    urls: list[str] = []

    def download(url: str) -> bytes:
        urls.append(url)
        return file_downloader(url)

    load_suite(repo.base_url, "trixie", ["main"], "amd64", repo.keyring, download)
    assert [u.rsplit("/", 1)[-1] for u in urls] == ["InRelease", "Packages.xz"]


def test_modified_inrelease_is_rejected(repo: FakeRepo) -> None:
    inrelease = repo.dist("trixie") / "InRelease"
    text = inrelease.read_bytes()
    assert b"Label: Hardflow Tests" in text
    inrelease.write_bytes(text.replace(b"Label: Hardflow Tests", b"Label: Hardflow Tezts"))
    with pytest.raises(TrustError) as err:
        load(repo)
    message = str(err.value)
    assert "'trixie'" in message
    assert f"{repo.base_url}/dists/trixie/InRelease" in message
    assert "BAD signature" in message  # gpgv's own reason


def test_inrelease_signed_by_another_key_is_rejected(repo: FakeRepo, other_key: SigningKey) -> None:
    repo.write_release("trixie", key=other_key)
    with pytest.raises(TrustError) as err:
        load(repo)
    assert "did not verify" in str(err.value)
    assert "No public key" in str(err.value)


def test_unsigned_inrelease_is_rejected(repo: FakeRepo) -> None:
    dist = repo.dist("trixie")
    (dist / "InRelease").write_bytes((dist / "Release").read_bytes())
    with pytest.raises(TrustError, match="did not verify"):
        load(repo)


def test_text_outside_the_signature_is_never_used(repo: FakeRepo) -> None:
    """Unsigned lines around the signed block must not reach the Release parser."""
    inrelease = repo.dist("trixie") / "InRelease"
    forged = b"Valid-Until: Thu, 01 Jan 1970 00:00:00 UTC\n\n" + inrelease.read_bytes()
    forged += b"\nValid-Until: Thu, 01 Jan 1970 00:00:00 UTC\n"
    inrelease.write_bytes(forged)
    try:
        index = load(repo)
    except TrustError as exc:  # gpgv refusing the framing is fine too, as long as not "expired"
        assert "expired" not in str(exc)
    else:
        assert len(index.packages) == 3  # type: ignore[attr-defined]


def test_missing_keyring_is_a_trust_error(repo: FakeRepo, tmp_path: Path) -> None:
    with pytest.raises(TrustError, match=r"keyring .* does not exist"):
        load_suite(
            repo.base_url, "trixie", ["main"], "amd64", tmp_path / "nope.gpg", file_downloader
        )


def test_tampered_packages_index_is_rejected(repo: FakeRepo) -> None:
    index = repo.dist("trixie") / "main" / "binary-amd64" / "Packages.xz"
    expected = hashlib.sha256(index.read_bytes()).hexdigest()
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(TrustError) as err:
        load(repo)
    message = str(err.value)
    assert expected in message and actual in message
    assert "Packages.xz" in message


def test_index_of_other_size_is_rejected(repo: FakeRepo) -> None:
    index = repo.dist("trixie") / "main" / "binary-amd64" / "Packages.xz"
    index.write_bytes(index.read_bytes() + b"\0")
    with pytest.raises(TrustError, match="does not match the signed Release"):
        load(repo)


def test_expired_release_is_rejected_unless_allowed(
    repo: FakeRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOW_EXPIRED_ENV, raising=False)
    repo.write_release("trixie", valid_until="Sat, 17 May 2025 10:00:00 UTC")
    with pytest.raises(TrustError) as err:
        load(repo)
    assert "expired" in str(err.value)
    assert err.value.hint is not None and ALLOW_EXPIRED_ENV in err.value.hint

    monkeypatch.setenv(ALLOW_EXPIRED_ENV, "1")
    assert len(load(repo).packages) == 3  # type: ignore[attr-defined]


def test_future_valid_until_is_accepted(repo: FakeRepo) -> None:
    repo.write_release("trixie", valid_until="Fri, 01 Jan 2100 00:00:00 UTC")
    assert len(load(repo).packages) == 3  # type: ignore[attr-defined]


def test_release_of_another_suite_is_rejected(repo: FakeRepo) -> None:
    """A validly signed Release served under another suite's name (downgrade) is refused."""
    shutil.copytree(repo.dist("trixie"), repo.dist("bookworm"))
    with pytest.raises(TrustError, match="expected 'bookworm'"):
        load(repo, "bookworm")


def test_suite_may_be_named_by_codename(repo: FakeRepo) -> None:
    repo.write_release("trixie", codename="trixie")
    dist = repo.dist("trixie")
    text = (dist / "Release").read_bytes().replace(b"Suite: trixie", b"Suite: stable")
    (dist / "InRelease").write_bytes(clearsign(repo.key, text))
    assert len(load(repo).packages) == 3  # type: ignore[attr-defined]


def test_missing_inrelease_is_a_fetch_error(repo: FakeRepo) -> None:
    with pytest.raises(FetchError, match="InRelease"):
        load(repo, "sid")


def test_component_not_in_release_is_a_fetch_error(repo: FakeRepo) -> None:
    with pytest.raises(FetchError, match="contrib/binary-amd64/Packages"):
        load_suite(repo.base_url, "trixie", ["contrib"], "amd64", repo.keyring, file_downloader)


def test_parse_packages_handles_continuations_and_missing_fields() -> None:
    text = (
        "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a.deb\nSize: 3\n"
        "SHA256: ABC\nDepends: b,\n c (>= 2)\nDescription: x\n more\n\n"
        "Package: b\nVersion: 2\nArchitecture: amd64\nFilename: pool/b.deb\nSize: 4\n"
        "SHA256: def\nSource: bsrc\n"
    )
    a, b = parse_packages(text, "trixie", "test")
    assert a.depends == "b, c (>= 2)"
    assert a.sha256 == "abc"
    assert (b.source, b.source_version) == ("bsrc", "2")
    with pytest.raises(TrustError, match="'c'"):
        parse_packages("Package: c\nVersion: 1\n", "trixie", "test")
