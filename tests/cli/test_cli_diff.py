"""`hardflow diff A B`: readable text, --json, --exit-code, and errors through ``main``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hardflow.cli import main
from hardflow.cli.diff import diff
from helpers.image_pairs import A_LAYERS, B_LAYERS, make_image


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("diff")
    return str(make_image(root / "a", A_LAYERS)), str(make_image(root / "b", B_LAYERS))


def test_text(images: tuple[str, str]) -> None:
    result = CliRunner().invoke(diff, list(images))
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Debian packages: 1 added, 1 removed, 1 changed" in text
    assert "~ libssl3t64 3.5.1-1 → 3.5.4-1~deb13u1" in text
    assert "+ libnew2 2.0-3" in text and "- libgone1 1.0-1" in text
    assert "Python packages: 2 added, 1 removed, 1 changed" in text
    assert "~ requests 2.32.3 → 2.32.5" in text
    assert "Layers (matched by name): 1 identical, 3 changed, 1 added, 1 removed" in text
    lines = text.splitlines()
    tools = next(line for line in lines if " tools " in line)
    assert tools.lstrip().startswith("= ") and "→" not in tools
    hardflow = next(line for line in lines if " hardflow " in line)
    assert hardflow.lstrip().startswith("~ ") and "→" in hardflow
    assert any(line.lstrip().startswith("- legacy") for line in lines)
    assert any(line.lstrip().startswith("+ extra") for line in lines)
    assert "size as stored: " in text and "uncompressed: " in text
    assert text.rstrip().endswith("the images differ")


def test_json(images: tuple[str, str]) -> None:
    result = CliRunner().invoke(diff, [*images, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["differs"] is True
    assert doc["packages"]["debian"]["changed"] == [
        {"name": "libssl3t64", "old": "3.5.1-1", "new": "3.5.4-1~deb13u1"}
    ]
    assert doc["packages"]["python"]["removed"] == [{"name": "old-pkg", "version": "1.0"}]
    statuses = {layer["name"]: layer["status"] for layer in doc["layers"]}
    assert statuses["tools"] == "identical" and statuses["extra"] == "added"
    assert doc["summary"]["layers"]["changed"] == 3
    assert doc["a"]["argument"] == images[0]


def test_exit_code_like_git_diff(images: tuple[str, str]) -> None:
    assert CliRunner().invoke(diff, [*images, "--exit-code"]).exit_code == 1
    same = CliRunner().invoke(diff, [images[0], images[0], "--exit-code"])
    assert same.exit_code == 0, same.output
    assert "the images are the same" in same.output
    assert "Debian packages: no change" in same.output


def test_an_unreadable_image_is_one_error_message(
    images: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["hardflow", "diff", images[0], str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 1
    assert err.startswith("error: cannot read image B") and str(tmp_path) in err
    assert "Traceback" not in err
