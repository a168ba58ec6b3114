"""`hardflow push` of a multi-platform image to a loopback registry (Debian's docker-registry):
every platform's blobs and manifest, the index, and the signatures and attestations of the
index and of each platform's manifest, all under the digests the layout has.

The image is the two-platform fixture build (``helpers.multiplatform``), built once per module.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_supply_push import Registry, _cosign, _cosign_verify
from test_supply_sign import cosign  # noqa: F401 - a fixture

from hardflow.build.pipeline import BuildResult
from hardflow.cli.sign import push
from hardflow.oci.writer import MEDIA_INDEX, MEDIA_MANIFEST, sha256_digest
from hardflow.supply.push import identity_warnings, plan_push, push_layout
from hardflow.supply.sign import (
    VerifyError,
    generate_key,
    load_private_key,
    load_public_key,
    sign_image,
    sign_layout,
    verify_layout,
    write_key_pair,
)
from helpers.multiplatform import requires_amd64_host, shared_two_platforms

pytestmark = requires_amd64_host


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return shared_two_platforms(tmp_path_factory)


@pytest.fixture
def layout(built: BuildResult, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built.image.layout_dir, tmp_path / "oci"))


def fetch(registry: Registry, repo: str, ref: str, accept: str) -> tuple[str, bytes]:
    request = urllib.request.Request(
        f"http://{registry.host}/v2/{repo}/manifests/{ref}", headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def platforms(built: BuildResult) -> dict[str, str]:
    return {p: r.image.manifest_digest for p, r in built.platforms}


def test_the_plan_copies_every_platform_and_every_signature(
    built: BuildResult, layout: Path
) -> None:
    per = platforms(built)
    unsigned = identity_warnings(layout, "reg.test/team/multi:1")
    assert [w.split(" is not signed")[0] for w in unsigned] == [
        f"the image {built.index_digest}",
        *(f"the {p} manifest {d}" for p, d in per.items()),
    ]
    sign_layout(layout, generate_key())
    copies = plan_push(layout, "reg.test/team/multi")
    assert copies[0].all_platforms and copies[0].digest == built.index_digest
    assert [(c.what, c.destination.rsplit(":", 1)[1]) for c in copies] == [
        ("image", "1"),
        ("signatures", f"sha256-{built.index_digest[7:]}.sig"),
        *((f"signatures ({p})", f"sha256-{d[7:]}.sig") for p, d in per.items()),
    ]
    # signed for another repository than the destination: one warning, as for one platform
    (warning,) = identity_warnings(layout, "reg.test/team/multi:1")
    assert "no signature names reg.test/team/multi" in warning


def test_push_sends_the_index_every_platform_and_the_signatures(
    built: BuildResult, layout: Path, registry: Registry, tmp_path: Path
) -> None:
    write_key_pair(tmp_path / "k", b"pw")
    repo = "hardflow-test/multi"
    result = CliRunner().invoke(
        push,
        ["--sign-key", str(tmp_path / "k.key"), "--insecure", "--json", str(layout),
         f"{registry.host}/{repo}:v1"],
        env={"COSIGN_PASSWORD": "pw"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    per = platforms(built)
    assert summary["warnings"] == []
    assert summary["manifest_digest"] == built.index_digest
    assert summary["platforms"] == per
    sig_tags = [f"sha256-{d[7:]}.sig" for d in (built.index_digest, *per.values())]
    assert registry.tags(repo) == sorted([*sig_tags, "v1"])
    media, index = fetch(registry, repo, "v1", MEDIA_INDEX)
    assert media == MEDIA_INDEX and sha256_digest(index) == built.index_digest
    for digest in per.values():
        media, manifest = fetch(registry, repo, digest, MEDIA_MANIFEST)
        assert media == MEDIA_MANIFEST and sha256_digest(manifest) == digest
        for desc in json.loads(manifest)["layers"]:
            url = f"http://{registry.host}/v2/{repo}/blobs/{desc['digest']}"
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10):
                pass
    pushed = {c["destination"].rsplit(":", 1)[1]: c["digest"] for c in summary["copied"]}
    for tag in sig_tags:
        assert registry.manifest_digest(repo, tag) == pushed[tag]


# ---------------------------------------------------------------------------------------------
# the real cosign as the independent verifier (and signer: cosign sign --recursive)


@pytest.mark.network
def test_cosign_verifies_the_pushed_index_and_every_platform(
    built: BuildResult,
    layout: Path,
    registry: Registry,
    tmp_path: Path,
    cosign: Path,  # noqa: F811
) -> None:
    pair = write_key_pair(tmp_path / "k", b"pw")
    repo = f"{registry.host}/hardflow-test/multi"
    # signed with the build's attestations: each platform's SBOMs and provenance
    key = load_private_key(pair.private_path, b"pw")
    sign_image(layout, key, identity=repo, out_dir=built.image.layout_dir.parent)
    push_layout(layout, f"{repo}:1", tls_verify=False)
    refs = {"index": (f"{repo}:1", built.index_digest)} | {
        p: (f"{repo}@{d}", d) for p, d in platforms(built).items()
    }
    for what, (ref, digest) in refs.items():
        ok = _cosign_verify(cosign, pair.public_path, ref)
        assert ok.returncode == 0, f"{what}: {ok.stderr}"
        (claims,) = json.loads(ok.stdout)
        assert claims["critical"]["image"]["docker-manifest-digest"] == digest, what
        assert claims["critical"]["identity"]["docker-reference"] == repo
    for platform, digest in platforms(built).items():
        for kind in ("spdxjson", "cyclonedx", "slsaprovenance1"):
            att = _cosign(cosign, "verify-attestation", "--key", str(pair.public_path),
                          "--type", kind, "--insecure-ignore-tlog=true",
                          "--allow-insecure-registry", f"{repo}@{digest}")  # fmt: skip
            assert att.returncode == 0, f"{platform} {kind}: {att.stderr}"
            (envelope,) = [json.loads(line) for line in att.stdout.splitlines() if line.strip()]
            statement = json.loads(base64.b64decode(envelope["payload"]))
            assert statement["subject"][0]["digest"]["sha256"] == digest[7:], platform


@pytest.mark.network
def test_hardflow_verifies_an_index_signed_by_cosign_recursively(
    built: BuildResult,
    layout: Path,
    registry: Registry,
    tmp_path: Path,
    cosign: Path,  # noqa: F811
) -> None:
    pair = write_key_pair(tmp_path / "k", b"pw")
    repo = f"{registry.host}/hardflow-test/by-cosign"
    push_layout(layout, f"{repo}:1", tls_verify=False)
    signed = _cosign(cosign, "sign", "--recursive", "--key", str(pair.private_path),
                     "--tlog-upload=false", "--allow-insecure-registry",
                     f"{repo}@{built.index_digest}", password="pw")  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    public = load_public_key(pair.public_path)
    with pytest.raises(VerifyError):  # nothing copied back yet
        verify_layout(layout, public, identity=repo)
    for digest in (built.index_digest, *platforms(built).values()):
        sig = f"sha256-{digest[7:]}.sig"
        copied = subprocess.run(
            ["skopeo", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false",
             f"docker://{repo}:{sig}", f"oci:{layout}:{sig}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert copied.returncode == 0, copied.stderr
    report = verify_layout(layout, public, identity=repo)
    assert [p.platform for p in report.platforms] == list(platforms(built))
    assert all(s.ok for p in report.platforms for s in p.signatures)
