"""``hardflow lock`` on the command line: ``--update --only NAME``, its errors and ``--json``.

Offline: a signed fake Debian repository (file://) and a loopback simple index.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hardflow.cli import main
from helpers.fixtures_debian import FakePackage, build_repo
from helpers.fixtures_wheels import IndexServer, build_wheel, write_index


@dataclass
class Project:
    root: Path
    spec: Path
    wheels: list[Path]

    @property
    def lock(self) -> Path:
        return self.root / "tiny.lock.json"

    def publish(self, *wheels: Path) -> None:
        self.wheels += wheels
        write_index(self.root / "index", self.wheels)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    repo = build_repo(tmp_path / "repo", [FakePackage("libc6", "2.41"),
                                          FakePackage("bash", "5.2", depends="libc6")])  # fmt: skip
    build = tmp_path / "build"
    wheels = [build_wheel(build, "alpha", "1.0", requires=["beta"]),
              build_wheel(build, "beta", "1.0")]  # fmt: skip
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
        yield Project(tmp_path, spec, wheels)


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


def test_update_only_prints_just_that_change(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec))
    assert code == 0, err
    project.publish(build_wheel(project.root / "build", "alpha", "2.0", requires=["beta"]),
                    build_wheel(project.root / "build", "beta", "2.0"))  # fmt: skip
    code, out, err = hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec),
                              "--update", "--only", "ALPHA")  # fmt: skip
    assert code == 0, err
    assert "~ pypi:alpha 1.0 → 2.0" in out
    assert "beta" not in out and "bash" not in out
    assert "Debian pins kept as locked" in out
    wheels = {w["name"]: w["version"] for w in json.loads(project.lock.read_text())["wheels"]}
    assert wheels == {"alpha": "2.0", "beta": "1.0"}

    code, out, err = hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec),
                              "--update", "--only", "beta", "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["upgraded"] == [["pypi:beta", "1.0", "2.0"]]
    assert result["only"] == ["pypi:beta"] and result["moved_along"] == []


def test_only_errors_are_clear(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec),
                            "--only", "alpha")  # fmt: skip
    assert code == 2 and "--update" in err
    code, _, err = hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec),
                            "--update", "--only", "alpha")  # fmt: skip
    assert code == 1 and "needs an existing lock" in err and "Traceback" not in err
    assert hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec))[0] == 0
    code, _, err = hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec),
                            "--update", "--only", "bsah")  # fmt: skip
    assert code == 1 and "'bsah'" in err and "'bash'" in err and "Traceback" not in err


def test_what_the_update_forces_to_move_is_marked(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec))[0] == 0
    project.publish(build_wheel(project.root / "build", "alpha", "3.0", requires=["beta>=3"]),
                    build_wheel(project.root / "build", "beta", "3.0"))  # fmt: skip
    code, out, err = hardflow(monkeypatch, capsys, "lock", "--spec", str(project.spec),
                              "--update", "--only", "alpha")  # fmt: skip
    assert code == 0, err
    assert "~ pypi:alpha 1.0 → 3.0\n" in out
    assert "~ pypi:beta 1.0 → 3.0 (moved along with the update)" in out
