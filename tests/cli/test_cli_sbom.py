"""`hardflow sbom` of a multi-platform image: ``--platform`` says which platform the SBOM
describes; without it, or with a platform the image lacks, a typed error lists the platforms.
The image is the two-platform fixture build (``helpers.multiplatform``), built once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_build import hardflow

from hardflow.build.pipeline import BuildResult
from helpers.multiplatform import requires_amd64_host, shared_two_platforms

pytestmark = requires_amd64_host


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return shared_two_platforms(tmp_path_factory)


def test_sbom_of_one_platform_of_an_index(
    built: BuildResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = built.image.layout_dir.parent
    lock = out.parent / "multi.lock.json"
    arm = dict(built.platforms)["linux/arm64"].image
    code, stdout, stderr = hardflow(
        monkeypatch, capsys, "sbom", str(out), "--platform", "linux/arm64", "--lock", str(lock),
        "-o", str(tmp_path / "arm.spdx.json"), "--json",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["platform"] == "linux/arm64"
    assert summary["manifest_digest"] == arm.manifest_digest
    text = (tmp_path / "arm.spdx.json").read_text()
    assert "arch=arm64" in text and "arch=amd64" not in text
    # the same as the build wrote for arm64 (platforms/linux-arm64/)
    built_sbom = json.loads((out / "platforms/linux-arm64/sbom.spdx.json").read_text())
    assert {p["name"] for p in json.loads(text)["packages"]} == {
        p["name"] for p in built_sbom["packages"]
    }


def test_an_index_needs_a_platform_it_has(
    built: BuildResult, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = str(built.image.layout_dir)
    code, _, stderr = hardflow(monkeypatch, capsys, "sbom", layout)
    assert code == 1
    assert "is a multi-platform image (linux/amd64, linux/arm64)" in stderr
    assert "--platform linux/arm64" in stderr
    code, _, stderr = hardflow(monkeypatch, capsys, "sbom", layout, "--platform", "linux/ppc64le")
    assert code == 1
    assert "has no platform linux/ppc64le (its platforms: linux/amd64, linux/arm64)" in stderr
