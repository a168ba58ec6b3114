"""A container tool enforces hardflow's signatures: skopeo refuses unsigned and tampered images.

Debian 12's podman and skopeo are built with sigstore disabled, and Debian 13's skopeo (sigstore
enabled) needs a newer glibc than Debian 12 has, so the verifier runs from the embedded
``skopeo`` spec: a minimal hardened skopeo image hardflow builds from trixie packages. It runs
read-only, without capabilities, as uid 65532, on the host network, against the loopback
registry of the push tests. ``hardflow push`` publishes each signature the way cosign does,
under the tag ``sha256-<hex>.sig`` of the image's repository, which is where containers/image
looks with ``use-sigstore-attachments: true``.

Every case pushes one image to its own tag and runs
``skopeo copy --policy policy.json docker://127.0.0.1:PORT/REPO:TAG oci:/tmp/out`` under a
policy that requires a ``sigstoreSigned`` signature by our key for our repository
(``matchRepository``). Only the correctly signed image is copied.

Every case runs on each kind of image in :data:`IMAGE_KINDS`: a one-platform image (one
manifest) and a multi-platform one (an image index of linux/amd64 and linux/arm64, a variant
of the fixture build in ``helpers.multiplatform``), which is copied with ``--multi-arch all``
(``--all``): containers/image checks the policy on the index and again on every platform's
manifest, so each must carry a valid signature, as ``hardflow sign`` (like ``cosign sign
--recursive``) makes them. :data:`INDEX_CASES` break one platform only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import pytest
from test_supply_push import Registry
from test_supply_sign import tiny_layout

from hardflow.build.bytecode import host_architecture
from hardflow.lock.model import check_matches, read_lock
from hardflow.oci.attach import (
    MEDIA_SIMPLESIGNING,
    SIG_SUFFIX,
    SIGNATURE_ANNOTATION,
    AttachedLayer,
    attached_layers,
    attachment_tag,
    entry_tag,
    read_index,
)
from hardflow.oci.writer import ImageResult, canonical_json, sha256_digest
from hardflow.spec import resolve_spec_arg
from hardflow.supply.push import push_layout
from hardflow.supply.sign import (
    Attachment,
    SignPlan,
    VerifyError,
    generate_key,
    public_key_pem,
    sign_layout,
    simple_signing_payload,
    verify_layout,
    write_signing,
)
from helpers.loaded_images import LoadedImage
from helpers.multiplatform import shared_two_platforms
from helpers.podman import HARDENED

SPEC = "skopeo"
CONFIG_IN_CONTAINER = "/policy"  # policy.json, registries.d/ and cosign.pub, mounted read-only

# the kinds of image every case runs on: name -> builder of an unsigned layout
# (scene, tmp, content, label) -> image (an index: manifest_digest is the index's digest)
ImageBuilder = Callable[["Scene", Path, bytes, str], ImageResult]


def _index_variant(scene: Scene, tmp: Path, content: bytes, label: str) -> ImageResult:
    if scene.multi is None:
        pytest.skip("the two-platform fixture is built on amd64 hosts")
    return index_variant(scene.multi, tmp / f"layout-{label}", content)


IMAGE_KINDS: dict[str, ImageBuilder] = {
    "manifest": lambda scene, tmp, content, label: tiny_layout(tmp, content=content, label=label),
    "index": _index_variant,
}
MULTI_ARCH = {"manifest": "system", "index": "all"}  # skopeo copy --multi-arch, per kind


# ---------------------------------------------------------------------------------------------
# the policy a user writes (the README shows the same files)


def sigstore_policy(registry: str, key_path: str) -> dict[str, object]:
    """Refuse everything, except images from ``registry`` signed by the key for the very
    repository they are pulled from."""
    return {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                registry: [
                    {
                        "type": "sigstoreSigned",
                        "keyPath": key_path,
                        "signedIdentity": {"type": "matchRepository"},
                    }
                ]
            }
        },
    }


def registries_d(registry: str) -> str:
    """containers/image reads cosign's ``sha256-<hex>.sig`` tags only where this says so."""
    return f"docker:\n  {registry}:\n    use-sigstore-attachments: true\n"


def write_policy_dir(folder: Path, registry: str, public_pem: bytes) -> Path:
    (folder / "registries.d").mkdir(parents=True)
    (folder / "registries.d/hardflow.yaml").write_text(registries_d(registry))
    (folder / "cosign.pub").write_bytes(public_pem)
    policy = sigstore_policy(registry, f"{CONFIG_IN_CONTAINER}/cosign.pub")
    (folder / "policy.json").write_text(json.dumps(policy, indent=2) + "\n")
    return folder


