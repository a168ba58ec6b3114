"""`hardflow audit image` of a multi-platform image: every platform by default, findings
naming the platform of each item, or one platform with ``--platform``; clear errors for a
platform the image does not have. The image is the two-platform fixture build
(``helpers.multiplatform``), built once per module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from audit_fixtures import MakeImage
from click.testing import CliRunner

from hardflow.audit.image_source import ImageReadError, read_image_platforms
from hardflow.audit.model import Accepted, Check, Finding, Item, Level
from hardflow.audit.run import audit_image, merge_platforms
from hardflow.build.pipeline import BuildResult
from hardflow.cli.audit import audit
from hardflow.oci.writer import canonical_json
from hardflow.supply.sign import generate_key, public_key_pem, sign_layout
from helpers.multiplatform import PLATFORMS, requires_amd64_host, shared_two_platforms

HEALTHCHECK = "4.6"
SIGNATURE = "4.12"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return shared_two_platforms(tmp_path_factory)


def finding(report_findings: tuple[Finding, ...], rule: str) -> Finding:
    (found,) = [f for f in report_findings if f.id == rule]
    return found


@requires_amd64_host
def test_every_platform_is_audited_and_named(built: BuildResult) -> None:
    layout = str(built.image.layout_dir)
    report = audit_image(layout)
    facts = dict(report.facts)
    assert facts["platforms"] == ", ".join(PLATFORMS)
    assert facts["layers (linux/arm64)"] == str(
        len(dict(built.platforms)["linux/arm64"].image.layers)
    )
    health = finding(report.findings, HEALTHCHECK)
    assert health.level == Level.WARN
    assert [i.subject for i in health.items] == [
        "linux/amd64: config.Healthcheck",
        "linux/arm64: config.Healthcheck",
    ]
    one = audit_image(layout, platform="linux/arm64")
    assert dict(one.facts)["platforms"] == "linux/arm64"
    assert [i.subject for i in finding(one.findings, HEALTHCHECK).items] == [
        "linux/arm64: config.Healthcheck"
    ]


@requires_amd64_host
def test_a_platform_the_index_lacks_is_a_clear_error(built: BuildResult) -> None:
    layout = built.image.layout_dir
    with pytest.raises(ImageReadError, match=r"has no platform linux/s390x \(its platforms: "
                       r"linux/amd64, linux/arm64\)") as exc:  # fmt: skip
        read_image_platforms(layout, platform="linux/s390x")
    assert exc.value.hint is not None and "--platform linux/amd64" in exc.value.hint
    with pytest.raises(ImageReadError, match="not OS/ARCHITECTURE"):
        read_image_platforms(layout, platform="arm64")
    result = CliRunner().invoke(audit, ["image", str(layout), "--platform", "linux/riscv64"])
    assert result.exit_code != 0
    assert "has no platform linux/riscv64" in str(result.exception or result.output)


@requires_amd64_host
def test_the_signature_rule_checks_every_platform(built: BuildResult, tmp_path: Path) -> None:
    layout = Path(shutil.copytree(built.image.layout_dir, tmp_path / "oci"))
    key = generate_key()
    (tmp_path / "k.pub").write_bytes(public_key_pem(key))
    sign_layout(layout, key)
    report = audit_image(str(layout), key=tmp_path / "k.pub")
    assert finding(report.findings, SIGNATURE).level == Level.PASS
    # arm64's signature removed: the rule fails, naming the platform
    arm = dict(built.platforms)["linux/arm64"].image.manifest_digest
    index = json.loads((layout / "index.json").read_bytes())
    tag = arm.replace(":", "-") + ".sig"
    index["manifests"] = [
        e for e in index["manifests"]
        if e["annotations"]["org.opencontainers.image.ref.name"] != tag
    ]  # fmt: skip
    (layout / "index.json").write_bytes(canonical_json(index))
    result = CliRunner().invoke(
        audit, ["image", str(layout), "--key", str(tmp_path / "k.pub"), "--json"]
    )
    data = json.loads(result.output)
    (rule,) = [f for f in data["findings"] if f["id"] == SIGNATURE]
    assert rule["level"] not in ("PASS", "SKIP"), rule
    assert "platform linux/arm64: no signature for the manifest" in json.dumps(rule)


def test_one_platform_image_keeps_its_report_and_checks_platform(make_image: MakeImage) -> None:
    layout = make_image(healthcheck=False)
    report = audit_image(str(layout))
    assert "platforms" not in dict(report.facts)
    assert [i.subject for i in finding(report.findings, HEALTHCHECK).items] == [
        "config.Healthcheck"
    ]
    assert read_image_platforms(layout, platform="linux/amd64")[0].platform == ""
    with pytest.raises(ImageReadError, match=r"one platform \(linux/amd64\), not linux/arm64"):
        audit_image(str(layout), platform="linux/arm64")


CHECK = Check("X.1", Level.WARN, "a rule", "fix it", "group")


def test_merge_takes_the_worst_level_and_names_items_and_acceptances() -> None:
    amd = Finding(CHECK, Level.PASS)
    arm = Finding(CHECK, Level.WARN, (Item("usr/bin/su", "setuid"),))
    (merged,) = merge_platforms([("linux/amd64", [amd]), ("linux/arm64", [arm])])
    assert merged.level == Level.WARN and merged.failed
    assert merged.items == (Item("linux/arm64: usr/bin/su", "setuid"),)
    accepted = Accepted(Item("usr/bin/su", "setuid"), "needed", "ignore.toml")
    ok_arm = Finding(CHECK, Level.WARN, (), accepted=(accepted,))
    (merged,) = merge_platforms([("linux/amd64", [amd]), ("linux/arm64", [ok_arm])])
    assert merged.is_accepted and merged.effective_level == Level.PASS
    assert merged.accepted[0].item.subject == "linux/arm64: usr/bin/su"
    skip = [Finding(CHECK, Level.SKIP, note="no key"), Finding(CHECK, Level.SKIP, note="no key")]
    (merged,) = merge_platforms([("linux/amd64", skip[:1]), ("linux/arm64", skip[1:])])
    assert (merged.level, merged.note) == (Level.SKIP, "no key")
    mixed = [Finding(CHECK, Level.PASS, note="a"), Finding(CHECK, Level.PASS, note="b")]
    (merged,) = merge_platforms([("linux/amd64", mixed[:1]), ("linux/arm64", mixed[1:])])
    assert merged.note == "linux/amd64: a; linux/arm64: b"
