"""`hardflow push` to a real registry on loopback (Debian's docker-registry), then verified by
independent tools: the real cosign, and podman's ``sigstoreSigned`` policy where the host's
containers/image has sigstore support (Debian 12's is built without it: the test says so).
``test_supply_policy.py`` runs the same policy check with Debian 13's skopeo from the image
hardflow builds of it, which works on any host.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_supply_sign import (
    cosign,  # noqa: F401 - a fixture
    tiny_layout,
)

from hardflow.cli.sign import push
from hardflow.errors import EngineError, TrustError
from hardflow.supply.push import plan_push, push_layout
from hardflow.supply.sign import (
    generate_key,
    load_private_key,
    load_public_key,
    public_key_pem,
    sign_layout,
    verify_layout,
    write_key_pair,
)

DEFAULT_LAYOUT = Path(__file__).resolve().parents[1] / "out/hardflow_airflow-3.3.2/oci"


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root  # the registry's storage is root/storage
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        config = root / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
            f"http:\n  addr: {self.host}\n"
        )
        self.log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start on {self.host}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def manifest_digest(self, repo: str, ref: str) -> str:
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repo}/manifests/{ref}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return "sha256:" + hashlib.sha256(response.read()).hexdigest()

    def tags(self, repo: str) -> list[str]:
        with urllib.request.urlopen(f"http://{self.host}/v2/{repo}/tags/list", timeout=10) as r:
            return sorted(json.loads(r.read())["tags"])


def test_plan_names_every_attachment_of_the_image(tmp_path: Path) -> None:
    layout = tiny_layout(tmp_path)
    sign_layout(layout.layout_dir, generate_key())
    copies = plan_push(layout.layout_dir, "reg.test:5000/team/tiny")
    hexpart = layout.manifest_digest[7:]
    assert [(c.what, c.destination) for c in copies] == [
        ("image", "docker://reg.test:5000/team/tiny:1"),
        ("signatures", f"docker://reg.test:5000/team/tiny:sha256-{hexpart}.sig"),
    ]
    assert copies[0].source == f"oci:{layout.layout_dir}:1"
    with pytest.raises(TrustError, match="not a digest"):
        plan_push(layout.layout_dir, "reg.test/team/tiny@sha256:" + "0" * 64)


def test_push_copies_image_and_signature_keeping_digests(
    registry: Registry, tmp_path: Path
) -> None:
    layout = tiny_layout(tmp_path)
    write_key_pair(tmp_path / "k", b"pw")
    repo = "hardflow-test/tiny"
    result = CliRunner().invoke(
        push,
        ["--sign-key", str(tmp_path / "k.key"), "--insecure", "--json",
         str(layout.layout_dir), f"{registry.host}/{repo}:v1"],
        env={"COSIGN_PASSWORD": "pw"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["warnings"] == []  # signed for exactly this repository
    hexpart = layout.manifest_digest[7:]
    assert registry.tags(repo) == [f"sha256-{hexpart}.sig", "v1"]
    assert registry.manifest_digest(repo, "v1") == layout.manifest_digest
    sig_copy = summary["copied"][1]
    assert registry.manifest_digest(repo, f"sha256-{hexpart}.sig") == sig_copy["digest"]
    report = verify_layout(
        layout.layout_dir, load_public_key(tmp_path / "k.pub"), identity=f"{registry.host}/{repo}"
    )
    assert report.ok


def test_push_warns_when_no_signature_names_the_destination(
    registry: Registry, tmp_path: Path
) -> None:
    layout = tiny_layout(tmp_path)
    unsigned = push_layout(layout.layout_dir, f"{registry.host}/t/a:1", tls_verify=False)
    assert "is not signed" in unsigned.warnings[0]
    sign_layout(layout.layout_dir, generate_key(), identity="elsewhere.test/t/a")
    signed = push_layout(layout.layout_dir, f"{registry.host}/t/a:1", tls_verify=False)
    assert f"no signature names {registry.host}/t/a" in signed.warnings[0]


def test_push_to_plain_http_without_insecure_fails_clearly(
    registry: Registry, tmp_path: Path
) -> None:
    layout = tiny_layout(tmp_path)
    with pytest.raises(EngineError, match="skopeo could not copy the image"):
        push_layout(layout.layout_dir, f"{registry.host}/t/b:1")


# ---------------------------------------------------------------------------------------------
# the real cosign as the independent verifier


def _cosign(binary: Path, *args: str, password: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COSIGN_PASSWORD": password, "COSIGN_YES": "true"}
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )


def _cosign_verify(binary: Path, pub: Path, ref: str) -> subprocess.CompletedProcess[str]:
    return _cosign(binary, "verify", "--key", str(pub), "--allow-insecure-registry",
                   "--insecure-ignore-tlog=true", ref)  # fmt: skip


@pytest.mark.network
def test_cosign_verifies_what_we_pushed_and_refuses_tampering(
    registry: Registry,
    tmp_path: Path,
    cosign: Path,  # noqa: F811
) -> None:
    pair = write_key_pair(tmp_path / "k", b"pw")
    repo = f"{registry.host}/hardflow-test/tiny"
    layout = tiny_layout(tmp_path, label="good")
    sign_layout(layout.layout_dir, load_private_key(pair.private_path, b"pw"), identity=repo)
    push_layout(layout.layout_dir, f"{repo}:1", tls_verify=False)

    ok = _cosign_verify(cosign, pair.public_path, f"{repo}:1")
    assert ok.returncode == 0, ok.stderr
    (claims,) = json.loads(ok.stdout)
    assert claims["critical"]["image"]["docker-manifest-digest"] == layout.manifest_digest
    assert claims["critical"]["identity"]["docker-reference"] == repo

    # another key: refused
    write_key_pair(tmp_path / "other", b"")
    wrong = _cosign_verify(cosign, tmp_path / "other.pub", f"{repo}:1")
    assert wrong.returncode != 0
    assert "no matching signatures" in wrong.stderr

    # a different, unsigned image pushed to the same tag: refused
    evil = tiny_layout(tmp_path, content=b"evil\n", label="evil")
    push_layout(evil.layout_dir, f"{repo}:1", tls_verify=False)
    tampered = _cosign_verify(cosign, pair.public_path, f"{repo}:1")
    assert tampered.returncode != 0
    assert "no signatures found" in tampered.stderr or "no matching" in tampered.stderr


@pytest.mark.network
def test_hardflow_verifies_a_signature_made_by_cosign_with_our_key(
    registry: Registry,
    tmp_path: Path,
    cosign: Path,  # noqa: F811
) -> None:
    pair = write_key_pair(tmp_path / "k", b"pw")
    repo = f"{registry.host}/hardflow-test/by-cosign"
    layout = tiny_layout(tmp_path)
    push_layout(layout.layout_dir, f"{repo}:1", tls_verify=False)
    signed = _cosign(cosign, "sign", "--key", str(pair.private_path), "--tlog-upload=false",
                     "--allow-insecure-registry", f"{repo}@{layout.manifest_digest}",
                     password="pw")  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    sig_tag = f"sha256-{layout.manifest_digest[7:]}.sig"
    copied = subprocess.run(
        ["skopeo", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false",
         f"docker://{repo}:{sig_tag}", f"oci:{layout.layout_dir}:{sig_tag}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    report = verify_layout(layout.layout_dir, load_public_key(pair.public_path), identity=repo)
    assert [s.ok for s in report.signatures] == [True]


# ---------------------------------------------------------------------------------------------
# podman's own policy check


def _podman_pull(home: Path, policy: Path, ref: str) -> subprocess.CompletedProcess[str]:
    # registries.d comes from $HOME/.config/containers/registries.d when that exists
    return subprocess.run(
        ["podman", "pull", "--tls-verify=false", "--signature-policy", str(policy), ref],
        capture_output=True, text=True, env={**os.environ, "HOME": str(home)}, check=False,
        timeout=120,
    )  # fmt: skip


@pytest.mark.podman
def test_podman_sigstore_policy_accepts_signed_and_refuses_tampered(
    registry: Registry, tmp_path: Path
) -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    key = generate_key()
    (tmp_path / "k.pub").write_bytes(public_key_pem(key))
    home = tmp_path / "home"
    regd = home / ".config/containers/registries.d"
    regd.mkdir(parents=True)
    (regd / "hardflow-test.yaml").write_text(
        f"docker:\n  {registry.host}:\n    use-sigstore-attachments: true\n"
    )
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "default": [{"type": "reject"}],
        "transports": {"docker": {registry.host: [{
            "type": "sigstoreSigned", "keyPath": str(tmp_path / "k.pub"),
            "signedIdentity": {"type": "matchRepository"},
        }]}},
    }))  # fmt: skip
    repo = f"{registry.host}/hardflow-test/podman"
    good = tiny_layout(tmp_path, label=f"good-{registry.port}")
    sign_layout(good.layout_dir, key, identity=repo)
    push_layout(good.layout_dir, f"{repo}:signed", tls_verify=False)
    evil = tiny_layout(tmp_path, content=b"evil\n", label=f"evil-{registry.port}")
    push_layout(evil.layout_dir, f"{repo}:unsigned", tls_verify=False)
    sign_layout(evil.layout_dir, generate_key(), identity=repo)  # another key
    push_layout(evil.layout_dir, f"{repo}:other-key", tls_verify=False)
    try:
        accepted = _podman_pull(home, policy, f"{repo}:signed")
        if "sigstore disabled" in accepted.stderr:
            pytest.skip(
                "this podman's containers/image is built without sigstore support "
                f"(podman said: {accepted.stderr.strip().splitlines()[-1]}); "
                "test_supply_policy.py checks the same policy with Debian 13's skopeo"
            )
        assert accepted.returncode == 0, accepted.stderr
        for tag in ("unsigned", "other-key"):
            refused = _podman_pull(home, policy, f"{repo}:{tag}")
            assert refused.returncode != 0
            assert "rejected" in refused.stderr.lower() or "signature" in refused.stderr.lower()
    finally:
        for tag in ("signed", "unsigned", "other-key"):
            subprocess.run(["podman", "rmi", "--force", f"{repo}:{tag}"],
                           capture_output=True, check=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.network
def test_sign_push_and_cosign_verify_the_real_default_image(
    registry: Registry,
    tmp_path: Path,
    cosign: Path,  # noqa: F811
) -> None:
    if not (DEFAULT_LAYOUT / "index.json").is_file():
        pytest.skip(f"{DEFAULT_LAYOUT} is not built (hardflow build)")
    # a copy (blobs hard-linked) so the real layout's index.json is left alone
    copy = tmp_path / "oci"
    shutil.copytree(DEFAULT_LAYOUT, copy, copy_function=os.link)
    (copy / "index.json").unlink()
    shutil.copyfile(DEFAULT_LAYOUT / "index.json", copy / "index.json")
    pair = write_key_pair(tmp_path / "k", b"pw")
    repo = f"{registry.host}/hardflow/airflow"
    signed = sign_layout(copy, load_private_key(pair.private_path, b"pw"), identity=repo)
    assert verify_layout(copy, load_public_key(pair.public_path)).ok
    push_layout(copy, f"{repo}:3.3.2", tls_verify=False)
    ok = _cosign_verify(cosign, pair.public_path, f"{repo}:3.3.2")
    assert ok.returncode == 0, ok.stderr
    (claims,) = json.loads(ok.stdout)
    assert claims["critical"]["image"]["docker-manifest-digest"] == signed.manifest_digest