# ---------------------------------------------------------------------------------------------
# running skopeo from its image


@dataclass(frozen=True)
class Copied:
    returncode: int
    output: str  # stdout and stderr
    seconds: float


def skopeo_copy(
    image: str,
    config: Path,
    ref: str,
    multi_arch: str = "system",
    policy: str | None = f"{CONFIG_IN_CONTAINER}/policy.json",
) -> Copied:
    """``skopeo copy`` from the registry to an OCI layout in the container's tmpfs.

    ``--remove-signatures``: an OCI layout cannot store signatures ("Pushing signatures for
    OCI images is not supported"); the policy is evaluated on the source's signatures all the
    same. ``--preserve-digests``: the copy may not rewrite the signed manifest."""
    name = f"hardflow-test-policy-{uuid.uuid4().hex[:12]}"
    argv = [
        "podman", "run", "--rm", "--name", name, *HARDENED, "--tmpfs", "/tmp",
        "--network", "host", "-v", f"{config}:{CONFIG_IN_CONTAINER}:ro", image,
        "--registries.d", f"{CONFIG_IN_CONTAINER}/registries.d",
        "copy", "--src-tls-verify=false", *(["--policy", policy] if policy else []),
        "--remove-signatures", "--preserve-digests", "--multi-arch", multi_arch,
        f"docker://{ref}", "oci:/tmp/out",
    ]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=180)
    return Copied(done.returncode, done.stdout + done.stderr, time.monotonic() - start)


# ---------------------------------------------------------------------------------------------
# the images: one correctly signed, the others unsigned or tampered with


def _reattach_signature(image: ImageResult, layers: list[AttachedLayer], digest: str) -> None:
    """``digest``'s signature manifest: ``layers`` and nothing else (``digest`` may be a
    platform's manifest inside an index, which index.json does not list)."""
    plan = SignPlan(image.layout_dir, image.manifest_digest, "", "",
                    (Attachment(SIG_SUFFIX, tuple(layers), digest),))  # fmt: skip
    write_signing(plan)


def _signature_layers(image: ImageResult) -> list[AttachedLayer]:
    found = attached_layers(image.layout_dir, image.manifest_digest, SIG_SUFFIX)
    assert found is not None
    return found[1]


def edit_manifest(layout_dir: Path, digest: str) -> str:
    """Change the image's manifest after it was signed (an annotation added); the layout's
    index then names the new manifest. Returns its digest."""
    blob = layout_dir / "blobs/sha256" / digest.removeprefix("sha256:")
    manifest = json.loads(blob.read_bytes())
    manifest["annotations"] = {"org.example.tampered": "yes"}
    data = canonical_json(manifest)
    new = sha256_digest(data)
    (layout_dir / "blobs/sha256" / new.removeprefix("sha256:")).write_bytes(data)
    index = read_index(layout_dir)
    for entry in index["manifests"]:
        if entry["digest"] == digest:
            entry.update(digest=new, size=len(data))
    (layout_dir / "index.json").write_bytes(canonical_json(index))
    return new


