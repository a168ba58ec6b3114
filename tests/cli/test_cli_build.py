"""``hardflow build``: ``--with``/``--debian`` (a lock made once, then reused) and the check of
baked DAGs (``--no-check-dags``, no engine).

The lock tests run offline against a signed fake Debian repository (file://) and a loopback
simple index; the last test builds the real default image with one more library.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hardflow.cli import main
from hardflow.cli.build import _check_baked_dags, _lock_for
from hardflow.errors import EngineError, LockError
from hardflow.lock.model import read_lock
from hardflow.progress import NullProgress
from hardflow.spec import load_spec, with_additions
from helpers.fixtures_debian import FakePackage, build_repo
from helpers.fixtures_wheels import IndexServer, build_wheel, write_index


@dataclass
class Project:
    root: Path
    spec: Path

    @property
    def lock(self) -> Path:
        return self.root / "tiny.lock.json"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    debs = [FakePackage("libc6", "2.41"), FakePackage("bash", "5.2", depends="libc6"),
            FakePackage("tini", "0.19", depends="libc6")]  # fmt: skip
    repo = build_repo(tmp_path / "repo", debs)
    build = tmp_path / "build"
    wheels = [build_wheel(build, "alpha", "1.0"), build_wheel(build, "beta", "1.0")]
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'name = "test/tiny"\ntag = "1"\n'
        f'[debian]\nsuites = ["trixie"]\npackages = ["bash"]\nkeyring = "{repo.keyring}"\n'
        '[python]\nversion = "3.13"\nrequirements = ["alpha"]\n'
    )
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    monkeypatch.setenv("UV_NO_CACHE", "1")
    with IndexServer(write_index(tmp_path / "index", wheels)) as server:
        monkeypatch.setenv("UV_DEFAULT_INDEX", server.url)
        yield Project(tmp_path, spec)


def hardflow(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["hardflow", *args])
    with pytest.raises(SystemExit) as exited:
        main()
        sys.exit(0)
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def test_with_makes_the_lock_once_then_reuses_it_without_resolving(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = with_additions(load_spec(project.spec), requirements=["beta"], packages=["tini"])
    kept = project.root / "kept" / "with.lock.json"
    lock, path, made = _lock_for(spec, project.lock, kept, True, NullProgress())
    assert (path, made) == (kept, True)
    assert {w.name for w in lock.wheels} == {"alpha", "beta"}
    assert {d.name for d in lock.debs} == {"bash", "libc6", "tini"}
    written = kept.read_bytes()
    # the same command again: nothing to resolve (the mirror and the index are gone)
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", "file:///nonexistent")
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")
    again, path, made = _lock_for(spec, project.lock, kept, True, NullProgress())
    assert (path, made) == (kept, False)
    assert again == lock and kept.read_bytes() == written
    # without additions the spec's own lock is read, never made
    with pytest.raises(LockError, match=r"tiny\.lock\.json"):
        _lock_for(load_spec(project.spec), project.lock, None, False, NullProgress())


def test_with_a_bad_requirement_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = hardflow(monkeypatch, capsys, "build", "--with", "not a requirement!")
    assert code == 1
    assert "--with" in err and "not a requirement!" in err and "Traceback" not in err
    code, _, err = hardflow(monkeypatch, capsys, "build", "--debian", "Not_A_Package")
    assert code == 1 and "--debian" in err and "Not_A_Package" in err


def test_baked_dags_without_an_engine_point_at_no_check_dags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_engine(preferred: str | None = None) -> Any:
        raise EngineError("no usable container engine:\n  podman: not found on PATH")

    monkeypatch.setattr("hardflow.run.engine.detect_engine", no_engine)
    spec = SimpleNamespace(dags=str(tmp_path), home="/opt/airflow")
    image = SimpleNamespace(layout_dir=tmp_path / "oci", archive_path=None)
    with pytest.raises(EngineError) as caught:
        _check_baked_dags(spec, SimpleNamespace(image=image), NullProgress())  # type: ignore[arg-type]
    text = caught.value.diagnostics()
    assert "--no-check-dags" in text and str(tmp_path) in text and "podman" in text


def build_json(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hardflow.cli", "build", "--json", *args],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


@pytest.mark.network
@pytest.mark.slow
def test_build_with_a_library_locks_once(tmp_path: Path) -> None:
    """``build --with texttable`` on the default spec; the same command again reuses the lock
    (``--lock`` keeps it in the test's folder; without it, it lives in the download cache)."""
    lock = tmp_path / "with.lock.json"
    first = build_json("--with", "texttable", "--lock", str(lock), "--out", str(tmp_path / "a"))
    assert first["lock"] == {"path": str(lock), "made": True}
    assert "texttable" in {w.name for w in read_lock(lock).wheels}
    written = lock.read_bytes()
    second = build_json("--with", "texttable", "--lock", str(lock), "--out", str(tmp_path / "b"))
    assert second["lock"] == {"path": str(lock), "made": False}
    assert lock.read_bytes() == written
    assert second["manifest_digest"] == first["manifest_digest"]
    assert second["layers_built"] == []
    assert second["python_packages"] == first["python_packages"]
