"""The image rules table: CIS Docker Benchmark §4, Dockle's checkpoints, NIST SP 800-190 §4.1,
hardflow's reproducibility hygiene and layer-member safety.

One row per rule, in report order. Several catalogues ask the same question under different
IDs (CIS 4.1, Dockle CIS-DI-0001 and NIST 4.1.2 all ask "is the default user root?"); each ID
gets its own row and finding, computed by one shared check function, so users can filter or
accept by the ID their auditor uses. Adding a rule is a check function (in ``image_contents``,
``image_history``, ``image_secrets`` or ``image_layers``) and a row here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from hardflow.audit import image_contents as fs
from hardflow.audit import image_history as hist
from hardflow.audit import image_layers as layers
from hardflow.audit import image_secrets as sec
from hardflow.audit.image_source import ImageData
from hardflow.audit.model import Item, Level, Outcome, Rule, Verdict, always_skip


@dataclass(frozen=True)
class SignatureResult:
    """What the caller learned about the image signature (verification happens outside)."""

    status: str  # "verified", "failed", "unchecked"
    note: str


NO_SIGNATURE = SignatureResult("unchecked", "no --key given: the signature was not verified")


@dataclass(frozen=True)
class ImageAudit:
    """What the image rules look at: the image and its signature verification result."""

    image: ImageData
    signature: SignatureResult = NO_SIGNATURE


@functools.cache
def _image(check: Callable[[ImageData], Verdict]) -> Callable[[ImageAudit], Verdict]:
    """A check of the image alone as a rule's check function; cached, so that rows naming the
    same check share one function and it runs once per audit."""

    def evaluate(audit: ImageAudit) -> Verdict:
        return check(audit.image)

    return evaluate


def signature_verdict(audit: ImageAudit) -> Outcome:
    signature = audit.signature
    if signature.status == "verified":
        return Outcome(note=signature.note)
    if signature.status == "failed":
        return Outcome((Item("signature", signature.note),))
    return Outcome(skip=signature.note)


CIS = "CIS Docker Benchmark v1.6 §4 (images)"
DOCKLE = "Dockle checkpoints"
NIST = "NIST SP 800-190 §4.1 (image countermeasures)"
REPRO = "Reproducibility (hardflow DESIGN §5)"
MEMBERS = "Layer members (safe to unpack)"

W, F, I = Level.WARN, Level.FATAL, Level.INFO  # noqa: E741

FIX_USER = "Set a non-root USER (e.g. `USER 50000:0`) and make the image work under it."
FIX_MIN = (
    "Remove package managers, compilers, shells, privilege tools and remote-access daemons "
    "from the final image; build in a separate stage or from scratch."
)
FIX_HEALTH = "Add a HEALTHCHECK (exec form) that probes the service itself."
FIX_UPDATE = "Run `apt-get update` in the same RUN as `apt-get install`, or build without apt."
FIX_SETID = "Clear the bits (`chmod u-s,g-s FILE`) or remove the files; nothing should need them."
FIX_ADD = "Use COPY; fetch and verify remote files in a build stage."
FIX_SECRET = (
    "Never bake secrets into an image: pass them at run time (env from a secret store, mounted "
    "files, *_FILE variables), remove secret files in the layer that created them (or better, "
    "never copy them in), and rebuild; rotate any secret that was published."
)
FIX_SIGN = "Sign the image (hardflow sign / cosign) and verify it with --key before deploying."
FIX_ESCAPE = (
    "Do not unpack or run this image: a layer that reaches outside its root was made to attack "
    "the host that extracts it. Rebuild from a tree you trust, with relative member names "
    "without `..` and link targets that stay inside the root."
)
FIX_SPECIAL = (
    "Remove device nodes and FIFOs from the layers: the runtime creates /dev, and a named pipe "
    "belongs on a tmpfs or volume, made at run time."
)

# check functions several rows share
_root = _image(fs.root_user_items)
_minimal = _image(fs.forbidden_items)
_health = _image(fs.healthcheck_items)
_update = _image(hist.update_alone_items)
_setid = _image(fs.setid_items)
_adds = _image(hist.add_items)
_secrets = _image(sec.all_secret_items)
_signature = signature_verdict

IMAGE_RULES: tuple[Rule[ImageAudit], ...] = (
    Rule("4.1", W, CIS, "Ensure that a user for the container has been created", FIX_USER,
         _root, ("CIS-DI-0001", "NIST-4.1.2-user")),
    Rule("4.3", W, CIS, "Ensure that unnecessary packages are not installed", FIX_MIN,
         _minimal, ("CIS-DI-0003", "NIST-4.1.2-minimal")),
    Rule("4.6", W, CIS, "Ensure that HEALTHCHECK instructions have been added to container "
         "images", FIX_HEALTH, _health, ("CIS-DI-0006",)),
    Rule("4.7", W, CIS, "Ensure update instructions are not used alone in Dockerfiles",
         FIX_UPDATE, _update, ("CIS-DI-0007",)),
    Rule("4.8", W, CIS, "Ensure setuid and setgid permissions are removed", FIX_SETID, _setid,
         ("CIS-DI-0008",)),
    Rule("4.9", W, CIS, "Ensure that COPY is used instead of ADD in Dockerfiles", FIX_ADD, _adds,
         ("CIS-DI-0009",)),
    Rule("4.10", F, CIS, "Ensure secrets are not stored in Dockerfiles", FIX_SECRET, _secrets,
         ("CIS-DI-0010", "NIST-4.1.4")),
    Rule("4.12", W, CIS, "Ensure only verified packages are installed (image signature "
         "verified)", FIX_SIGN, _signature, ("CIS-DI-0005", "NIST-4.1.5")),
    # Dockle
    Rule("CIS-DI-0001", W, DOCKLE, "Create a user for the container", FIX_USER, _root,
         ("4.1",)),
    Rule("CIS-DI-0002", I, DOCKLE, "Use trusted base images for containers", FIX_SIGN,
         _signature),
    Rule("CIS-DI-0003", W, DOCKLE, "Do not install unnecessary packages in the container",
         FIX_MIN, _minimal, ("4.3",)),
    Rule("CIS-DI-0004", I, DOCKLE, "Scan and rebuild the images to include security patches",
         "Scan the image's SBOM with a vulnerability scanner and rebuild on new fixes.",
         always_skip("needs a vulnerability database: scan the SBOM")),
    Rule("CIS-DI-0005", I, DOCKLE, "Enable content trust (verify the image signature)",
         FIX_SIGN, _signature, ("4.12",)),
    Rule("CIS-DI-0006", I, DOCKLE, "Add HEALTHCHECK instruction to the container image",
         FIX_HEALTH, _health, ("4.6",)),
    Rule("CIS-DI-0007", F, DOCKLE, "Do not use update instructions alone in the Dockerfile",
         FIX_UPDATE, _update, ("4.7",)),
    Rule("CIS-DI-0008", I, DOCKLE, "Confirm safety of setuid/setgid files", FIX_SETID, _setid,
         ("4.8",)),
    Rule("CIS-DI-0009", F, DOCKLE, "Use COPY instead of ADD in Dockerfile", FIX_ADD, _adds,
         ("4.9",)),
    Rule("CIS-DI-0010", F, DOCKLE, "Do not store credentials in environment variables or "
         "files", FIX_SECRET, _image(sec.env_and_file_secret_items), ("4.10",)),
    Rule("DKL-DI-0001", F, DOCKLE, "Avoid sudo command",
         "Remove sudo from the image and from build steps; set USER instead.",
         _image(fs.sudo_items)),
    Rule("DKL-DI-0002", F, DOCKLE, "Avoid sensitive directory mounting",
         "Do not declare VOLUMEs on system directories (/dev, /proc, /sys, /etc…).",
         _image(fs.volume_items)),
    Rule("DKL-DI-0003", W, DOCKLE, "Avoid apt-get/apk/dist-upgrade",
         "Pin package versions and rebuild from an updated base instead of upgrading.",
         _image(hist.upgrade_items)),
    Rule("DKL-DI-0004", F, DOCKLE, "Use apk add with --no-cache",
         "Use `apk add --no-cache` and leave no /var/cache/apk contents.",
         _image(fs.apk_cache_items)),
    Rule("DKL-DI-0005", F, DOCKLE, "Clear apt-get caches",
         "Run `rm -rf /var/lib/apt/lists/*` in the same RUN as `apt-get install`.",
         _image(fs.apt_list_items)),
    Rule("DKL-DI-0006", W, DOCKLE, "Avoid latest tag",
         "Tag images with a version (and deploy them by digest).", _image(fs.latest_items)),
    Rule("DKL-LI-0001", F, DOCKLE, "Avoid empty password",
         "Lock every account (`*` or `!` in /etc/shadow); an image needs no passwords.",
         _image(fs.empty_password_items)),
    Rule("DKL-LI-0002", F, DOCKLE, "Be unique UID/GROUPs",
         "Give every account its own UID and every group its own GID and name.",
         _image(fs.duplicate_items)),
    Rule("DKL-LI-0003", I, DOCKLE, "Only put necessary files",
         "Remove caches, VCS directories, editor files and build files from the image.",
         _image(fs.junk_items)),
    # NIST SP 800-190
    Rule("NIST-4.1.1", I, NIST, "Image vulnerabilities: packages visible to scanners",
         "Keep package metadata (dpkg status, *.dist-info) in the image and scan its SBOM "
         "with a vulnerability scanner on every build.", _image(fs.package_metadata_items)),
    Rule("NIST-4.1.2-user", W, NIST, "Image configuration defects: runs as a non-root user",
         FIX_USER, _root, ("4.1",)),
    Rule("NIST-4.1.2-ssh", W, NIST, "Image configuration defects: no SSH daemon, port 22 "
         "not exposed", "Remove sshd; use `exec` for debugging, never an SSH server.",
         _image(fs.ssh_items)),
    Rule("NIST-4.1.2-minimal", W, NIST, "Image configuration defects: minimal contents",
         FIX_MIN, _minimal, ("4.3",)),
    Rule("NIST-4.1.3", I, NIST, "Embedded malware",
         "Scan the image with an anti-malware tool in the pipeline.",
         always_skip("needs an anti-malware scanner")),
    Rule("NIST-4.1.4", F, NIST, "Embedded clear text secrets (env, history, labels, files)",
         FIX_SECRET, _secrets, ("4.10",)),
    Rule("NIST-4.1.5", W, NIST, "Use of untrusted images (signature verified)", FIX_SIGN,
         _signature, ("4.12",)),
    # reproducibility
    Rule("HF-R-0001", I, REPRO, "Layer entry mtimes are clamped to the image's created time",
         "Build with SOURCE_DATE_EPOCH and clamp every mtime to it.",
         _image(layers.mtime_items)),
    Rule("HF-R-0002", I, REPRO, "Layer entries have numeric owners only, no atime/ctime",
         "Write tar headers without user/group names and without PAX time records.",
         _image(layers.owner_items)),
    Rule("HF-R-0003", I, REPRO, "Gzip headers carry no timestamp and no file name",
         "Compress layers with mtime 0 and no FNAME (e.g. `gzip -n`).",
         _image(layers.gzip_items)),
    Rule("HF-R-0004", I, REPRO, "Layer entries are in byte order",
         "Write tar entries sorted by path.", _image(layers.order_items)),
    # members unsafe to unpack (filled by the image reader, see hardflow.oci.members)
    Rule("HF-L-0001", F, MEMBERS, "Layer members stay inside the image root (no `..`, "
         "absolute names or links that lead out)", FIX_ESCAPE,
         _image(layers.escaping_member_items), ("NIST-4.1.3", "NIST-4.1.5")),
    Rule("HF-L-0002", W, MEMBERS, "Layers carry no device nodes or FIFOs", FIX_SPECIAL,
         _image(layers.special_member_items), ("DKL-LI-0003", "NIST-4.1.2-minimal")),
)  # fmt: skip
