"""Audits through podman and on the real default image.

* ``podman``: a fixture image is loaded into the local store under a unique name and audited
  by reference (``podman save --format docker-archive`` through hardflow.run.engine).
* ``network`` + ``slow``: the embedded default spec is built (as the e2e tests do) and its OCI
  layout and docker-archive must pass with no FATAL and no WARN apart from the documented
  exceptions shipped in ``hardflow/audit/hardflow-exceptions.toml``.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from audit_fixtures import MakeImage

from hardflow.audit.model import Level, Report
from hardflow.audit.report import render_text
from hardflow.audit.run import audit_image
from hardflow.build.pipeline import BuildResult
from hardflow.run import engine as eng


@pytest.mark.podman
def test_audit_image_from_the_podman_store(make_image: MakeImage, podman: eng.Engine) -> None:
    reference = f"localhost/hardflow-audit-test/app:{uuid.uuid4().hex[:12]}"
    archive = make_image(reference=reference, fmt="docker", files={"usr/bin/sudo": "#!"})
    loaded = eng.load_archive(podman, archive)
    try:
        report = audit_image(loaded, engine="podman")
    finally:
        subprocess.run([podman.path, "rmi", "--force", loaded], capture_output=True, check=False)
    facts = dict(report.facts)
    assert facts["format"] == "engine"
    by_id = {f.id: f for f in report.findings}
    assert [i.subject for i in by_id["DKL-DI-0001"].items] == ["usr/bin/sudo"]
    assert by_id["DKL-DI-0006"].level == Level.PASS  # the tag survived the round trip


@pytest.mark.podman
@pytest.mark.usefixtures("podman")
def test_missing_reference_is_an_engine_error() -> None:
    with pytest.raises(eng.EngineError, match="no image"):
        audit_image(f"localhost/hardflow-audit-test/absent:{uuid.uuid4().hex[:8]}", engine="podman")


@pytest.fixture(scope="module")
def default_image(default_build: BuildResult) -> tuple[Path, Path]:
    """The session's build of the default image: its OCI layout and its docker-archive."""
    assert default_build.image.archive_path is not None
    return default_build.image.layout_dir, default_build.image.archive_path


def _check_default(report: Report) -> None:
    text = render_text(report)
    print(text)
    remaining = [(f.id, [str(i) for i in f.items]) for f in report.findings if f.failed and f.items]
    assert remaining == [], text
    accepted = {a.item.subject for f in report.findings for a in f.accepted}
    assert "usr/bin/bash" in accepted
    assert all(a.reason for f in report.findings for a in f.accepted)
    assert not report.fails(Level.INFO)


@pytest.mark.network
@pytest.mark.slow
def test_default_image_layout_passes(default_image: tuple[Path, Path]) -> None:
    _check_default(audit_image(str(default_image[0])))


@pytest.mark.network
@pytest.mark.slow
def test_default_image_archive_passes(default_image: tuple[Path, Path]) -> None:
    report = audit_image(str(default_image[1]))
    _check_default(report)
    assert dict(report.facts)["format"] == "docker-archive"
