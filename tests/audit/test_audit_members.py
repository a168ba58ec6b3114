"""The layer-member rules: escapes (HF-L-0001, FATAL) and special files (HF-L-0002, WARN).

The image reader fills ``ImageData.member_issues``; these tests set it on a fixture image with
``dataclasses.replace`` so they exercise the rules and the reports without depending on the
reader. Issues come from ``hardflow.oci.members.classify`` on tar headers built here, so the
kinds the classifier produces and the kinds the rules know cannot drift apart.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import replace

import pytest
from audit_fixtures import MakeImage

from hardflow.audit.ignore import IgnoreRule, apply_rules, hardflow_exceptions
from hardflow.audit.image_checks import CHECKS, run_image_checks
from hardflow.audit.image_layers import MEMBER_ITEMS_SHOWN
from hardflow.audit.image_source import ImageData, read_image_path
from hardflow.audit.model import Finding, Level, Report
from hardflow.audit.report import render_json, render_text, to_sarif
from hardflow.oci.members import MemberIssue, classify

ESCAPE, SPECIAL = "HF-L-0001", "HF-L-0002"


def header(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


def issue(layer: str, info: tarfile.TarInfo) -> MemberIssue:
    found = classify(layer, info)
    assert found is not None, info.name
    return found


@pytest.fixture
def image(make_image: MakeImage) -> ImageData:
    return read_image_path(make_image())


def layer_digest(image: ImageData, index: int = 1) -> str:
    return image.layers[index].blob


def with_issues(image: ImageData, *issues: MemberIssue) -> dict[str, Finding]:
    return {f.id: f for f in run_image_checks(replace(image, member_issues=issues))}


def report_of(image: ImageData, *issues: MemberIssue) -> Report:
    findings = run_image_checks(replace(image, member_issues=issues))
    return Report("image", "fixture", tuple(findings))


def test_rules_are_in_the_table_with_their_levels_and_references() -> None:
    assert CHECKS[ESCAPE].level == Level.FATAL
    assert CHECKS[SPECIAL].level == Level.WARN
    assert {"NIST-4.1.3", "NIST-4.1.5"} <= set(CHECKS[ESCAPE].references)
    assert {"DKL-LI-0003", "NIST-4.1.2-minimal"} <= set(CHECKS[SPECIAL].references)
    # appended after the existing rules: the report order of every older rule is unchanged
    assert list(CHECKS)[-2:] == [ESCAPE, SPECIAL]


def test_clean_image_passes_both(image: ImageData) -> None:
    result = with_issues(image)
    assert result[ESCAPE].level == Level.PASS
    assert result[SPECIAL].level == Level.PASS


@pytest.mark.parametrize(
    ("info", "kind"),
    [
        (header("../../etc/cron.d/evil"), "traversal"),
        (header("usr/../../escape"), "traversal"),
        (header("/etc/passwd"), "absolute"),
        (header("usr/lib/x", tarfile.SYMTYPE, "../../../../etc/shadow"), "escaping-link"),
        (header("usr/lib/y", tarfile.LNKTYPE, "../outside"), "escaping-link"),
        (header("usr/lib/z", tarfile.LNKTYPE, "/etc/shadow"), "escaping-link"),
    ],
    ids=["dotdot", "inner-dotdot", "absolute", "symlink", "hardlink", "absolute-hardlink"],
)
def test_escaping_member_is_fatal(image: ImageData, info: tarfile.TarInfo, kind: str) -> None:
    digest = layer_digest(image)
    found = issue(digest, info)
    assert found.kind == kind
    result = with_issues(image, found)
    escape = result[ESCAPE]
    assert escape.level == Level.FATAL
    assert [i.subject for i in escape.items] == [info.name]
    detail = escape.items[0].detail
    assert digest in detail  # the layer is named
    if kind == "escaping-link":
        assert repr(info.linkname) in detail  # and the link's target
    assert result[SPECIAL].level == Level.PASS


@pytest.mark.parametrize(
    ("info", "words"),
    [
        (header("dev/sda", tarfile.BLKTYPE), "device node 1:3"),
        (header("dev/mem", tarfile.CHRTYPE), "device node 1:3"),
        (header("run/pipe", tarfile.FIFOTYPE), "FIFO"),
    ],
    ids=["block", "char", "fifo"],
)
def test_device_and_fifo_warn(image: ImageData, info: tarfile.TarInfo, words: str) -> None:
    digest = layer_digest(image, 0)
    result = with_issues(image, issue(digest, info))
    special = result[SPECIAL]
    assert special.level == Level.WARN
    assert [i.subject for i in special.items] == [info.name]
    assert words in special.items[0].detail and digest in special.items[0].detail
    assert result[ESCAPE].level == Level.PASS


def test_exit_levels_and_reports(image: ImageData) -> None:
    digest = layer_digest(image)
    link = issue(digest, header("usr/lib/x", tarfile.SYMTYPE, "../../../etc/shadow"))
    fifo = issue(digest, header("run/pipe", tarfile.FIFOTYPE))

    escaping = report_of(image, link)
    assert escaping.fails(Level.FATAL)
    text = render_text(escaping)
    assert f"[FATAL] {ESCAPE} - " in text
    assert f"* usr/lib/x (link target '../../../etc/shadow' resolves outside the image root; " \
           f"layer {digest})" in text  # fmt: skip

    special = report_of(image, fifo)
    assert special.fails(Level.WARN) and not special.fails(Level.FATAL)
    doc = json.loads(render_json(special))
    by_id = {f["id"]: f for f in doc["findings"]}
    assert by_id[SPECIAL]["level"] == "WARN"
    assert by_id[SPECIAL]["items"][0]["subject"] == "run/pipe"
    assert doc["findings"][-1]["id"] == SPECIAL  # appended at the end of the report

    sarif = to_sarif(escaping)["runs"][0]
    results = [r for r in sarif["results"] if r["ruleId"] == ESCAPE]
    assert results[0]["level"] == "error"
    assert results[0]["locations"][0]["logicalLocations"][0]["name"] == "usr/lib/x"


def test_hostile_member_name_cannot_forge_report_lines(image: ImageData) -> None:
    name = f"x\n[PASS] {ESCAPE} - all good\x1b[2J"
    text = render_text(report_of(image, issue("sha256:l", header("../" + name))))
    lines = text.splitlines()
    assert f"[FATAL] {ESCAPE} - " in text
    assert not any(line.startswith(f"[PASS] {ESCAPE}") for line in lines)
    assert "\x1b" not in text
    assert "x\\n[PASS]" in text and "\\x1b[2J" in text


def test_many_issues_are_capped(image: ImageData) -> None:
    issues = [issue("sha256:l", header(f"dev/n{i}", tarfile.CHRTYPE)) for i in range(150)]
    special = with_issues(image, *issues)[SPECIAL]
    assert len(special.items) == MEMBER_ITEMS_SHOWN + 1
    assert special.items[-1].detail == f"{150 - MEMBER_ITEMS_SHOWN} more not listed"


def test_issue_kinds_are_split_between_the_rules(image: ImageData) -> None:
    issues = [
        issue("sha256:a", header("/abs")),
        issue("sha256:a", header("dev/null", tarfile.CHRTYPE)),
        issue("sha256:b", header("a/../../b")),
        issue("sha256:b", header("p", tarfile.FIFOTYPE)),
    ]
    result = with_issues(image, *issues)
    assert [i.subject for i in result[ESCAPE].items] == ["/abs", "a/../../b"]
    assert [i.subject for i in result[SPECIAL].items] == ["dev/null", "p"]


def test_shipped_exceptions_do_not_excuse_unsafe_members(make_image: MakeImage) -> None:
    bash = read_image_path(make_image(files={"usr/bin/bash": "#!"}))
    issues = (
        issue("sha256:l", header("../etc/passwd")),
        issue("sha256:l", header("dev/kmsg", tarfile.CHRTYPE)),
    )
    findings = apply_rules(
        run_image_checks(replace(bash, member_issues=issues)), hardflow_exceptions()
    )
    by_id = {f.id: f for f in findings}
    assert by_id["4.3"].is_accepted  # the shipped exceptions still apply (bash)
    assert by_id[ESCAPE].effective_level == Level.FATAL
    assert by_id[SPECIAL].effective_level == Level.WARN
    report = Report("image", "fixture", tuple(findings))
    assert report.fails(Level.FATAL)


def test_an_ignore_file_can_accept_a_special_file_by_path(image: ImageData) -> None:
    issues = (issue("sha256:l", header("dev/console", tarfile.CHRTYPE)),)
    rule = IgnoreRule((SPECIAL,), "the console node is expected here", ("dev/console",), "t")
    findings = apply_rules(run_image_checks(replace(image, member_issues=issues)), [rule])
    special = next(f for f in findings if f.id == SPECIAL)
    assert special.is_accepted and special.effective_level == Level.PASS


def test_members_finding_survives_through_audit_image(
    make_image: MakeImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """audit_image passes the reader's member issues to the rules (reader stubbed here)."""
    from hardflow.audit import run as audit_run

    layout = make_image()
    real = read_image_path(layout)
    found = issue(real.layers[0].blob, header("../../victim"))

    def reader(source: str, **_: object) -> list[ImageData]:
        return [replace(real, member_issues=(found,))]

    monkeypatch.setattr(audit_run, "read_images", reader)
    report = audit_run.audit_image(str(layout))
    escape = next(f for f in report.findings if f.id == ESCAPE)
    assert escape.level == Level.FATAL and escape.items[0].subject == "../../victim"
    assert report.fails(Level.FATAL)
