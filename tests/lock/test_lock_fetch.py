import hashlib
import http.server
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from hardflow.errors import FetchError, TrustError
from hardflow.lock.fetch import Artifact, Cache
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
