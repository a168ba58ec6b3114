"""Contents indices: searching them, and trusting only what the signed Release lists."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from hardflow.debian.contents import (
    ListedFile,
    Provider,
    SuiteSource,
    find_providers,
    search_file,
    search_lines,
)
from hardflow.errors import FetchError, TrustError
from helpers.fixtures_debian import (
    FakePackage,
    SigningKey,
    build_repo,
    file_downloader,
    write_contents,
)

LIBDIR = "usr/lib/x86_64-linux-gnu"
TEXT = (
    f"{LIBDIR}/libfoo.so.1                 libs/libfoo1\n"
    f"{LIBDIR}/libfoo.so.10                libs/libfoo10\n"
    f"usr/share/doc/libfoo.so.1/README     doc/libfoo-doc\n"
    f"./{LIBDIR}/libbar.so.2                libs/libbar2,non-free/libs/libbar2-extra\n"
    f"usr/lib/libbar.so.2                  oldlibs/libbar-compat\n"
    f"usr/bin/with space in name           utils/spacey\n"
).encode()


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [7, 64, 1 << 20])
def test_search_finds_exact_paths_across_chunk_boundaries(size: int) -> None:
    wanted = [f"{LIBDIR}/libfoo.so.1", f"{LIBDIR}/libbar.so.2", "usr/lib/libbar.so.2",
              f"{LIBDIR}/libnone.so.3", "usr/bin/with space in name"]  # fmt: skip
    found = search_lines(chunked(TEXT, size), wanted)
    assert found == {
        f"{LIBDIR}/libfoo.so.1": ["libfoo1"],  # not libfoo.so.10, not the doc directory
        f"{LIBDIR}/libbar.so.2": ["libbar2", "libbar2-extra"],  # "./" and areas dropped
        "usr/lib/libbar.so.2": ["libbar-compat"],
        "usr/bin/with space in name": ["spacey"],
    }


def test_search_of_text_without_final_newline_or_with_junk() -> None:
    assert search_lines([b"junk line\n\n", f"{LIBDIR}/libz.so.1 libs/zlib1g".encode()],
                        [f"{LIBDIR}/libz.so.1"]) == {f"{LIBDIR}/libz.so.1": ["zlib1g"]}  # fmt: skip
    assert search_lines([b"\xff\xfe" * 100], ["x"]) == {}


def listed_for(path: Path, rel: str = "main/Contents-amd64.gz") -> ListedFile:
    data = path.read_bytes()
    return ListedFile("trixie", rel, f"file://{path}", hashlib.sha256(data).hexdigest(), len(data))


def test_search_file_checks_the_digest_it_was_listed_with(tmp_path: Path) -> None:
    path = tmp_path / "Contents-amd64.gz"
    path.write_bytes(gzip.compress(TEXT))
    listed = listed_for(path)
    assert search_file(path, listed, [f"{LIBDIR}/libfoo.so.1"]) == {
        f"{LIBDIR}/libfoo.so.1": ["libfoo1"]
    }
    path.write_bytes(gzip.compress(TEXT.replace(b"libfoo1", b"evil00")))  # same size
    with pytest.raises(TrustError, match="does not match the signed Release"):
        search_file(path, listed, [f"{LIBDIR}/libfoo.so.1"])
    path.write_bytes(b"not gzip at all")
    with pytest.raises(TrustError, match="cannot read the Contents index"):
        search_file(path, listed_for(path), ["x"])


def fetch_direct(listed: ListedFile) -> Path:
    """What the build's download cache does, minus the cache: the file:// URL's path."""
    path = Path(listed.url.removeprefix("file://"))
    if not path.is_file():
        raise FetchError(f"{listed.url}: not found")
    return path


PACKAGES = [
    FakePackage("libxml2", "2.9", files={f"{LIBDIR}/libxml2.so.2.9": b"x"},
                symlinks={f"{LIBDIR}/libxml2.so.2": "libxml2.so.2.9"}),
    FakePackage("libfoo1", "1.0", suites=("trixie-security",),
                files={f"{LIBDIR}/libfoo.so.1": b"x"}),
]  # fmt: skip


def test_find_providers_over_signed_suites(tmp_path: Path, signing_key: SigningKey) -> None:
    repo = build_repo(tmp_path / "repo", PACKAGES, suites=("trixie", "trixie-security"),
                      key=signing_key, contents=True)  # fmt: skip
    sources = [SuiteSource(repo.base_url, s) for s in ("trixie", "trixie-security")]
    wanted = [f"{LIBDIR}/libxml2.so.2", f"{LIBDIR}/libfoo.so.1"]
    lookup = find_providers(sources, ["main"], "amd64", repo.keyring, file_downloader,
                            fetch_direct, wanted)  # fmt: skip
    assert lookup.complete
    assert lookup.providers == {
        f"{LIBDIR}/libxml2.so.2": (Provider("libxml2", "trixie"),),
        f"{LIBDIR}/libfoo.so.1": (Provider("libfoo1", "trixie-security"),),
    }
    assert lookup.searched == ("trixie: main/Contents-amd64.gz",
                               "trixie-security: main/Contents-amd64.gz")  # fmt: skip


def test_an_unlisted_or_tampered_index_is_not_used(
    tmp_path: Path, signing_key: SigningKey, other_key: SigningKey
) -> None:
    repo = build_repo(tmp_path / "repo", PACKAGES, suites=("trixie", "trixie-security"),
                      key=signing_key)  # fmt: skip
    # trixie: a Contents file lies beside the Release but is not listed in it
    write_contents(repo, "trixie", PACKAGES)
    # trixie-security: listed, then replaced by other bytes
    write_contents(repo, "trixie-security", PACKAGES)
    repo.write_release("trixie-security")
    write_contents(repo, "trixie-security", [], data=f"{LIBDIR}/libfoo.so.1 libs/evil\n".encode())
    sources = [SuiteSource(repo.base_url, s) for s in ("trixie", "trixie-security")]
    lookup = find_providers(sources, ["main"], "amd64", repo.keyring, file_downloader,
                            fetch_direct, [f"{LIBDIR}/libfoo.so.1"])  # fmt: skip
    assert lookup.providers == {} and lookup.searched == ()
    assert lookup.problems[0] == ("trixie: the signed Release lists no main/Contents-amd64 index")
    assert lookup.problems[1].startswith("trixie-security: file://")
    assert "does not match the signed Release of suite 'trixie-security'" in lookup.problems[1]
    # a Release signed by a key outside the keyring: nothing of that suite is read
    repo.write_release("trixie", key=other_key)
    lookup = find_providers(sources[:1], ["main"], "amd64", repo.keyring, file_downloader,
                            fetch_direct, [f"{LIBDIR}/libxml2.so.2"])  # fmt: skip
    assert lookup.providers == {}
    assert "signature did not verify" in lookup.problems[0]


@pytest.mark.network
def test_real_trixie_contents_names_the_package(tmp_path: Path) -> None:
    """zlib's SONAME in the real trixie index, through the host's apt mirror configuration."""
    from hardflow.errors import HardflowError
    from hardflow.lock.fetch import Artifact, Cache, http_get
    from hardflow.lock.mirrors import resolve_mirrors
    from hardflow.spec import DebianSpec

    spec = DebianSpec(suites=("trixie",))
    if not Path(spec.keyring).is_file():
        pytest.skip(f"{spec.keyring} is not installed")
    try:
        mirrors = resolve_mirrors(spec)
    except HardflowError as exc:
        pytest.skip(f"no Debian mirror configured: {exc.message}")
    cache = Cache()  # the user's download cache: the ~13 MB index is fetched once

    def fetch(listed: ListedFile) -> Path:
        urls = list(listed.urls)
        return cache.get(Artifact(listed.path, listed.sha256, listed.size, lambda: urls))

    lookup = find_providers([SuiteSource(mirrors.main, "trixie")], ["main"], "amd64",
                            Path(spec.keyring), http_get, fetch,
                            [f"{LIBDIR}/libz.so.1", f"{LIBDIR}/libxml2.so.2"])  # fmt: skip
    if any("sha256 mismatch" in p or "does not match the signed Release" in p
           for p in lookup.problems):  # fmt: skip
        # refused, as it must be; a mirror serving an index its Release does not list (and no
        # by-hash copy) leaves nothing to test against
        pytest.skip(f"the mirror's Contents index is not the one its Release lists: "
                    f"{lookup.problems}")  # fmt: skip
    assert lookup.complete, lookup.problems
    assert Provider("zlib1g", "trixie") in lookup.providers[f"{LIBDIR}/libz.so.1"]
    assert {p.package for p in lookup.providers[f"{LIBDIR}/libxml2.so.2"]} & {
        "libxml2",
        "libxml2-16",
    }


def test_by_hash_urls_come_first_when_the_release_offers_them() -> None:
    from hardflow.debian.contents import contents_file
    from hardflow.debian.repo import VerifiedRelease

    files = {"main/Contents-amd64.gz": ("ab" * 32, 10), "main/Contents-amd64": ("cd" * 32, 99)}
    release = VerifiedRelease("trixie", "http://m/dists/trixie", "d", 0, files, by_hash=True)
    listed = contents_file(release, "main", "amd64")
    assert listed is not None and listed.path == "main/Contents-amd64.gz"  # .gz preferred
    assert listed.urls == (
        f"http://m/dists/trixie/main/by-hash/SHA256/{'ab' * 32}",
        "http://m/dists/trixie/main/Contents-amd64.gz",
    )
    plain = VerifiedRelease("trixie", "http://m/dists/trixie", "d", 0, files)
    assert plain.urls("main/Contents-amd64.gz") == ("http://m/dists/trixie/main/Contents-amd64.gz",)
    assert contents_file(plain, "contrib", "amd64") is None
