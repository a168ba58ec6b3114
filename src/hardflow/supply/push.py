"""Copy an image from an OCI layout to a registry, with its cosign signatures and attestations.

skopeo does the copying (registry authentication, TLS, blob mounting): once for the image,
then once per attachment, ``oci:DIR:sha256-<hex>.sig`` → ``docker://REPO:sha256-<hex>.sig``,
which is where cosign, podman and skopeo look for them. Every copy runs with
``--preserve-digests``: a signature names the manifest digest, so a copy that would rewrite
the manifest (another format, other compression) must fail rather than orphan the signature;
the digest the registry reports back is compared with the layout's.

A multi-platform image (the layout names an image index) is copied with ``--all``: every
platform's blobs and manifest, then the index; then the signatures and attestations of the
index and of each platform's manifest (``cosign sign --recursive`` stores them the same way),
which is what a ``sigstoreSigned`` policy needs to accept ``skopeo copy --all``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hardflow.errors import EngineError, TrustError
from hardflow.oci.attach import MEDIA_SIMPLESIGNING, SIG_SUFFIX, ImageEntry
from hardflow.oci.writer import split_reference
from hardflow.supply.verify import (
    Target,
    attachment,
    image_entry,
    index_entries,
    index_platforms,
    parse_simple_signing,
    repository_of,
)

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Copy:
    source: str  # oci:DIR:TAG
    destination: str  # docker://REPO:TAG
    digest: str  # the manifest digest the registry must end up with
    what: str  # "image", "signatures", "attestations", "signatures (linux/arm64)", …
    all_platforms: bool = False  # an image index: copy every platform (skopeo --all)


@dataclass(frozen=True)
class PushResult:
    reference: str  # REPO:TAG
    manifest_digest: str
    copies: tuple[Copy, ...]
    warnings: tuple[str, ...]
    platforms: tuple[tuple[str, str], ...] = ()  # an image index: (platform, manifest digest)

    def to_json(self) -> dict[str, object]:
        platforms = {"platforms": dict(self.platforms)} if self.platforms else {}
        return {
            "reference": self.reference,
            "manifest_digest": self.manifest_digest,
            "pinned": f"{repository_of(self.reference)}@{self.manifest_digest}",
            "copied": [
                {
                    "what": c.what,
                    "destination": c.destination.removeprefix("docker://"),
                    "digest": c.digest,
                }
                for c in self.copies
            ],
            "warnings": list(self.warnings),
            **platforms,
        }


def destination_reference(destination: str, layout_tag: str | None) -> str:
    """``REPO[:TAG]`` → ``REPO:TAG`` (the layout's tag when none is given)."""
    dest = destination.removeprefix("docker://")
    if "@" in dest:
        raise TrustError(f"push destination {destination!r}: give a tag, not a digest")
    repo = repository_of(dest)
    if repo != dest:
        return dest
    if not layout_tag:
        raise TrustError(f"push destination {destination!r} has no tag and the layout names none")
    return f"{repo}:{layout_tag}"


def _targets(layout_dir: Path, entry: ImageEntry) -> tuple[Target, ...]:
    platforms = index_platforms(layout_dir, entry)
    return (Target(entry.digest, entry.size, is_index=platforms is not None), *(platforms or ()))


def plan_push(layout_dir: Path, destination: str, tag: str | None = None) -> list[Copy]:
    """The copies that put the image and everything attached to it at ``destination``: an
    image index with every platform, then the attachments of the index and of each
    platform's manifest."""
    layout_dir = layout_dir.absolute()
    if ":" in str(layout_dir):
        raise TrustError(f"{layout_dir}: skopeo's oci: transport cannot name a path with ':'")
    entry = image_entry(layout_dir, tag)
    if entry.tag is None:
        raise TrustError(f"{layout_dir}/index.json: the image has no ref.name tag to copy by")
    ref = destination_reference(destination, entry.tag)
    split_reference(ref.lower())  # a well-formed name[:tag]
    repo = repository_of(ref)
    targets = _targets(layout_dir, entry)
    copies = [Copy(f"oci:{layout_dir}:{entry.tag}", f"docker://{ref}", entry.digest, "image",
                   all_platforms=targets[0].is_index)]  # fmt: skip
    listed = index_entries(layout_dir)
    for target in targets:
        prefix = target.digest.replace(":", "-") + "."
        for item in listed:
            if item.tag is None or not item.tag.startswith(prefix):
                continue
            suffix = item.tag.removeprefix(prefix)
            what = {"sig": "signatures", "att": "attestations", "sbom": "sbom"}.get(suffix, suffix)
            if target.platform is not None:
                what += f" ({target.platform})"
            copies.append(Copy(f"oci:{layout_dir}:{item.tag}", f"docker://{repo}:{item.tag}",
                               item.digest, what))  # fmt: skip
    return copies


def identity_warnings(layout_dir: Path, reference: str, tag: str | None = None) -> list[str]:
    """Warn when the image (an index: or one of its platforms) is not signed, or when no
    signature names the repository the image is pushed to."""
    entry = image_entry(layout_dir, tag)
    warnings: list[str] = []
    identities: set[str] = set()
    for target in _targets(layout_dir, entry):
        sig = attachment(layout_dir, target.digest, SIG_SUFFIX)
        if sig is None:
            what = f"the image {target.digest}" if target.platform is None else (
                f"the {target.platform} manifest {target.digest}"
            )  # fmt: skip
            warnings.append(
                f"{what} is not signed; policies that require sigstoreSigned "
                "will refuse it (run `hardflow sign` first, or push with --sign-key)"
            )
            continue
        for layer in sig[1]:
            if layer.media_type != MEDIA_SIMPLESIGNING:
                continue
            try:
                identities.add(parse_simple_signing(layer.data).identity)
            except TrustError:
                continue  # not ours to judge here: `hardflow verify` reports it
    if warnings:
        return warnings
    repo = repository_of(reference)
    if repo in identities or reference in identities:
        return []
    return [
        f"no signature names {repo} (they name {', '.join(sorted(identities)) or 'nothing'}); "
        "a sigstoreSigned policy with matchRepository refuses that — sign again with "
        f"--identity {repo}, or use exactRepository/remapIdentity in the policy"
    ]


def skopeo_copy_argv(
    skopeo: str, copy: Copy, digest_file: Path, tls_verify: bool, authfile: Path | None
) -> list[str]:
    argv = [skopeo, "copy", "--quiet", "--preserve-digests", "--digestfile", str(digest_file)]
    if copy.all_platforms:
        argv.append("--all")
    if not tls_verify:
        argv.append("--dest-tls-verify=false")
    if authfile is not None:
        argv += ["--dest-authfile", str(authfile)]
    return [*argv, copy.source, copy.destination]


def _default_runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def push_layout(
    layout_dir: Path,
    destination: str,
    *,
    tag: str | None = None,
    tls_verify: bool = True,
    authfile: Path | None = None,
    run: Runner = _default_runner,
    on_progress: Callable[[str], None] | None = None,
) -> PushResult:
    """Copy the image and its attachments; raise :class:`EngineError` when skopeo fails."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise EngineError(
            "skopeo is not installed; `hardflow push` copies images with it",
            hint="apt-get install skopeo",
        )
    copies = plan_push(layout_dir, destination, tag)
    reference = copies[0].destination.removeprefix("docker://")
    warnings = identity_warnings(layout_dir.absolute(), reference, tag)
    with tempfile.TemporaryDirectory(prefix="hardflow-push-") as tmp:
        digest_file = Path(tmp) / "digest"
        for copy in copies:
            if on_progress is not None:
                on_progress(f"copying {copy.what} to {copy.destination.removeprefix('docker://')}")
            done = run(skopeo_copy_argv(skopeo, copy, digest_file, tls_verify, authfile))
            if done.returncode != 0:
                raise EngineError(
                    f"skopeo could not copy the {copy.what} ({copy.digest}) to "
                    f"{copy.destination}: {done.stderr.strip() or done.stdout.strip()}",
                    hint="for a plain-http registry on loopback pass --insecure"
                    if "http response" in done.stderr or "HTTPS" in done.stderr
                    else None,
                )
            pushed = digest_file.read_text().strip() if digest_file.exists() else ""
            if pushed != copy.digest:
                raise TrustError(
                    f"the registry stored the {copy.what} as {pushed or 'an unknown digest'}, "
                    f"not {copy.digest}; its signature would not match"
                )
            digest_file.unlink()
    entry = image_entry(layout_dir.absolute(), tag)
    platforms = tuple(
        (str(t.platform), t.digest) for t in _targets(layout_dir.absolute(), entry)[1:]
    )
    return PushResult(reference, copies[0].digest, tuple(copies), tuple(warnings), platforms)
