"""Image audit on fixture images that each break one rule (and a clean one that breaks none)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from audit_fixtures import PRIVATE_KEY, SDE, MakeImage, RawEntry

from hardflow.audit.image_checks import (
    CHECKS,
    command_segments,
    history_command,
    run_image_checks,
    secrets_in_text,
)
from hardflow.audit.image_source import apply_whiteout, read_image, read_image_path
from hardflow.audit.model import AuditError, Finding, Level
from hardflow.audit.run import audit_image


def findings(path: Path) -> dict[str, Finding]:
    return {f.id: f for f in run_image_checks(read_image_path(path))}


def failing(path: Path) -> dict[str, Finding]:
    return {k: f for k, f in findings(path).items() if f.failed}


def subjects(finding: Finding) -> list[str]:
    return [i.subject for i in finding.items]


def test_clean_image_has_no_fatal_warn_or_info(make_image: MakeImage) -> None:
    report = audit_image(str(make_image()))
    bad = [(f.id, [str(i) for i in f.items]) for f in report.findings if f.failed]
    assert bad == []
    assert not report.fails(Level.INFO)
    counts = report.counts()
    assert counts["PASS"] >= 30
    # undecidable ones are SKIP with a reason, never silently PASS
    skipped = {f.id: f.note for f in report.findings if f.level == Level.SKIP}
    assert set(skipped) == {"4.12", "CIS-DI-0002", "CIS-DI-0004", "CIS-DI-0005", "NIST-4.1.3",
                            "NIST-4.1.5"}  # fmt: skip
    assert all(skipped.values())


def test_every_check_runs_once(make_image: MakeImage) -> None:
    ids = [f.id for f in run_image_checks(read_image_path(make_image()))]
    assert sorted(ids) == sorted(CHECKS)


@pytest.mark.parametrize("user", ["", "root", "0", "0:0", "root:root"])
def test_root_user(make_image: MakeImage, user: str) -> None:
    bad = failing(make_image(user=user))
    for check_id in ("4.1", "CIS-DI-0001", "NIST-4.1.2-user"):
        assert check_id in bad, check_id
    assert bad["4.1"].level == Level.WARN
    assert subjects(bad["4.1"]) == ["config.User"]


def test_named_user_resolving_to_uid_0(make_image: MakeImage) -> None:
    passwd = "root:x:0:0::/root:/x\ntoor:x:0:0::/root:/x\n"
    bad = failing(make_image(user="toor", files={"etc/passwd": passwd}))
    assert "UID 0" in bad["4.1"].items[0].detail
    assert "DKL-LI-0002" in bad  # and the duplicate UID is caught too


def test_setuid_file(make_image: MakeImage) -> None:
    layer = [RawEntry("usr/bin/", None, 0o755), RawEntry("usr/bin/passwd", b"\x7fELF", 0o4755)]
    bad = failing(make_image(raw=[layer]))
    assert subjects(bad["4.8"]) == ["usr/bin/passwd"]
    assert "setuid" in bad["4.8"].items[0].detail
    assert bad["CIS-DI-0008"].level == Level.INFO
    assert set(bad) == {"4.8", "CIS-DI-0008"}


def test_setgid_file(make_image: MakeImage) -> None:
    layer = [RawEntry("usr/bin/wall", b"\x7fELF", 0o2755)]
    assert "setgid" in failing(make_image(raw=[layer]))["4.8"].items[0].detail


def test_private_key_file_by_name(make_image: MakeImage) -> None:
    bad = failing(make_image(files={"root/.ssh/id_rsa": PRIVATE_KEY}))
    for check_id in ("4.10", "CIS-DI-0010", "NIST-4.1.4"):
        assert "root/.ssh/id_rsa" in subjects(bad[check_id]), check_id
    assert bad["4.10"].level == Level.FATAL


def test_private_key_found_by_content(make_image: MakeImage) -> None:
    bad = failing(make_image(files={"etc/app/server.pem": PRIVATE_KEY}))
    assert subjects(bad["CIS-DI-0010"]) == ["etc/app/server.pem"]
    assert "private key" in bad["CIS-DI-0010"].items[0].detail


def test_key_parser_source_is_not_a_key(make_image: MakeImage) -> None:
    source = 'MARKER = b"-----BEGIN OPENSSH PRIVATE KEY-----"\n'
    assert "4.10" not in failing(make_image(files={"usr/lib/py/ssh.py": source}))


def test_dotenv_file(make_image: MakeImage) -> None:
    bad = failing(make_image(files={"opt/app/.env": "DB=1\n"}))
    assert subjects(bad["CIS-DI-0010"]) == ["opt/app/.env"]


def test_settings_py_of_a_library_is_code(make_image: MakeImage) -> None:
    lib = "usr/lib/python3/dist-packages/airflow/settings.py"
    bad = failing(make_image(files={lib: "X = 1\n", "srv/settings.py": "SECRET_KEY='x'\n"}))
    assert subjects(bad["CIS-DI-0010"]) == ["srv/settings.py"]


def test_password_in_env(make_image: MakeImage) -> None:
    bad = failing(make_image(env=("PATH=/usr/bin", "DB_PASSWORD=hunter2")))
    for check_id in ("4.10", "CIS-DI-0010", "NIST-4.1.4"):
        assert subjects(bad[check_id]) == ["env DB_PASSWORD"], check_id


@pytest.mark.parametrize(
    "env",
    ["DB_PASSWORD=", "DB_PASSWORD_FILE=/run/secrets/db", "GPG_KEY=ABCDEF", "LANG=C.UTF-8"],
)
def test_env_that_holds_no_secret(make_image: MakeImage, env: str) -> None:
    assert "CIS-DI-0010" not in failing(make_image(env=("PATH=/usr/bin", env)))


def test_credentials_in_env_value_and_label(make_image: MakeImage) -> None:
    bad = failing(
        make_image(
            env=("PATH=/usr/bin", "DATABASE_URL=postgres://app:s3cret@db/app"),
            labels={"com.example.api-token": "abc123"},
        )
    )
    assert subjects(bad["4.10"]) == ["env DATABASE_URL", "label com.example.api-token"]


def test_secret_in_history(make_image: MakeImage) -> None:
    history = ["test: base", "/bin/sh -c export API_TOKEN=abcdef && ./install"]
    bad = failing(make_image(history=history))
    assert subjects(bad["NIST-4.1.4"]) == ["history[1]"]
    assert "CIS-DI-0010" not in bad  # Dockle looks at env and files only


def test_apt_get_update_alone(make_image: MakeImage) -> None:
    bad = failing(make_image(history=["test: base", "/bin/sh -c apt-get update"]))
    assert subjects(bad["4.7"]) == ["history[1]"]
    assert bad["CIS-DI-0007"].level == Level.FATAL


def test_update_with_install_is_fine(make_image: MakeImage) -> None:
    cmd = (
        "/bin/sh -c apt-get update && apt-get install -y --no-install-recommends x "
        "&& rm -rf /var/lib/apt/lists/*"
    )
    bad = failing(make_image(history=["test: base", cmd]))
    assert not {"4.7", "CIS-DI-0007", "DKL-DI-0005"} & set(bad)


def test_install_without_clearing_lists_in_history(make_image: MakeImage) -> None:
    cmd = "/bin/sh -c apt-get update && apt-get install -y x"
    assert subjects(failing(make_image(history=["b", cmd]))["DKL-DI-0005"]) == ["history[1]"]


def test_add_in_history(make_image: MakeImage) -> None:
    bad = failing(make_image(history=["test: base", "/bin/sh -c #(nop) ADD file:abc in /app "]))
    assert subjects(bad["4.9"]) == ["history[1]"]
    assert bad["CIS-DI-0009"].level == Level.FATAL


def test_add_of_the_base_layer_is_not_reported(make_image: MakeImage) -> None:
    bad = failing(make_image(history=["/bin/sh -c #(nop) ADD file:abc in / ", "test: app"]))
    assert "4.9" not in bad


def test_no_healthcheck(make_image: MakeImage) -> None:
    bad = failing(make_image(healthcheck=False))
    assert subjects(bad["4.6"]) == ["config.Healthcheck"]
    assert bad["CIS-DI-0006"].level == Level.INFO


def test_duplicate_uid_and_gid(make_image: MakeImage) -> None:
    passwd = "root:x:0:0::/root:/x\napp:x:50000:0::/app:/x\nother:x:50000:0::/o:/x\n"
    group = "root:x:0:\nwheel:x:0:\n"
    bad = failing(make_image(files={"etc/passwd": passwd, "etc/group": group}))
    assert subjects(bad["DKL-LI-0002"]) == ["/etc/passwd: other", "/etc/group: wheel"]


def test_empty_shadow_password(make_image: MakeImage) -> None:
    shadow = "root::19000:0:99999:7:::\napp:*:19000:0:99999:7:::\n"
    bad = failing(make_image(files={"etc/shadow": shadow}))
    assert subjects(bad["DKL-LI-0001"]) == ["/etc/shadow: root"]
    assert bad["DKL-LI-0001"].level == Level.FATAL


def test_no_account_files_is_skip(make_image: MakeImage) -> None:
    result = findings(make_image(files={"etc/passwd": None, "etc/shadow": None, "etc/group": None}))
    assert result["DKL-LI-0001"].level == Level.SKIP
    assert result["DKL-LI-0002"].level == Level.SKIP


def test_apt_lists_left_behind(make_image: MakeImage) -> None:
    lists = {"var/lib/apt/lists/deb_dists_trixie_main_Packages": "Package: x\n",
             "var/lib/apt/lists/lock": ""}  # fmt: skip
    bad = failing(make_image(files=lists))
    assert subjects(bad["DKL-DI-0005"]) == ["var/lib/apt/lists/deb_dists_trixie_main_Packages"]


def test_latest_reference(make_image: MakeImage) -> None:
    bad = failing(make_image(reference="test/app:latest"))
    assert subjects(bad["DKL-DI-0006"]) == ["test/app:latest"]
    assert bad["DKL-DI-0006"].level == Level.WARN


def test_latest_reference_from_docker_archive(make_image: MakeImage) -> None:
    path = make_image(reference="test/app:latest", fmt="docker")
    assert "DKL-DI-0006" in failing(path)


def test_forbidden_contents_policy(make_image: MakeImage) -> None:
    files = {
        "usr/bin/apt-get": "#!", "usr/bin/gcc-14": "#!", "usr/bin/dash": "#!",
        "usr/bin/sh": "->dash", "usr/bin/sudo": "#!", "usr/sbin/sshd": "#!",
        "usr/bin/curl": "#!", "usr/local/lib/python3.13/dist-packages/pip/__init__.py": "",
        "usr/share/doc/bash/README": "docs are not shells",
    }  # fmt: skip
    bad = failing(make_image(files=files))
    got = {i.subject: i.detail.split(",")[0] for i in bad["4.3"].items}
    assert got == {
        "usr/bin/apt-get": "package manager", "usr/bin/gcc-14": "compiler",
        "usr/bin/dash": "shell", "usr/bin/sh": "shell", "usr/bin/sudo": "privilege tool",
        "usr/sbin/sshd": "remote access", "usr/bin/curl": "network tool",
        "usr/local/lib/python3.13/dist-packages/pip": "package manager",
    }  # fmt: skip
    assert subjects(bad["DKL-DI-0001"]) == ["usr/bin/sudo"]
    assert subjects(bad["NIST-4.1.2-ssh"]) == ["usr/sbin/sshd"]
    assert bad["CIS-DI-0003"].items == bad["4.3"].items == bad["NIST-4.1.2-minimal"].items


def test_ssh_port(make_image: MakeImage) -> None:
    assert subjects(failing(make_image(ports=["22/tcp"]))["NIST-4.1.2-ssh"]) == ["EXPOSE 22/tcp"]


def test_sensitive_volume(make_image: MakeImage) -> None:
    bad = failing(make_image(volumes=["/proc", "/data"]))
    assert subjects(bad["DKL-DI-0002"]) == ["VOLUME /proc"]


def test_dist_upgrade_sudo_and_apk_in_history(make_image: MakeImage) -> None:
    history = [
        "/bin/sh -c sudo apt-get -y dist-upgrade",
        "/bin/sh -c apk add curl",
    ]
    bad = failing(make_image(history=history))
    assert subjects(bad["DKL-DI-0003"]) == ["history[0]"]
    assert subjects(bad["DKL-DI-0001"]) == ["history[0]"]
    assert subjects(bad["DKL-DI-0004"]) == ["history[1]"]


def test_junk_files(make_image: MakeImage) -> None:
    bad = failing(make_image(files={"app/.git/HEAD": "ref", "app/Dockerfile": "FROM x"}))
    assert subjects(bad["DKL-LI-0003"]) == ["app/.git/", "app/Dockerfile"]
    assert bad["DKL-LI-0003"].level == Level.INFO


def test_no_package_metadata_is_info(make_image: MakeImage) -> None:
    bad = failing(make_image(files={"var/lib/dpkg/status.d/app": None}))
    assert bad["NIST-4.1.1"].level == Level.INFO


def test_reproducibility_of_a_builder_image_passes(make_image: MakeImage) -> None:
    result = findings(make_image())
    for check_id in ("HF-R-0001", "HF-R-0002", "HF-R-0003", "HF-R-0004"):
        assert result[check_id].level == Level.PASS, check_id


def test_reproducibility_defects(make_image: MakeImage) -> None:
    entries = [
        RawEntry("zz", b"1"),
        RawEntry("aa", b"2", mtime=SDE + 10),
        RawEntry("named", b"3", uname="build"),
    ]
    bad = failing(make_image(raw=[entries]))
    assert subjects(bad["HF-R-0004"]) == ["layer 2: aa"]
    assert subjects(bad["HF-R-0001"]) == ["layer 2: aa"]
    assert subjects(bad["HF-R-0002"]) == ["layer 2: named"]
    assert all(bad[i].level == Level.INFO for i in ("HF-R-0001", "HF-R-0002", "HF-R-0004"))


def test_gzip_header_with_timestamp(make_image: MakeImage) -> None:
    image = read_image_path(make_image())
    assert all(layer.gzip_mtime == 0 and not layer.gzip_name for layer in image.layers)
    stamped = [replace(layer, gzip_mtime=1234) for layer in image.layers]
    result = {f.id: f for f in run_image_checks(replace(image, layers=tuple(stamped)))}
    assert result["HF-R-0003"].level == Level.INFO
    assert "gzip mtime 1234" in result["HF-R-0003"].items[0].detail


# ---------------------------------------------------------------------------------------------
# whiteouts


def test_apply_whiteout_unit() -> None:
    files = {"a": 1, "a/b": 2, "a/b/c": 3, "a/bc": 4, "d": 5}
    apply_whiteout(files, "a", ".wh.b")
    assert files == {"a": 1, "a/bc": 4, "d": 5}
    apply_whiteout(files, "a", ".wh..wh..opq")
    assert files == {"a": 1, "d": 5}
    apply_whiteout(files, "", ".wh.d")
    assert files == {"a": 1}


def test_whiteouts_hide_lower_layers_but_secrets_stay_in_blobs(make_image: MakeImage) -> None:
    files = {
        "usr/bin/sudo": "#!",
        "root/.ssh/id_rsa": PRIVATE_KEY,
        "var/lib/apt/lists/deb_Packages": "Package: x\n",
        "var/lib/apt/lists/partial/x": "y",
    }
    whiteouts = [
        RawEntry("usr/bin/.wh.sudo"),
        RawEntry("root/.ssh/.wh.id_rsa"),
        RawEntry("var/lib/apt/lists/", None, 0o755),
        RawEntry("var/lib/apt/lists/.wh..wh..opq"),
        RawEntry("var/lib/apt/lists/lock"),  # same layer as the opaque marker: stays
    ]
    layout = make_image(files=files, raw=[whiteouts])
    image = read_image_path(layout)
    assert "usr/bin/sudo" not in image.files
    assert "root/.ssh/id_rsa" not in image.files
    assert "var/lib/apt/lists/deb_Packages" not in image.files
    assert "var/lib/apt/lists/partial/x" not in image.files
    assert "var/lib/apt/lists/lock" in image.files
    assert not any(".wh." in p for p in image.files)
    bad = {f.id: f for f in run_image_checks(image) if f.failed}
    assert "DKL-DI-0001" not in bad and "4.3" not in bad and "DKL-DI-0005" not in bad
    (item,) = bad["4.10"].items
    assert item.subject == "root/.ssh/id_rsa"
    assert "deleted later but still in layer 0" in item.detail


def test_whiteout_then_readd_in_later_layer(make_image: MakeImage) -> None:
    layout = make_image(
        files={"etc/app.conf": "old"},
        raw=[[RawEntry("etc/.wh.app.conf")], [RawEntry("etc/app.conf", b"new")]],
    )
    assert read_image_path(layout).files["etc/app.conf"].layer == 3


# ---------------------------------------------------------------------------------------------
# sources and bad input


def test_docker_archive_and_oci_archive_read_the_same(
    make_image: MakeImage, tmp_path: Path
) -> None:
    layout = make_image(files={"usr/bin/sudo": "#!"})
    archive = make_image(files={"usr/bin/sudo": "#!"}, fmt="docker")
    oci_archive = tmp_path / "oci-archive.tar"
    with tarfile.open(oci_archive, "w") as tar:
        for child in sorted(layout.iterdir()):
            tar.add(child, arcname=child.name)
    a, b, c = (read_image_path(p) for p in (layout, archive, oci_archive))
    assert (a.kind, b.kind, c.kind) == ("oci-layout", "docker-archive", "oci-archive")
    assert set(a.files) == set(b.files) == set(c.files)
    assert a.reference == b.reference == c.reference == "test/app:1.0"


def test_engine_reference_goes_through_the_saver(make_image: MakeImage) -> None:
    archive = make_image(fmt="docker")
    calls = []

    def saver(ref: str, dest: Path) -> None:
        calls.append(ref)
        shutil.copyfile(archive, dest)

    image = read_image("localhost/test/app:1.0", saver=saver)
    assert calls == ["localhost/test/app:1.0"]
    assert image.kind == "engine"
    assert "usr/bin/app" in image.files


def test_tarball_that_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "stuff.tar"
    data = tmp_path / "hello.txt"
    data.write_text("hi")
    with tarfile.open(path, "w") as tar:
        tar.add(data, arcname="hello.txt")
    with pytest.raises(AuditError, match=r"stuff\.tar is a tarball but not an image"):
        read_image_path(path)


def test_file_that_is_not_a_tarball(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image at all\n" * 100)
    with pytest.raises(AuditError, match=r"notes\.txt is not an image"):
        read_image_path(path)


def test_directory_that_is_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="not an OCI image layout"):
        read_image_path(tmp_path)


def test_truncated_layer(make_image: MakeImage, tmp_path: Path) -> None:
    layout = make_image()
    copy = tmp_path / "copy"
    shutil.copytree(layout, copy)
    manifest_digest = json.loads((copy / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((copy / "blobs/sha256" / manifest_digest[7:]).read_text())
    blob = copy / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    data = blob.read_bytes()
    blob.unlink()  # the layout hard-links blobs: never truncate the original in place
    blob.write_bytes(data[: len(data) // 2])
    with pytest.raises(AuditError, match=r"layer 0 .*(truncated|could not read)") as err:
        read_image_path(copy)
    assert str(copy) in err.value.message


def test_tampered_layer_digest(make_image: MakeImage, tmp_path: Path) -> None:
    archive = make_image(fmt="docker")
    # a docker-archive has no blob digests to check, but the diff_ids still are
    copy = tmp_path / "tampered.tar"
    with tarfile.open(archive) as src, tarfile.open(copy, "w") as dst:
        manifest = json.load(src.extractfile("manifest.json"))  # type: ignore[arg-type]
        first_layer = manifest[0]["Layers"][0]
        for member in src.getmembers():
            handle = src.extractfile(member) if member.isfile() else None
            if member.name == first_layer:
                other = src.extractfile(manifest[0]["Layers"][1])
                assert other is not None
                payload = other.read()
                member.size = len(payload)
                dst.addfile(member, io.BytesIO(payload))
            else:
                dst.addfile(member, handle)
    with pytest.raises(AuditError, match="diff_id"):
        read_image_path(copy)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no such file"):
        read_image(str(tmp_path / "nope"))


# ---------------------------------------------------------------------------------------------
# history token rules


def test_history_command_strips_builder_wrappers() -> None:
    assert history_command("/bin/sh -c #(nop) ADD file:1 in / ") == "ADD file:1 in /"
    assert history_command("COPY a b # buildkit") == "COPY a b"
    assert history_command("|1 X=1 /bin/sh -c apt-get update") == "apt-get update"
    assert command_segments("/bin/sh -c a b && c;d | e") == [["a", "b"], ["c"], ["d"], ["e"]]


def test_secrets_in_text() -> None:
    assert secrets_in_text("ENV PASSWORD=$PASSWORD") == []
    assert secrets_in_text("curl --password hunter2 x") == ["passes a secret on the command line"]
    assert "AWS access key id" in secrets_in_text("aws AKIAABCDEFGHIJKLMNOP")
