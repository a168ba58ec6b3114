import hashlib
import http.server
import socket
import urllib.error
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from hardflow.errors import FetchError, TrustError
from hardflow.lock import fetch
from hardflow.lock.fetch import (
    Artifact,
    Cache,
    RetryPolicy,
    find_links_artifact,
    http_get,
    redact,
)
from hardflow.lock.model import FIND_LINKS, LockedWheel
from helpers.flaky_http import FlakyServer
from helpers.loopback_http import serve


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "srv"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    with serve(handler) as port:
        yield f"http://127.0.0.1:{port}", root


def art(url: str, data: bytes, label: str = "pkg.deb") -> Artifact:
    return Artifact(label, hashlib.sha256(data).hexdigest(), len(data), lambda: [url])


def entries(cache: Cache) -> list[Path]:
    return sorted(p for p in (cache.root / "sha256").rglob("*") if p.is_file())


def test_download_verify_and_reuse(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, root = server
    (root / "a.deb").write_bytes(b"hello")
    cache = Cache(tmp_path / "cache")
    p = cache.get(art(f"{base}/a.deb", b"hello"))
    assert p.read_bytes() == b"hello"
    (root / "a.deb").unlink()  # second get must come from the cache
    assert cache.get(art(f"{base}/a.deb", b"hello")) == p
    assert Cache(tmp_path / "cache", offline=True).get(art("unused", b"hello")) == p


def test_hash_mismatch_names_artifact_and_leaves_nothing(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    base, root = server
    (root / "a.deb").write_bytes(b"evil")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(TrustError) as exc:
        cache.get(art(f"{base}/a.deb", b"good", label="bash_5.2_amd64.deb"))
    msg = exc.value.diagnostics()
    assert "bash_5.2_amd64.deb" in msg
    assert hashlib.sha256(b"good").hexdigest() in msg
    assert hashlib.sha256(b"evil").hexdigest() in msg
    assert entries(cache) == []


def test_corrupted_entry_is_replaced(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, root = server
    (root / "a.deb").write_bytes(b"hello")
    cache = Cache(tmp_path / "cache")
    a = art(f"{base}/a.deb", b"hello")
    p = cache.get(a)
    p.write_bytes(b"bitrot")
    assert cache.get(a).read_bytes() == b"hello"


def test_offline_miss_and_gone_file(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, _ = server
    with pytest.raises(FetchError, match="--offline"):
        Cache(tmp_path / "c", offline=True).get(art(f"{base}/x.deb", b"x"))
    with pytest.raises(FetchError) as exc:
        Cache(tmp_path / "c").get(art(f"{base}/gone.deb", b"x", label="gone.deb"))
    assert "no longer served" in exc.value.message
    assert "lock --update" in exc.value.diagnostics()


def test_concurrent_gets_share_one_good_entry(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, root = server
    data = bytes(range(256)) * 4096
    (root / "big.whl").write_bytes(data)
    caches = [Cache(tmp_path / "cache") for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        paths = list(pool.map(lambda c: c.get(art(f"{base}/big.whl", data)), caches))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == data
    assert len(entries(caches[0])) == 1  # no temp files left


# ----------------------------------------------------------------------- flaky networks


DATA = bytes(range(256)) * 64  # 16 KiB: big enough to be cut in half


def fast(server: FlakyServer | None = None, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(
        attempts=attempts, base_delay=0.01, max_delay=0.05,
        sleep=server.sleep if server else (lambda s: None),
    )  # fmt: skip


@pytest.fixture
def flaky_root(tmp_path: Path) -> Path:
    root = tmp_path / "srv"
    root.mkdir()
    (root / "a.deb").write_bytes(DATA)
    return root


def test_refused_connections_are_retried(tmp_path: Path, flaky_root: Path) -> None:
    with FlakyServer(flaky_root, refuse_first=2) as srv:
        cache = Cache(tmp_path / "cache", retry=fast(srv))
        path = cache.get(art(f"{srv.url}/a.deb", DATA))
    assert path.read_bytes() == DATA
    assert len(srv.sleeps) == 2  # two refused tries, then the server came up
    assert len(srv.requests) == 1


def test_stream_cut_midway_is_resumed_with_range(tmp_path: Path, flaky_root: Path) -> None:
    with FlakyServer(flaky_root, {"a.deb": ["drop", "503", "drop"]}) as srv:
        cache = Cache(tmp_path / "cache", retry=fast(srv, attempts=5))
        seen: list[int] = []
        path = cache.get(art(f"{srv.url}/a.deb", DATA), progress=seen.append)
    assert path.read_bytes() == DATA
    assert sum(seen) == len(DATA)  # a resumed or restarted download is not counted twice
    ranges = [r for _, r, _ in srv.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(DATA) // 2}-"
    assert srv.requests[-1][2] == "ok"
    assert entries(cache) == [path]


def test_server_without_range_support_restarts(tmp_path: Path, flaky_root: Path) -> None:
    with FlakyServer(flaky_root, {"a.deb": ["drop", "reset"]}, ranges=False) as srv:
        path = Cache(tmp_path / "cache", retry=fast(srv)).get(art(f"{srv.url}/a.deb", DATA))
    assert path.read_bytes() == DATA
    assert [f for _, _, f in srv.requests] == ["drop", "reset", "ok"]


def test_transient_dns_failure_is_retried(
    tmp_path: Path, flaky_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = fetch._open
    calls: list[str] = []

    def open_(url: str, headers: Mapping[str, str], timeout: float) -> Any:
        calls.append(url)
        if len(calls) == 1:
            raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
        return real_open(url, headers, timeout)

    monkeypatch.setattr(fetch, "_open", open_)
    with FlakyServer(flaky_root) as srv:
        monkeypatch.setattr(fetch, "DEFAULT_RETRY", fast(srv))
        path = Cache(tmp_path / "cache").get(art(f"{srv.url}/a.deb", DATA))
        assert http_get(f"{srv.url}/a.deb") == DATA
    assert path.read_bytes() == DATA and len(calls) == 3


def test_http_get_retries_cut_streams_and_5xx(flaky_root: Path) -> None:
    with FlakyServer(flaky_root, {"a.deb": ["503", "drop", "429"]}) as srv:
        assert http_get(f"{srv.url}/a.deb", policy=fast(srv)) == DATA
    assert len(srv.requests) == 4


def test_permanent_failure_is_bounded_and_leaves_nothing(tmp_path: Path, flaky_root: Path) -> None:
    with FlakyServer(flaky_root, {"a.deb": ["503", "*"]}) as srv:
        cache = Cache(tmp_path / "cache", retry=fast(srv, attempts=3))
        with pytest.raises(FetchError) as exc:
            cache.get(art(f"{srv.url}/a.deb", DATA, label="bash_5.2_amd64.deb"))
    msg = exc.value.message
    assert "bash_5.2_amd64.deb" in msg and f"{srv.url}/a.deb" in msg
    assert "after 3 tries" in msg and "HTTP 503" in msg
    assert len(srv.requests) == 3
    assert list((tmp_path / "cache").rglob("*.*")) == []  # no entry, no temporary file
    assert entries(cache) == []


@pytest.mark.parametrize("status", ["403", "404"])
def test_client_errors_fail_at_once(tmp_path: Path, flaky_root: Path, status: str) -> None:
    with FlakyServer(flaky_root, {"a.deb": [status, "*"]}) as srv:
        cache = Cache(tmp_path / "cache", retry=fast(srv))
        with pytest.raises(FetchError) as exc:
            cache.get(art(f"{srv.url}/a.deb", DATA, label="pkg_1.deb"))
    assert len(srv.requests) == 1 and srv.sleeps == []
    assert "pkg_1.deb" in exc.value.message and f"HTTP {status}" in exc.value.message
    assert entries(cache) == []


def test_complete_file_with_wrong_hash_is_not_retried(tmp_path: Path, flaky_root: Path) -> None:
    evil = bytes(reversed(DATA))  # same size, other bytes
    (flaky_root / "a.deb").write_bytes(evil)
    with FlakyServer(flaky_root) as srv:
        cache = Cache(tmp_path / "cache", retry=fast(srv))
        with pytest.raises(TrustError, match="sha256 mismatch"):
            cache.get(art(f"{srv.url}/a.deb", DATA))
    assert len(srv.requests) == 1 and entries(cache) == []


def test_oversized_file_is_refused(tmp_path: Path, flaky_root: Path) -> None:
    (flaky_root / "a.deb").write_bytes(DATA + b"trailing")
    with FlakyServer(flaky_root) as srv:
        cache = Cache(tmp_path / "cache", retry=fast(srv))
        with pytest.raises(TrustError, match="more than the locked"):
            cache.get(art(f"{srv.url}/a.deb", DATA))
    assert entries(cache) == []


def test_resumed_download_from_a_changed_file_is_refetched_whole(
    tmp_path: Path, flaky_root: Path
) -> None:
    # The first half comes from a stale copy; the resumed tail would not match: the whole
    # file is fetched again, and only the verified result is kept.
    stale = b"X" * (len(DATA) // 2) + DATA[len(DATA) // 2 :]
    (flaky_root / "a.deb").write_bytes(stale)
    with FlakyServer(flaky_root, {"a.deb": ["drop"]}) as srv:
        original = srv.next_fault

        def swap(path: str) -> str:
            fault = original(path)
            if fault == "ok":
                (flaky_root / "a.deb").write_bytes(DATA)
            return fault

        srv.next_fault = swap  # type: ignore[method-assign]
        path = Cache(tmp_path / "cache", retry=fast(srv)).get(art(f"{srv.url}/a.deb", DATA))
    assert path.read_bytes() == DATA
    assert [r for _, r, _ in srv.requests] == [None, f"bytes={len(DATA) // 2}-", None]


def test_userinfo_is_redacted_in_messages(tmp_path: Path, flaky_root: Path) -> None:
    with FlakyServer(flaky_root, {"a.deb": ["500", "*"]}) as srv:
        url = srv.url.replace("http://", "http://user:s3cret@") + "/a.deb"
        with pytest.raises(FetchError) as exc:
            Cache(tmp_path / "cache", retry=fast(srv, attempts=2)).get(art(url, DATA))
    assert "s3cret" not in exc.value.diagnostics()
    assert len(srv.requests) == 2  # the credentials went into a header, not the host name
    assert fetch._credentials("https://u:p%40ss@host/x") == (
        "https://host/x",
        {"Authorization": "Basic dTpwQHNz"},
    )
    assert redact("https://u:p@host/x?y=1") == "https://***@host/x?y=1"


@pytest.mark.parametrize(
    "digest", ["../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/..", "", "g" * 64]
)
def test_cache_refuses_digests_that_are_not_hex(tmp_path: Path, digest: str) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    cache = Cache(tmp_path / "cache", offline=True)
    with pytest.raises(TrustError, match="not a sha256"):
        cache.path_for(digest)
    with pytest.raises(TrustError, match=r"pkg\.deb"):
        cache.get(Artifact("pkg.deb", digest, 4, lambda: [victim.as_uri()]))
    assert victim.read_bytes() == b"keep"
    assert not (tmp_path / "cache").exists()


def test_a_symlink_planted_in_the_cache_is_neither_trusted_nor_followed_on_delete(
    tmp_path: Path,
) -> None:
    """A cache entry that is a symlink to a file with the right content is not used, and
    dropping it removes the link, never the file it points to."""
    import hashlib

    from hardflow.lock.fetch import Artifact, Cache

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    digest = hashlib.sha256(b"precious").hexdigest()
    cache = Cache(tmp_path / "cache", offline=True)
    entry = cache.path_for(digest)
    entry.parent.mkdir(parents=True)
    entry.symlink_to(victim)
    art = Artifact(label="victim.deb", sha256=digest, size=8, urls=list)
    with pytest.raises(FetchError, match="not in the cache"):
        cache.get(art)
    assert victim.read_bytes() == b"precious"
    assert not entry.is_symlink()


def test_a_symlinked_cache_folder_is_refused(tmp_path: Path) -> None:
    import hashlib

    from hardflow.errors import HardflowError
    from hardflow.lock.fetch import Artifact, Cache

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    digest = hashlib.sha256(b"x").hexdigest()
    cache = Cache(tmp_path / "cache", offline=True)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "sha256").symlink_to(elsewhere)
    art = Artifact(label="x.deb", sha256=digest, size=1, urls=list)
    with pytest.raises(HardflowError, match="'sha256' is a symlink"):
        cache.get(art)
    assert list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------- find-links wheels


def _local_wheel(folder: Path, body: bytes = b"wheel bytes") -> tuple[Path, LockedWheel]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chart-0.5-py3-none-any.whl"
    path.write_bytes(body)
    locked = LockedWheel(path.name.split("-")[0], "0.5", path.name,
                         hashlib.sha256(body).hexdigest(), len(body), FIND_LINKS)  # fmt: skip
    return path, locked


def test_a_find_links_wheel_is_copied_after_its_hash_is_checked(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    path, locked = _local_wheel(second)
    # offline is fine: nothing is downloaded
    cache = Cache(tmp_path / "cache", offline=True)
    got = cache.get(find_links_artifact(locked, [str(first), str(second)]))
    assert got == cache.path_for(locked.sha256) and got.read_bytes() == path.read_bytes()
    path.unlink()  # once cached, the folder is not needed again
    assert cache.get(find_links_artifact(locked, [str(second)])) == got


def test_the_first_folder_whose_copy_matches_wins(tmp_path: Path) -> None:
    _local_wheel(tmp_path / "a", b"another build")  # same name, other bytes
    _, locked = _local_wheel(tmp_path / "b")
    cache = Cache(tmp_path / "cache")
    got = cache.get(find_links_artifact(locked, [str(tmp_path / "a"), str(tmp_path / "b")]))
    assert got.read_bytes() == b"wheel bytes"


def test_a_changed_or_missing_local_wheel_is_named(tmp_path: Path) -> None:
    path, locked = _local_wheel(tmp_path / "w")
    path.write_bytes(b"rebuilt since")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(TrustError) as changed:
        cache.get(find_links_artifact(locked, [str(tmp_path / "w")]))
    msg = changed.value.message
    assert str(path) in msg and locked.sha256 in msg
    assert hashlib.sha256(b"rebuilt since").hexdigest() in msg
    assert not cache.path_for(locked.sha256).exists()
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # the bad copy is not left behind
    path.unlink()
    with pytest.raises(FetchError) as missing:
        cache.get(find_links_artifact(locked, [str(tmp_path / "w")]))
    assert str(path) in missing.value.message and "find-links" in missing.value.message


@pytest.mark.parametrize(
    "name", ["../chart-0.5-py3-none-any.whl", "sub/chart-0.5-py3-none-any.whl",
             "/etc/chart-0.5-py3-none-any.whl", ".chart-0.5-py3-none-any.whl", "chart.tar.gz"],
)  # fmt: skip
def test_a_lock_cannot_name_a_file_outside_the_folders(tmp_path: Path, name: str) -> None:
    _, locked = _local_wheel(tmp_path / "w")
    with pytest.raises(FetchError, match="not a plain wheel file name"):
        find_links_artifact(replace(locked, filename=name), [str(tmp_path / "w")])


def test_a_find_links_lock_entry_needs_a_find_links_folder(tmp_path: Path) -> None:
    _, locked = _local_wheel(tmp_path / "w")
    with pytest.raises(FetchError, match="names no find-links folder"):
        find_links_artifact(locked, [])
