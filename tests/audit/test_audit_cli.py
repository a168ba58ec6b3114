"""`hardflow audit` command, report formats, ignore files and the shipped exceptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from audit_fixtures import MakeImage, RawEntry
from click.testing import CliRunner

from hardflow.audit.ignore import apply_rules, hardflow_exceptions, load_ignore_file, parse_rules
from hardflow.audit.image_source import read_image_path
from hardflow.audit.model import AuditError, Level
from hardflow.audit.report import render_text, to_sarif
from hardflow.audit.run import audit_image
from hardflow.cli.audit import audit
from hardflow.errors import HardflowError

SUDO = {"usr/bin/sudo": "#!"}


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(audit, list(args))
    return result.exit_code, result.output, result.exception


def test_text_report_is_docker_bench_like(make_image: MakeImage) -> None:
    code, output, _ = invoke("image", str(make_image(user="")))
    assert code == 1
    assert "[WARN] 4.1 - Ensure that a user for the container has been created" in output
    assert "[PASS] 4.6 - " in output
    assert "* config.User (not set: the container runs as root)" in output
    assert "fix: Set a non-root USER" in output
    assert "exit level WARN: FAILED" in output


def test_clean_image_exits_zero(make_image: MakeImage) -> None:
    code, output, _ = invoke("image", str(make_image()))
    assert code == 0, output
    assert "FATAL 0, WARN 0, INFO 0" in output


def test_exit_level(make_image: MakeImage) -> None:
    path = str(make_image(healthcheck=False))  # 4.6 WARN + CIS-DI-0006 INFO
    assert invoke("image", path, "--exit-level", "fatal")[0] == 0
    assert invoke("image", path)[0] == 1
    assert invoke("image", path, "--exit-level", "warn", "--exit-code", "7")[0] == 7
    info_only = str(make_image(files={"app/.git/HEAD": "x"}))  # DKL-LI-0003 INFO
    assert invoke("image", info_only)[0] == 0
    assert invoke("image", info_only, "--exit-level", "info")[0] == 1
    assert invoke("image", str(make_image(user="")), "--exit-level", "never")[0] == 0


def test_json_report(make_image: MakeImage) -> None:
    code, output, _ = invoke("image", str(make_image(files=SUDO)), "--json")
    doc = json.loads(output)
    assert code == 1 and doc["failed"] is True
    by_id = {f["id"]: f for f in doc["findings"]}
    assert by_id["DKL-DI-0001"]["level"] == "FATAL"
    assert by_id["DKL-DI-0001"]["items"][0]["subject"] == "usr/bin/sudo"
    assert by_id["DKL-DI-0001"]["remediation"]
    assert doc["summary"]["FATAL"] == 1 and doc["facts"]["reference"] == "test/app:1.0"


def test_sarif_report(make_image: MakeImage, tmp_path: Path) -> None:
    out = tmp_path / "audit.sarif"
    code, _, _ = invoke("image", str(make_image(files=SUDO)), "--format", "sarif", "-o", str(out))
    assert code == 1
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules) > 30
    results = [r for r in run["results"] if r["ruleId"] == "DKL-DI-0001"]
    assert results[0]["level"] == "error"
    assert rules[results[0]["ruleIndex"]]["id"] == "DKL-DI-0001"
    assert results[0]["locations"][0]["logicalLocations"][0]["name"] == "usr/bin/sudo"
    assert all(r["level"] in ("error", "warning", "note") for r in run["results"])


def test_ignore_file_toml_accepts_items_with_reason(make_image: MakeImage, tmp_path: Path) -> None:
    ignore = tmp_path / "accepted.toml"
    ignore.write_text(
        '[[ignore]]\nid = ["DKL-DI-0001", "4.3", "CIS-DI-0003", "NIST-4.1.2-minimal"]\n'
        'items = ["usr/bin/sud*"]\nreason = "the legacy job needs sudo (ticket 42)"\n'
    )
    code, output, _ = invoke("image", str(make_image(files=SUDO)), "--ignore", str(ignore))
    assert code == 0, output
    assert "[ACPT] DKL-DI-0001 - Avoid sudo command" in output
    assert "accepted: the legacy job needs sudo (ticket 42)" in output
    assert "ACCEPTED 4" in output


def test_ignore_file_yaml_and_partial_acceptance(make_image: MakeImage, tmp_path: Path) -> None:
    ignore = tmp_path / "accepted.yaml"
    ignore.write_text(yaml.safe_dump({"ignore": [
        {"id": "4.3", "items": ["usr/bin/sudo"], "reason": "needed"}]}))  # fmt: skip
    report = audit_image(
        str(make_image(files={**SUDO, "usr/bin/curl": "#!"})), ignore_files=[ignore]
    )
    finding = next(f for f in report.findings if f.id == "4.3")
    assert [i.subject for i in finding.items] == ["usr/bin/curl"]
    assert [a.item.subject for a in finding.accepted] == ["usr/bin/sudo"]
    assert finding.effective_level == Level.WARN
    sarif = to_sarif(report)
    suppressed = [r for r in sarif["runs"][0]["results"] if "suppressions" in r]
    assert suppressed[0]["suppressions"][0]["justification"] == "needed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[ignore]]\nid = "4.3"\n', "missing 'reason'"),
        ('[[ignore]]\nid = "4.3"\nreason = "x"\nitem = "a"\n', "unknown keys"),
        ('[[ignore]]\nreason = "x"\n', "missing 'id'"),
        ("[[ignore]\n", "not valid TOML"),
    ],
)
def test_bad_ignore_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(AuditError, match=message):
        load_ignore_file(path)


def test_shipped_exceptions_apply_to_hardflow_images_only(make_image: MakeImage) -> None:
    bash = {"usr/bin/bash": "#!", "usr/bin/rbash": "->bash"}
    labels = {"dev.hardflow.builder": "hardflow 0.1.0"}
    ours = audit_image(str(make_image(files=bash, labels=labels)))
    theirs = audit_image(str(make_image(files=bash)))
    assert not ours.fails(Level.WARN)
    assert ours.exceptions_applied == ("hardflow:hardflow-exceptions.toml",)
    assert theirs.fails(Level.WARN)
    forced = audit_image(str(make_image(files=bash)), hardflow_exceptions_mode=True)
    assert not forced.fails(Level.WARN)
    # the exceptions name exact items: another shell is not excused
    dash = audit_image(str(make_image(files={"usr/bin/dash": "#!"}, labels=labels)))
    assert dash.fails(Level.WARN)


def test_every_shipped_exception_has_a_reason_and_known_ids() -> None:
    from hardflow.audit.image_checks import CHECKS

    rules = hardflow_exceptions()
    assert rules
    for rule in rules:
        assert len(rule.reason) > 30 and rule.items
        assert set(rule.ids) <= set(CHECKS)


def test_parse_rules_top_level_list() -> None:
    rules = parse_rules([{"id": "5.4", "reason": "r"}], "x.yaml")
    assert rules[0].ids == ("5.4",) and rules[0].matches("anything")
    assert apply_rules([], rules) == []


def test_bad_image_is_a_hardflow_error_not_a_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\0" * 100)
    _, _, exc = invoke("image", str(junk))
    assert isinstance(exc, HardflowError)
    assert "junk.tar" in exc.message


def test_manifests_command(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump({"services": {"web": {"image": "x:1", "privileged": True}}}))
    code, output, _ = invoke("manifests", str(path))
    assert code == 1
    assert "[FATAL] 5.5 - Ensure that privileged containers are not used" in output
    assert f"* service/web (privileged: true) [{path}]" in output
    code, output, _ = invoke("manifests", str(path), "--format", "sarif")
    results = json.loads(output)["runs"][0]["results"]
    assert any(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == str(path)
               for r in results)  # fmt: skip


def test_manifests_command_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text("- just\n- a list\n")
    _, _, exc = invoke("manifests", str(path))
    assert isinstance(exc, AuditError) and "notes.yaml" in exc.message


def test_conventional_image_equivalent(make_image: MakeImage) -> None:
    """A tree like a conventional Debian-slim + pip image: apt, dpkg, sh, sudo (setuid),
    passwd/shadow, apt lists, root user. Prints the summary the issue asks for."""
    files = {
        "usr/bin/apt": "#!", "usr/bin/apt-get": "#!", "usr/bin/dpkg": "#!",
        "usr/bin/dash": "#!", "usr/bin/sh": "->dash", "usr/bin/bash": "#!",
        "usr/bin/su": "#!", "usr/bin/perl": "#!", "usr/local/bin/pip": "#!",
        "usr/local/lib/python3.12/site-packages/pip/__init__.py": "",
        "usr/bin/curl": "#!",
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/usr/sbin/nologin\n"
                      "airflow:x:50000:0::/home/airflow:/bin/bash\n",
        "etc/shadow": "root:*:19000:0:99999:7:::\ndaemon:*:19000::::::\nairflow::19000::::::\n",
        "var/lib/apt/lists/deb_dists_bookworm_main_binary-amd64_Packages.lz4": "x",
        "var/lib/dpkg/status": "Package: base-files\n",
        "root/.cache/pip/http/x": "cache",
    }  # fmt: skip
    sudo = [RawEntry("usr/bin/sudo", b"\x7fELF", 0o4755)]
    history = [
        "/bin/sh -c #(nop) ADD file:4f in / ",
        "/bin/sh -c apt-get update && apt-get install -y sudo curl",
        "/bin/sh -c #(nop)  ENV AIRFLOW_HOME=/opt/airflow",
    ]
    report = audit_image(
        str(make_image(files=files, raw=[sudo], user="", history=history, healthcheck=False,
                       reference="apache/airflow:latest"))
    )  # fmt: skip
    counts = report.counts()
    problems = sorted(f"{f.level.name} {f.id}" for f in report.findings if f.failed)
    print("\nconventional-image equivalent:", counts)
    print("\n".join(problems))
    expected = {"4.1", "4.3", "4.6", "4.8", "DKL-DI-0001", "DKL-DI-0005", "DKL-DI-0006",
                "DKL-LI-0001", "DKL-LI-0003"}  # fmt: skip
    assert expected <= {f.id for f in report.findings if f.failed}
    assert counts["FATAL"] >= 3 and counts["WARN"] >= 8
    assert "[FATAL] DKL-LI-0001" in render_text(report)


def test_signature_verified_with_key(make_image: MakeImage, tmp_path: Path) -> None:
    sign = pytest.importorskip("hardflow.supply.sign")
    layout = make_image(reference="localhost/test/app:1.0")
    key = sign.generate_key()
    sign.sign_layout(layout, key)
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(sign.public_key_pem(key))
    other = tmp_path / "other.pub"
    other.write_bytes(sign.public_key_pem(sign.generate_key()))

    good = {f.id: f for f in audit_image(str(layout), key=pub).findings}
    for check_id in ("4.12", "CIS-DI-0002", "CIS-DI-0005", "NIST-4.1.5"):
        assert good[check_id].level == Level.PASS, check_id
    assert "usr/bin/app" in read_image_path(layout).files  # the image, not the .sig manifest

    bad = {f.id: f for f in audit_image(str(layout), key=other).findings}
    assert bad["4.12"].level == Level.WARN
    assert "does not verify" in bad["4.12"].items[0].detail

    code, output, _ = invoke("image", str(layout), "--key", str(pub))
    assert code == 0 and "[PASS] 4.12" in output


def test_signature_needs_a_layout(make_image: MakeImage, tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_text("unused")
    report = audit_image(str(make_image(fmt="docker")), key=pub)
    finding = next(f for f in report.findings if f.id == "4.12")
    assert finding.level == Level.SKIP and "OCI layout" in finding.note
