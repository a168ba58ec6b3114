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

Ready for multi-platform images (issue 15): :data:`IMAGE_KINDS` names the kinds of image each
case is run on. Today hardflow builds one manifest per image; once ``build --platform`` writes
an index, add an ``"index"`` kind (the builder of a signed multi-platform layout) and the cases
run on it with ``--multi-arch all`` (:func:`skopeo_copy` takes it from :data:`MULTI_ARCH`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
from test_supply_push import Registry
from test_supply_sign import tiny_layout

from hardflow.lock.model import check_matches, read_lock
from hardflow.oci.attach import (
    MEDIA_SIMPLESIGNING,
    SIG_SUFFIX,
    SIGNATURE_ANNOTATION,
    AttachedLayer,
    attach,
    attached_layers,
    merge_by_digest,
    read_index,
)
from hardflow.oci.writer import ImageResult, canonical_json, sha256_digest
from hardflow.spec import resolve_spec_arg
from hardflow.supply.push import push_layout
from hardflow.supply.sign import (
    generate_key,
    public_key_pem,
    sign_layout,
    simple_signing_payload,
)
from helpers.loaded_images import LoadedImage
from helpers.podman import HARDENED

SPEC = "skopeo"
CONFIG_IN_CONTAINER = "/policy"  # policy.json, registries.d/ and cosign.pub, mounted read-only

# the kinds of image every case runs on: name -> builder of an unsigned layout
# (tmp, content, label) -> image; an "index" kind joins once hardflow builds multi-platform images
ImageBuilder = Callable[[Path, bytes, str], ImageResult]
IMAGE_KINDS: dict[str, ImageBuilder] = {
    "manifest": lambda tmp, content, label: tiny_layout(tmp, content=content, label=label),
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
    attach(image.layout_dir, digest, SIG_SUFFIX, layers, merge_by_digest)


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


def registry_blob(storage: Path, digest: str) -> Path:
    hexpart = digest.removeprefix("sha256:")
    return storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


@dataclass(frozen=True)
class Scene:
    registry: Registry
    repo: str
    config: Path
    skopeo: str


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
    return "invalid signature"


CASES = (
    Case("signed", _signed, True, "Writing manifest to image destination"),
    Case("unsigned", _unsigned, False, "A signature was required, but no signature exists"),
    Case("other-key", _other_key, False, "cryptographic signature verification failed"),
    Case("other-repository", _other_repository, False, "is not accepted"),
    Case("manifest-changed", _manifest_changed_after_signing, False, "does not match"),
    Case("payload-rewritten", _payload_rewritten, False, "signature verification failed"),
)


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
        yield Scene(registry, f"{registry.host}/hardflow-test/verified", config, skopeo)
    finally:
        registry.stop()


def _push(scene: Scene, kind: str, case: Case, tmp: Path) -> tuple[str, str]:
    """(the reference the case's image was pushed to, the detail skopeo must name)"""
    image = IMAGE_KINDS[kind](tmp, f"{kind} {case.name}\n".encode(), case.name)
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
@pytest.mark.parametrize("kind", sorted(IMAGE_KINDS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
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
