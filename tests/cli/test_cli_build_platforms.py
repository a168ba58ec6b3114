"""``hardflow build --platform``: which of the spec's platforms to build (errors before any
work; the multi-platform build itself is tested in tests/build/test_build_platforms.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli_build import hardflow


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("windows/amd64", "--platform: expected platforms among linux/amd64, linux/arm64"),
        ("", "--platform: expected platforms among"),
        # the embedded default has one platform: another one is not in its lock
        ("linux/arm64", "expected one of the spec's platforms (linux/amd64), found linux/arm64"),
        ("linux/amd64,linux/arm64/v8", "found linux/arm64"),
    ],
)
def test_a_platform_the_spec_lacks_is_a_clear_error(
    value: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    cache = str(tmp_path / "cache")
    args = ("build", "--out", str(out), "--offline", "--cache-dir", cache, "--platform", value)
    code, _, err = hardflow(monkeypatch, capsys, *args)
    assert code == 1 and "Traceback" not in err
    assert expected in " ".join(err.split())
    assert not out.exists()
