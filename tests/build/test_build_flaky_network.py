"""A cold build (empty cache) over a network that refuses, cuts and 503s: it still succeeds.

The fixture world of ``test_build_pipeline`` (a signed fake Debian repository and a tiny wheel
index) is locked as usual; the build then fetches every ``.deb`` and wheel through a loopback
server that misbehaves on purpose (``helpers.flaky_http``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_build_pipeline import World, world  # noqa: F401  (the fixture is reused as is)

from hardflow.errors import FetchError
from hardflow.lock import fetch
from hardflow.lock.fetch import Cache, RetryPolicy
from hardflow.lock.model import read_lock
from helpers.flaky_http import FlakyServer


@pytest.fixture
def flaky(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlakyServer]:  # noqa: F811
    """The world's repository and index behind a flaky server, refusing its first connection."""
    lock = read_lock(world.lock_path)
    bash = next(d for d in lock.debs if d.name == "bash")
    beta = next(w for w in lock.wheels if w.name == "beta")
    faults = {
        bash.filename: ["drop", "503"],  # cut midway (resumed), then a 503
        "/libc6_2.41_amd64.deb": ["reset"],
        "/simple/alpha/": ["503", "drop"],  # the index page, read into memory
        beta.filename: ["drop", "drop"],
    }
    with FlakyServer(world.root, faults, refuse_first=1) as server:
        monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", f"{server.url}/repo")
        monkeypatch.setenv("HARDFLOW_DEBIAN_SECURITY_MIRROR", f"{server.url}/repo")
        monkeypatch.setenv("UV_DEFAULT_INDEX", f"{server.url}/index/simple")
        monkeypatch.setattr(
            fetch, "DEFAULT_RETRY",
            RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, sleep=server.sleep),
        )  # fmt: skip
        yield server


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "sha256").rglob("*") if p.is_file())


def test_cold_build_survives_a_flaky_network(
    world: World, flaky: FlakyServer, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    result = world.build("a")
    done = [(path, fault) for path, _, fault in flaky.requests]
    assert flaky.sleeps and flaky.sleeps[0] >= 0  # the first connection was refused
    for fault in ("drop", "503", "reset"):
        assert fault in {f for _, f in done}, f"the {fault!r} fault was never exercised"
    assert any(r and r.startswith("bytes=") for _, r, _ in flaky.requests)  # a resume
    lock = read_lock(world.lock_path)
    cached = cache_files(world.root / "cache")
    locked = {d.sha256 for d in lock.debs} | {w.sha256 for w in lock.wheels}
    assert locked <= {p.name for p in cached}
    for path in cached:
        if path.name in locked:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    assert not [p for p in cached if p.name.startswith(".")]  # no partial file left
    # The same image as over a perfect network (the file mirror and index the lock came from).
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", (world.root / "repo").as_uri())
    monkeypatch.setenv("HARDFLOW_DEBIAN_SECURITY_MIRROR", (world.root / "repo").as_uri())
    monkeypatch.setenv("UV_DEFAULT_INDEX", world.index.url)
    quiet = world.build("b", cache=Cache(world.root / "cache-quiet"))
    assert quiet.image.manifest_digest == result.image.manifest_digest


def test_permanently_failing_file_stops_the_build_cleanly(
    world: World, flaky: FlakyServer  # noqa: F811
) -> None:
    lock = read_lock(world.lock_path)
    bash = next(d for d in lock.debs if d.name == "bash")
    flaky.faults[bash.filename] = ["503", "*"]
    with pytest.raises(FetchError) as exc:
        world.build("a")
    msg = exc.value.diagnostics()
    assert "bash_5.2_amd64.deb" in msg and "after 4 tries" in msg and "HTTP 503" in msg
    # 4 tries in all; the first may have been one of the refused connections
    assert len([p for p, _, _ in flaky.requests if p.endswith(bash.filename)]) in (3, 4)
    cache = Cache(world.root / "cache")
    assert not cache.path_for(bash.sha256).exists()
    assert not [p for p in cache_files(cache.root) if p.name.startswith(".")]
    assert not (world.root / "a/out").exists()