def _write_json(layout_dir: Path, doc: object) -> tuple[str, int]:
    data = canonical_json(doc)
    digest = sha256_digest(data)
    (layout_dir / "blobs/sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return digest, len(data)


def reindex(layout_dir: Path, change: Callable[[str, dict[str, object]], None]) -> dict[str, str]:
    """Rewrite every platform manifest of the layout's image index with ``change(platform,
    manifest)``, then the index and ``index.json`` to list them. Returns the new digests by
    platform, and by "index"."""
    top = read_index(layout_dir)
    (entry,) = [e for e in top["manifests"] if e["mediaType"].endswith("index.v1+json")]
    blobs = layout_dir / "blobs/sha256"
    index = json.loads((blobs / entry["digest"].removeprefix("sha256:")).read_bytes())
    new: dict[str, str] = {}
    for item in index["manifests"]:
        platform = f"{item['platform']['os']}/{item['platform']['architecture']}"
        manifest = json.loads((blobs / item["digest"].removeprefix("sha256:")).read_bytes())
        before = canonical_json(manifest)
        change(platform, manifest)
        if canonical_json(manifest) != before:
            digest, size = _write_json(layout_dir, manifest)
            item.update(digest=digest, size=size)
        new[platform] = item["digest"]
    new["index"], size = _write_json(layout_dir, index)
    entry.update(digest=new["index"], size=size)
    (layout_dir / "index.json").write_bytes(canonical_json(top))
    return new


def index_variant(base: ImageResult, dest: Path, content: bytes) -> ImageResult:
    """A copy of the two-platform layout whose manifests (and so the index) differ from any
    other variant's by an annotation: each case gets digests, and signatures, of its own."""
    shutil.copytree(base.layout_dir, dest)

    def mark(platform: str, manifest: dict[str, object]) -> None:
        manifest["annotations"] = {"org.example.case": content.decode().strip()}

    digests = reindex(dest, mark)
    return replace(base, layout_dir=dest, manifest_digest=digests["index"])


def registry_blob(storage: Path, digest: str) -> Path:
    hexpart = digest.removeprefix("sha256:")
    return storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


@dataclass(frozen=True)
class Scene:
    registry: Registry
    repo: str
    config: Path
    skopeo: str
    multi: ImageResult | None  # the two-platform fixture build's image (amd64 hosts only)


@dataclass(frozen=True)
class Case:
    name: str
    # what the case does to a freshly built image before it is pushed (the last argument is
    # a scratch folder); returns a detail skopeo's message must name ("" for none)
    prepare: Callable[[Scene, ImageResult, Path], str]
    accepted: bool
    message: str  # what skopeo must print


SIGNING_KEY = generate_key()
OTHER_REPOSITORY = "registry.example/someone/else"


def _signed(scene: Scene, image: ImageResult, tmp: Path) -> str:
    sign_layout(image.layout_dir, SIGNING_KEY, identity=scene.repo)
    return ""


def _unsigned(scene: Scene, image: ImageResult, tmp: Path) -> str:
    return ""


def _other_key(scene: Scene, image: ImageResult, tmp: Path) -> str:
    sign_layout(image.layout_dir, generate_key(), identity=scene.repo)
    return "invalid signature"


def _other_repository(scene: Scene, image: ImageResult, tmp: Path) -> str:
    sign_layout(image.layout_dir, SIGNING_KEY, identity=OTHER_REPOSITORY)
    return OTHER_REPOSITORY


def _manifest_changed_after_signing(scene: Scene, image: ImageResult, tmp: Path) -> str:
    sign_layout(image.layout_dir, SIGNING_KEY, identity=scene.repo)
    layers = _signature_layers(image)
    new = edit_manifest(image.layout_dir, image.manifest_digest)
    _reattach_signature(image, layers, new)  # the old signature, carried to the new digest
    return image.manifest_digest  # the digest the signature names


def _payload_rewritten(scene: Scene, image: ImageResult, tmp: Path) -> str:
    # another image's valid signature, its payload edited to name this image
    donor = tiny_layout(tmp, content=b"donor\n", label="donor")
    sign_layout(donor.layout_dir, SIGNING_KEY, identity=scene.repo)
    (stolen,) = _signature_layers(donor)
    forged = AttachedLayer(
        MEDIA_SIMPLESIGNING,
        simple_signing_payload(scene.repo, image.manifest_digest),
        {SIGNATURE_ANNOTATION: stolen.annotations[SIGNATURE_ANNOTATION]},
    )
    _reattach_signature(image, [forged], image.manifest_digest)
    for digest in _platform_digests(image).values():  # an index: every platform's too
        payload = simple_signing_payload(scene.repo, digest)
        _reattach_signature(image, [replace(forged, data=payload)], digest)
    return "invalid signature"


CASES = (
    Case("signed", _signed, True, "Writing manifest to image destination"),
    Case("unsigned", _unsigned, False, "A signature was required, but no signature exists"),
    Case("other-key", _other_key, False, "cryptographic signature verification failed"),
    Case("other-repository", _other_repository, False, "is not accepted"),
    Case("manifest-changed", _manifest_changed_after_signing, False, "does not match"),
    Case("payload-rewritten", _payload_rewritten, False, "signature verification failed"),
)


def _platform_unsigned(scene: Scene, image: ImageResult, tmp: Path) -> str:
    """The index and amd64 signed, arm64 not."""
    sign_layout(image.layout_dir, SIGNING_KEY, identity=scene.repo)
    arm = _platform_digests(image)["linux/arm64"]
    index = read_index(image.layout_dir)
    tag = attachment_tag(arm, SIG_SUFFIX)
    index["manifests"] = [e for e in index["manifests"] if entry_tag(e) != tag]
    (image.layout_dir / "index.json").write_bytes(canonical_json(index))
    return ""


def _platform_changed_after_signing(scene: Scene, image: ImageResult, tmp: Path) -> str:
    """arm64's manifest changed after signing and the index rewritten to list it; the new
    index is signed by our key, arm64 keeps its old signature (naming the old digest)."""
    sign_layout(image.layout_dir, SIGNING_KEY, identity=scene.repo)
    arm = _platform_digests(image)["linux/arm64"]
    found = attached_layers(image.layout_dir, arm, SIG_SUFFIX)
    assert found is not None

    def tamper(platform: str, manifest: dict[str, object]) -> None:
        if platform == "linux/arm64":
            manifest["annotations"] = {"org.example.tampered": "yes"}

    new = reindex(image.layout_dir, tamper)
    sign_layout(image.layout_dir, SIGNING_KEY, identity=scene.repo)  # the new index, amd64 …
    _reattach_signature(image, found[1], new["linux/arm64"])  # … but arm64's old signature
    return arm  # the digest arm64's signature names


def _index_changed_after_signing(scene: Scene, image: ImageResult, tmp: Path) -> str:
    """The image index itself changed after signing (its platforms untouched and signed)."""
    return _manifest_changed_after_signing(scene, image, tmp)


def _platform_digests(image: ImageResult) -> dict[str, str]:
    """An index's manifests by platform; {} for one manifest."""
    blob = image.layout_dir / "blobs/sha256" / image.manifest_digest.removeprefix("sha256:")
    return {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in json.loads(blob.read_bytes()).get("manifests", [])
    }


# cases of the index kind only. containers/image applies the policy to each platform's manifest
# it copies, not to the list itself: an index changed after signing (its platforms intact) is
# copied; `hardflow verify` refuses it (the index signature is checked there too).
INDEX_CASES = (
    Case("platform-unsigned", _platform_unsigned, False,
         "A signature was required, but no signature exists"),
    Case("platform-changed", _platform_changed_after_signing, False, "does not match"),
    Case("index-changed", _index_changed_after_signing, True, "Writing manifest list"),
)  # fmt: skip
# the general cases that mean something else for an index: replaced by INDEX_CASES
NOT_FOR_INDEX = {"manifest-changed"}


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def scene(loaded_image: LoadedImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    for tool in ("docker-registry", "skopeo"):  # the registry, and `hardflow push`'s copier
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install docker-registry skopeo)")
    skopeo = loaded_image(SPEC)
    root = tmp_path_factory.mktemp("policy")
    registry = Registry(root)
    try:
        config = write_policy_dir(root / "config", registry.host, public_key_pem(SIGNING_KEY))
        multi = None
        if host_architecture() == "amd64":
            multi = shared_two_platforms(tmp_path_factory).image
        yield Scene(registry, f"{registry.host}/hardflow-test/verified", config, skopeo, multi)
    finally:
        registry.stop()


def _push(scene: Scene, kind: str, case: Case, tmp: Path) -> tuple[str, str]:
    """(the reference the case's image was pushed to, the detail skopeo must name)"""
    image = IMAGE_KINDS[kind](scene, tmp, f"{kind} {case.name}\n".encode(), case.name)
    detail = case.prepare(scene, image, tmp)
    ref = f"{scene.repo}:{kind}-{case.name}"
    push_layout(image.layout_dir, ref, tls_verify=False)
    return ref, detail


# ---------------------------------------------------------------------------------------------
# tests


def test_the_embedded_spec_is_locked_and_trusts_nothing_by_default() -> None:
    spec, lock_path = resolve_spec_arg(SPEC)
    lock = read_lock(lock_path)
    check_matches(lock, spec.lock_checksum(), lock_path)
    assert lock.to_json() == lock_path.read_text()
    names = {d.name for d in lock.debs}
    assert {"skopeo", "ca-certificates", "libgpgme11t64"} <= names
    assert not names & {"golang-github-containers-common", "gpg", "dpkg", "debconf", "perl-base"}
    assert spec.uid >= 10000 and spec.user != "root"
    assert spec.env["TMPDIR"] == "/tmp"
    (policy_file,) = [f for f in spec.files if f.dest == "/etc/containers/policy.json"]
    policy = json.loads(policy_file.content)
    assert policy["default"] == [{"type": "reject"}]
    assert "docker" not in policy["transports"]  # no registry image passes without a policy
    assert resources.files("hardflow.specs").joinpath(f"{SPEC}.lock.json").is_file()


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.podman
@pytest.mark.parametrize(
    ("kind", "case"),
    [(k, c) for k in sorted(IMAGE_KINDS) for c in CASES
     if not (k == "index" and c.name in NOT_FOR_INDEX)],
    ids=[f"{c.name}-{k}" for k in sorted(IMAGE_KINDS) for c in CASES
         if not (k == "index" and c.name in NOT_FOR_INDEX)],
)  # fmt: skip
def test_skopeo_enforces_the_sigstore_policy(
    scene: Scene, kind: str, case: Case, tmp_path: Path
) -> None:
    ref, detail = _push(scene, kind, case, tmp_path)
    copied = skopeo_copy(scene.skopeo, scene.config, ref, MULTI_ARCH[kind])
    print(f"{case.name}: exit {copied.returncode} in {copied.seconds:.1f} s: {copied.output}")
    if case.accepted:
        assert copied.returncode == 0, copied.output
    else:
        assert copied.returncode == 1, copied.output
        assert "Source image rejected" in copied.output
    assert case.message in copied.output
    assert detail in copied.output


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.podman
@pytest.mark.parametrize("case", INDEX_CASES, ids=[c.name for c in INDEX_CASES])
def test_skopeo_checks_every_platform_of_an_index(scene: Scene, case: Case, tmp_path: Path) -> None:
    """One part of a signed index broken: skopeo copy --all refuses a broken platform (and
    still copies amd64 alone, whose manifest is signed); `hardflow verify` refuses them all."""
    ref, detail = _push(scene, "index", case, tmp_path)
    layout = tmp_path / f"layout-{case.name}"
    with pytest.raises(VerifyError) as refused:
        verify_layout(layout, SIGNING_KEY.public_key(), identity=scene.repo)
    print(f"hardflow verify: {refused.value.message}")
    copied = skopeo_copy(scene.skopeo, scene.config, ref, MULTI_ARCH["index"])
    print(f"{case.name}: exit {copied.returncode} in {copied.seconds:.1f} s: {copied.output}")
    assert case.message in copied.output
    if case.accepted:
        assert copied.returncode == 0, copied.output
        (problem,) = refused.value.report.problems  # the index's; its platforms are intact
        assert problem.startswith("none of the 1 signature(s) of ") and "not this one" in problem
        return
    assert copied.returncode == 1, copied.output
    assert "copying image 2/2 from manifest list: Source image rejected" in copied.output  # arm64
    assert detail in copied.output
    (problem,) = refused.value.report.problems[-1:]
    assert problem.startswith("platform linux/arm64: ")
    amd = skopeo_copy(scene.skopeo, scene.config, ref, "system")
    assert amd.returncode == 0, amd.output


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.podman
def test_without_use_sigstore_attachments_skopeo_finds_no_signature(
    scene: Scene, tmp_path: Path
) -> None:
    """The registries.d file is what makes containers/image read cosign's signature tags."""
    ref, _ = _push(scene, "manifest", CASES[0], tmp_path)
    bare = tmp_path / "no-attachments"
    shutil.copytree(scene.config, bare)
    (bare / "registries.d/hardflow.yaml").unlink()
    copied = skopeo_copy(scene.skopeo, bare, ref)
    print(f"no attachments: exit {copied.returncode}: {copied.output}")
    assert copied.returncode == 1, copied.output
    assert "A signature was required, but no signature exists" in copied.output


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.podman
def test_the_image_own_policy_refuses_registry_images(scene: Scene, tmp_path: Path) -> None:
    """Without --policy, skopeo uses the image's /etc/containers/policy.json: reject."""
    ref, _ = _push(scene, "manifest", CASES[0], tmp_path)
    copied = skopeo_copy(scene.skopeo, scene.config, ref, policy=None)
    print(f"image's own policy: exit {copied.returncode}: {copied.output}")
    assert copied.returncode == 1, copied.output
    assert "rejected by policy" in copied.output


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.podman
def test_a_layer_changed_in_the_registry_fails_the_copy(scene: Scene, tmp_path: Path) -> None:
    """The signature covers the manifest, the manifest names every blob by digest: a layer
    replaced in the registry's storage after a correct push is caught while copying."""
    image = tiny_layout(tmp_path, content=b"the layer that will be changed\n", label="blob")
    sign_layout(image.layout_dir, SIGNING_KEY, identity=scene.repo)
    push_layout(image.layout_dir, f"{scene.repo}:blob-changed", tls_verify=False)
    manifest = json.loads(
        (image.layout_dir / "blobs/sha256" / image.manifest_digest[7:]).read_bytes()
    )
    (layer,) = manifest["layers"]
    stored = registry_blob(scene.registry.root / "storage", layer["digest"])
    data = bytearray(stored.read_bytes())
    data[-9] ^= 0xFF  # inside the gzip trailer's CRC: same size, other digest
    stored.write_bytes(bytes(data))
    copied = skopeo_copy(scene.skopeo, scene.config, f"{scene.repo}:blob-changed")
    print(f"blob-changed: exit {copied.returncode} in {copied.seconds:.1f} s: {copied.output}")
    assert copied.returncode != 0
    assert f"Digest did not match, expected {layer['digest']}" in copied.output
