"""``hardflow lock`` on a spec of several platforms: what each platform installs."""

from __future__ import annotations

import json

import pytest
from test_cli_build import hardflow


def test_lock_json_counts_each_platform(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the committed lock matches its spec: nothing is resolved, nothing downloaded
    code, out, _ = hardflow(monkeypatch, capsys, "lock", "--spec", "airflow-multiplatform",
                            "--json")  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["up_to_date"] is True
    per = data["platforms"]
    assert set(per) == {"linux/amd64", "linux/arm64"}
    # shared entries (Architecture: all, pure wheels) are counted once in the totals
    assert data["debian_packages"] < sum(p["debian_packages"] for p in per.values())
    assert data["python_packages"] < sum(p["python_packages"] for p in per.values())
    code, out, _ = hardflow(monkeypatch, capsys, "lock", "--json")
    assert code == 0 and "platforms" not in json.loads(out)
