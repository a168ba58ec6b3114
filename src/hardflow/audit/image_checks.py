"""Image checks: CIS Docker Benchmark §4, Dockle's checkpoints, NIST SP 800-190 §4.1 and the
reproducibility hygiene of hardflow's design (§5).

Every check is a pure function of an :class:`ImageData` (config, history, per-layer facts and
the merged file system). Several catalogues ask the same question under different IDs (CIS
4.1, Dockle CIS-DI-0001 and NIST 4.1.2 all ask "is the default user root?"); each ID gets its
own finding, computed from one shared helper, so users can filter or accept by the ID their
auditor uses.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from hardflow.audit.image_source import FileEntry, ImageData, is_setid
from hardflow.audit.model import Check, Finding, Item, Level, judge, passed, skipped

CIS = "CIS Docker Benchmark v1.6 §4 (images)"
DOCKLE = "Dockle checkpoints"
NIST = "NIST SP 800-190 §4.1 (image countermeasures)"
REPRO = "Reproducibility (hardflow DESIGN §5)"


def _c(id_: str, level: Level, group: str, title: str, fix: str, *refs: str) -> Check:
    return Check(id_, level, title, fix, group, tuple(refs))


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

CHECKS: dict[str, Check] = {
    c.id: c
    for c in (
        _c("4.1", W, CIS, "Ensure that a user for the container has been created", FIX_USER,
           "CIS-DI-0001", "NIST-4.1.2-user"),
        _c("4.3", W, CIS, "Ensure that unnecessary packages are not installed", FIX_MIN,
           "CIS-DI-0003", "NIST-4.1.2-minimal"),
        _c("4.6", W, CIS, "Ensure that HEALTHCHECK instructions have been added to container "
           "images", FIX_HEALTH, "CIS-DI-0006"),
        _c("4.7", W, CIS, "Ensure update instructions are not used alone in Dockerfiles",
           FIX_UPDATE, "CIS-DI-0007"),
        _c("4.8", W, CIS, "Ensure setuid and setgid permissions are removed", FIX_SETID,
           "CIS-DI-0008"),
        _c("4.9", W, CIS, "Ensure that COPY is used instead of ADD in Dockerfiles", FIX_ADD,
           "CIS-DI-0009"),
        _c("4.10", F, CIS, "Ensure secrets are not stored in Dockerfiles", FIX_SECRET,
           "CIS-DI-0010", "NIST-4.1.4"),
        _c("4.12", W, CIS, "Ensure only verified packages are installed (image signature "
           "verified)", FIX_SIGN, "CIS-DI-0005", "NIST-4.1.5"),
        # Dockle
        _c("CIS-DI-0001", W, DOCKLE, "Create a user for the container", FIX_USER, "4.1"),
        _c("CIS-DI-0002", I, DOCKLE, "Use trusted base images for containers", FIX_SIGN),
        _c("CIS-DI-0003", W, DOCKLE, "Do not install unnecessary packages in the container",
           FIX_MIN, "4.3"),
        _c("CIS-DI-0004", I, DOCKLE, "Scan and rebuild the images to include security patches",
           "Scan the image's SBOM with a vulnerability scanner and rebuild on new fixes."),
        _c("CIS-DI-0005", I, DOCKLE, "Enable content trust (verify the image signature)",
           FIX_SIGN, "4.12"),
        _c("CIS-DI-0006", I, DOCKLE, "Add HEALTHCHECK instruction to the container image",
           FIX_HEALTH, "4.6"),
        _c("CIS-DI-0007", F, DOCKLE, "Do not use update instructions alone in the Dockerfile",
           FIX_UPDATE, "4.7"),
        _c("CIS-DI-0008", I, DOCKLE, "Confirm safety of setuid/setgid files", FIX_SETID, "4.8"),
        _c("CIS-DI-0009", F, DOCKLE, "Use COPY instead of ADD in Dockerfile", FIX_ADD, "4.9"),
        _c("CIS-DI-0010", F, DOCKLE, "Do not store credentials in environment variables or "
           "files", FIX_SECRET, "4.10"),
        _c("DKL-DI-0001", F, DOCKLE, "Avoid sudo command",
           "Remove sudo from the image and from build steps; set USER instead."),
        _c("DKL-DI-0002", F, DOCKLE, "Avoid sensitive directory mounting",
           "Do not declare VOLUMEs on system directories (/dev, /proc, /sys, /etc…)."),
        _c("DKL-DI-0003", W, DOCKLE, "Avoid apt-get/apk/dist-upgrade",
           "Pin package versions and rebuild from an updated base instead of upgrading."),
        _c("DKL-DI-0004", F, DOCKLE, "Use apk add with --no-cache",
           "Use `apk add --no-cache` and leave no /var/cache/apk contents."),
        _c("DKL-DI-0005", F, DOCKLE, "Clear apt-get caches",
           "Run `rm -rf /var/lib/apt/lists/*` in the same RUN as `apt-get install`."),
        _c("DKL-DI-0006", W, DOCKLE, "Avoid latest tag",
           "Tag images with a version (and deploy them by digest)."),
        _c("DKL-LI-0001", F, DOCKLE, "Avoid empty password",
           "Lock every account (`*` or `!` in /etc/shadow); an image needs no passwords."),
        _c("DKL-LI-0002", F, DOCKLE, "Be unique UID/GROUPs",
           "Give every account its own UID and every group its own GID and name."),
        _c("DKL-LI-0003", I, DOCKLE, "Only put necessary files",
           "Remove caches, VCS directories, editor files and build files from the image."),
        # NIST SP 800-190
        _c("NIST-4.1.1", I, NIST, "Image vulnerabilities: packages visible to scanners",
           "Keep package metadata (dpkg status, *.dist-info) in the image and scan its SBOM "
           "with a vulnerability scanner on every build."),
        _c("NIST-4.1.2-user", W, NIST, "Image configuration defects: runs as a non-root user",
           FIX_USER, "4.1"),
        _c("NIST-4.1.2-ssh", W, NIST, "Image configuration defects: no SSH daemon, port 22 "
           "not exposed", "Remove sshd; use `exec` for debugging, never an SSH server."),
        _c("NIST-4.1.2-minimal", W, NIST, "Image configuration defects: minimal contents",
           FIX_MIN, "4.3"),
        _c("NIST-4.1.3", I, NIST, "Embedded malware",
           "Scan the image with an anti-malware tool in the pipeline."),
        _c("NIST-4.1.4", F, NIST, "Embedded clear text secrets (env, history, labels, files)",
           FIX_SECRET, "4.10"),
        _c("NIST-4.1.5", W, NIST, "Use of untrusted images (signature verified)", FIX_SIGN,
           "4.12"),
        # reproducibility
        _c("HF-R-0001", I, REPRO, "Layer entry mtimes are clamped to the image's created time",
           "Build with SOURCE_DATE_EPOCH and clamp every mtime to it."),
        _c("HF-R-0002", I, REPRO, "Layer entries have numeric owners only, no atime/ctime",
           "Write tar headers without user/group names and without PAX time records."),
        _c("HF-R-0003", I, REPRO, "Gzip headers carry no timestamp and no file name",
           "Compress layers with mtime 0 and no FNAME (e.g. `gzip -n`)."),
        _c("HF-R-0004", I, REPRO, "Layer entries are in byte order",
           "Write tar entries sorted by path."),
    )
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# policy data

BIN_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin")

# category -> fnmatch patterns of executable names in BIN_DIRS
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "package manager": (
        "apt", "apt-get", "apt-cache", "apt-config", "apt-key", "aptitude", "dpkg", "dpkg-deb",
        "dpkg-query", "rpm", "yum", "dnf", "dnf-3", "microdnf", "zypper", "apk", "pacman",
        "pip", "pip3", "pip3.*", "easy_install", "easy_install-*", "conda", "mamba",
        "micromamba", "pipx", "poetry", "npm", "yarn", "gem",
    ),
    "compiler": (
        "gcc", "gcc-[0-9]*", "*-linux-gnu-gcc*", "g++", "g++-[0-9]*", "*-linux-gnu-g++*", "cc",
        "c++", "c89", "c99", "cpp", "cpp-[0-9]*", "clang", "clang++", "clang-[0-9]*", "tcc",
        "gfortran", "rustc", "cargo", "go", "gccgo", "javac", "as", "ld", "ld.bfd", "ld.gold",
        "make", "cmake",
    ),
    "shell": (
        "sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "csh",
        "tcsh", "fish", "yash", "posh", "busybox",
    ),
    "privilege tool": ("sudo", "sudoedit", "su", "doas", "pkexec", "run0"),
    "remote access": (
        "sshd", "ssh", "scp", "sftp", "dropbear", "telnet", "telnetd", "in.telnetd", "ftp",
        "rsh", "rlogin",
    ),
    "network tool": ("curl", "wget", "nc", "netcat", "ncat", "socat"),
}  # fmt: skip
FORBIDDEN_PATHS: dict[str, tuple[str, ...]] = {
    "package manager": (
        "usr/lib/python3*/site-packages/pip", "usr/lib/python3*/dist-packages/pip",
        "usr/local/lib/python3*/site-packages/pip", "usr/local/lib/python3*/dist-packages/pip",
        "usr/lib/python3*/ensurepip/_bundled/*.whl",
        "usr/local/lib/python3*/ensurepip/_bundled/*.whl",
    ),
    "remote access": ("etc/ssh/sshd_config",),
}  # fmt: skip
SSHD = ("usr/sbin/sshd", "sbin/sshd", "usr/bin/sshd", "usr/sbin/dropbear", "etc/ssh/sshd_config")

# Dockle's suspicious file names and extensions, plus a few well-known credential files
SECRET_NAMES = frozenset(
    {
        "credentials.json", "credential.json", "credentials", "credential", "password.txt",
        "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "secret_token.rb", "carrierwave.rb",
        "omniauth.rb", "settings.py", "database.yml", "credentials.xml", ".env",
        ".netrc", ".pgpass", ".git-credentials", ".pypirc", ".npmrc", ".dockercfg",
    }
)  # fmt: skip
SECRET_EXTENSIONS = frozenset(
    {
        ".secret", ".ovpn", ".private_key", ".cscfg", ".rdp", ".mdf", ".sdf", ".bek", ".tpm",
        ".fve", ".jks", ".psafe3", ".agilekeychain", ".keychain", ".pcap", ".gnucache",
    }
)  # fmt: skip
SECRET_GLOBS = ("etc/ssh/ssh_host_*_key", "*/.docker/config.json")
# names that are code, not configuration, when they sit inside an installed library
_CODE_NAMES = frozenset({"settings.py", "secret_token.rb", "carrierwave.rb", "omniauth.rb"})
_LIBRARY_DIRS = ("/site-packages/", "/dist-packages/", "/node_modules/", "/gems/", "/vendor/")

ENV_SECRET_WORDS = ("PASSWD", "PASSWORD", "SECRET", "KEY", "ACCESS", "TOKEN", "CREDENTIAL")
ENV_ACCEPTED = frozenset({"GPG_KEY", "GPG_KEYS"})
ENV_POINTER_SUFFIXES = ("_FILE", "_CMD", "_PATH", "_DIR")
_VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("private key block", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("credentials in a URL", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^@\s/]+@")),
)
_HISTORY_ASSIGN = re.compile(
    r"(?i)\b([A-Z0-9_]*(?:PASSWD|PASSWORD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY)"
    r"[A-Z0-9_]*)\s*=\s*(\"[^\"]*\"|'[^']*'|\S+)"
)
_HISTORY_FLAG = re.compile(r"(?i)--(?:password|passwd|token|secret)(?:=|\s+)(\S+)")

SENSITIVE_VOLUMES = frozenset(
    {"/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/run/docker.sock",
     "/var/run/docker.sock"}
)  # fmt: skip
JUNK_DIRS = frozenset({".cache", "tmp", ".git", ".vscode", ".idea", ".npm"})
JUNK_FILES = frozenset({"Dockerfile", "docker-compose.yml", ".vimrc"})
_JUNK_SKIP = ("node_modules/", "vendor/")
PACKAGE_DBS = (
    "var/lib/dpkg/status", "var/lib/dpkg/status.d", "lib/apk/db/installed", "var/lib/rpm",
    "usr/lib/sysimage/rpm",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class SignatureResult:
    """What the caller learned about the image signature (verification happens outside)."""

    status: str  # "verified", "failed", "unchecked"
    note: str


NO_SIGNATURE = SignatureResult("unchecked", "no --key given: the signature was not verified")


# ---------------------------------------------------------------------------------------------
# history parsing (token rules in the spirit of Dockle's)


def history_command(created_by: str) -> str:
    """Strip the builder's wrapper: ``/bin/sh -c #(nop) ADD …`` → ``ADD …``."""
    text = created_by.strip()
    for prefix in ("/bin/sh -c ", "|"):
        if text.startswith(prefix):
            text = text[len(prefix) :].lstrip()
            if prefix == "|":  # buildkit: "|2 ARG=1 ARG=2 /bin/sh -c …"
                text = re.sub(r"^\d+\s+(?:\S+=\S*\s+)*", "", text)
                text = text.removeprefix("/bin/sh -c ").lstrip()
    text = text.removeprefix("#(nop)").strip()
    return re.sub(r"\s*# buildkit$", "", text)


def command_segments(created_by: str) -> list[list[str]]:
    """A history entry split into simple commands, each a list of tokens."""
    text = history_command(created_by)
    segments = []
    for part in re.split(r"&&|\|\||;|\||\n", text):
        tokens = [t for t in part.strip().split() if t and t != "\\"]
        if tokens:
            segments.append(tokens)
    return segments


def _has(tokens: Sequence[str], *words: str) -> bool:
    return all(w in tokens for w in words)


def _apt(tokens: Sequence[str]) -> bool:
    return "apt-get" in tokens or "apt" in tokens


def update_alone(segments: Sequence[Sequence[str]]) -> bool:
    updates = any(_apt(s) and "update" in s for s in segments)
    installs = any(_apt(s) and "install" in s for s in segments)
    apk_update = any(_has(s, "apk", "update") for s in segments)
    apk_add = any(_has(s, "apk", "add") for s in segments)
    return (updates and not installs) or (apk_update and not apk_add)


def apt_lists_kept(segments: Sequence[Sequence[str]]) -> bool:
    installs = any(_apt(s) and "install" in s for s in segments)
    cleans = any(
        "rm" in s and any(t.rstrip(";").startswith("/var/lib/apt/lists") for t in s)
        for s in segments
    )
    return installs and not cleans


def apk_cached(segments: Sequence[Sequence[str]]) -> bool:
    return any(_has(s, "apk", "add") and "--no-cache" not in s for s in segments)


def uses_add(index: int, created_by: str) -> bool:
    if index == 0:  # the base file system itself is always ADDed
        return False
    segments = command_segments(created_by)
    return bool(segments) and segments[0][0] == "ADD"


def upgrades(segments: Sequence[Sequence[str]]) -> bool:
    managers = ("apt-get", "apt", "apk", "yum", "dnf", "microdnf")
    verbs = ("upgrade", "dist-upgrade", "full-upgrade")
    return any(any(m in s for m in managers) and any(v in s for v in verbs) for s in segments)


def uses_sudo(segments: Sequence[Sequence[str]]) -> bool:
    return any("sudo" in s for s in segments)


def secrets_in_text(text: str) -> list[str]:
    """Why ``text`` (a history entry or a label value) looks like it holds a secret."""
    found = []
    for match in _HISTORY_ASSIGN.finditer(text):
        value = match.group(2).strip("\"'")
        if value and not value.startswith("$") and not value.startswith("/"):
            found.append(f"assigns {match.group(1)}")
    for match in _HISTORY_FLAG.finditer(text):
        if not match.group(1).startswith("$"):
            found.append("passes a secret on the command line")
    for what, pattern in _VALUE_PATTERNS:
        if pattern.search(text):
            found.append(what)
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------
# helpers over the image


def env_pairs(image: ImageData) -> list[tuple[str, str]]:
    env = image.runtime.get("Env") or []
    out = []
    for item in env if isinstance(env, list) else []:
        name, _, value = str(item).partition("=")
        out.append((name, value))
    return out


def _passwd_rows(image: ImageData, path: str) -> list[list[str]] | None:
    data = image.contents.get(path)
    if data is None:
        return None
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def root_user_items(image: ImageData) -> list[Item]:
    """Why the default user is root ([] when it is not)."""
    user = str(image.runtime.get("User") or "").strip()
    if not user:
        return [Item("config.User", "not set: the container runs as root")]
    name = user.split(":", 1)[0]
    if name.isdigit():
        return [Item("config.User", f"{user}: UID 0 is root")] if int(name) == 0 else []
    if name == "root":
        return [Item("config.User", f"{user}: root")]
    rows = _passwd_rows(image, "etc/passwd") or []
    for row in rows:
        if row[0] == name and len(row) > 2:
            if row[2] == "0":
                return [Item("config.User", f"{user}: UID 0 in /etc/passwd")]
            return []
    return [Item("config.User", f"{user}: not in /etc/passwd, the engine cannot resolve it")]


def _in_bin_dir(path: str) -> str | None:
    directory, base = posixpath.split(path)
    return base if directory in BIN_DIRS else None


def forbidden_items(image: ImageData) -> list[Item]:
    items = []
    for path, entry in sorted(image.files.items()):
        if entry.kind == "dir" and not any(
            fnmatch.fnmatchcase(path, g) for globs in FORBIDDEN_PATHS.values() for g in globs
        ):
            continue
        base = _in_bin_dir(path)
        if base is not None and entry.kind != "dir":
            for category, patterns in FORBIDDEN.items():
                if any(fnmatch.fnmatchcase(base, p) for p in patterns):
                    detail = category
                    if entry.kind == "symlink":
                        detail += f", symlink to {entry.linkname}"
                    items.append(Item(path, detail))
                    break
            continue
        for category, globs in FORBIDDEN_PATHS.items():
            if any(fnmatch.fnmatchcase(path, g) for g in globs):
                items.append(Item(path, category))
                break
    return items


def _secret_name(path: str) -> str | None:
    base = posixpath.basename(path)
    wrapped = "/" + path + "/"
    if base in SECRET_NAMES:
        if base in _CODE_NAMES and any(d in wrapped for d in _LIBRARY_DIRS):
            return None
        return "credential file name"
    ext = posixpath.splitext(base)[1]
    if ext and ext in SECRET_EXTENSIONS:
        return f"credential file extension {ext}"
    if any(fnmatch.fnmatchcase(path, g) for g in SECRET_GLOBS):
        return "credential file"
    return None


def secret_file_items(image: ImageData) -> list[Item]:
    """Secret-looking files in any layer; deleted ones are still in their layer's blob."""
    items: list[Item] = []
    seen: set[str] = set()
    for layer in image.layers:
        for path in layer.paths:
            why = _secret_name(path)
            if why is None or path in seen:
                continue
            entry = image.files.get(path)
            if entry is not None and entry.kind == "dir":
                continue
            seen.add(path)
            if entry is None:
                why += f"; deleted later but still in layer {layer.index}"
            items.append(Item(path, why))
        for hit in layer.secrets:
            if hit.path in seen:
                continue
            seen.add(hit.path)
            why = f"contains {hit.what}"
            current = image.files.get(hit.path)
            if current is None or current.layer != hit.layer:
                why += f"; overwritten or deleted later but still in layer {hit.layer}"
            items.append(Item(hit.path, why))
    return items


def env_secret_items(image: ImageData) -> list[Item]:
    items = []
    for name, value in env_pairs(image):
        upper = name.upper()
        if not value:
            continue
        reasons = (
            []
            if name in ENV_ACCEPTED or upper.endswith(ENV_POINTER_SUFFIXES)
            else ["suspicious name" for w in ENV_SECRET_WORDS if w in upper][:1]
        )
        reasons += [what for what, pattern in _VALUE_PATTERNS if pattern.search(value)]
        if reasons:
            items.append(Item(f"env {name}", ", ".join(reasons)))
    return items


def history_secret_items(image: ImageData) -> list[Item]:
    items = []
    for index, created_by in enumerate(image.history):
        for why in secrets_in_text(created_by):
            items.append(Item(f"history[{index}]", why))
    return items


def label_secret_items(image: ImageData) -> list[Item]:
    labels = image.runtime.get("Labels") or {}
    items = []
    for key, value in sorted(labels.items()) if isinstance(labels, dict) else []:
        text = str(value)
        upper = str(key).upper().replace(".", "_").replace("-", "_")
        reasons = []
        if text and any(w in upper for w in ("PASSWORD", "PASSWD", "SECRET", "TOKEN")):
            reasons.append("suspicious name")
        reasons += [what for what, pattern in _VALUE_PATTERNS if pattern.search(text)]
        if reasons:
            items.append(Item(f"label {key}", ", ".join(reasons)))
    return items


def all_secret_items(image: ImageData) -> list[Item]:
    return (
        env_secret_items(image)
        + history_secret_items(image)
        + label_secret_items(image)
        + secret_file_items(image)
    )


def setid_items(image: ImageData) -> list[Item]:
    items = []
    for path, entry in sorted(image.files.items()):
        if is_setid(entry):
            bits = []
            if entry.mode & 0o4000:
                bits.append("setuid")
            if entry.mode & 0o2000:
                bits.append("setgid")
            items.append(Item(path, f"{'+'.join(bits)}, mode {entry.mode:04o}"))
    return items


def _history_items(
    image: ImageData, rule: Callable[[list[list[str]]], bool], what: str
) -> list[Item]:
    return [
        Item(f"history[{i}]", f"{what}: {history_command(text)[:120]}")
        for i, text in enumerate(image.history)
        if rule(command_segments(text))
    ]


def _files_under(image: ImageData, prefix: str, skip: Iterable[str] = ()) -> list[FileEntry]:
    skipped_names = set(skip)
    return [
        e
        for p, e in sorted(image.files.items())
        if p.startswith(prefix) and e.kind != "dir" and posixpath.basename(p) not in skipped_names
    ]


def apt_list_items(image: ImageData) -> list[Item]:
    items = _history_items(image, apt_lists_kept, "apt-get install without clearing lists")
    lists = _files_under(image, "var/lib/apt/lists/", skip=("lock",))
    archives = [
        e for e in _files_under(image, "var/cache/apt/") if e.path.endswith((".deb", ".bin"))
    ]
    for entry in lists[:10] + archives[:10]:
        items.append(Item(entry.path, "apt cache left in the image"))
    if len(lists) > 10:
        items.append(Item("var/lib/apt/lists/", f"{len(lists) - 10} more files"))
    return items


def apk_cache_items(image: ImageData) -> list[Item]:
    items = _history_items(image, apk_cached, "apk add without --no-cache")
    for entry in _files_under(image, "var/cache/apk/")[:10]:
        items.append(Item(entry.path, "apk cache left in the image"))
    return items


def sudo_items(image: ImageData) -> list[Item]:
    items = _history_items(image, uses_sudo, "build step runs sudo")
    for path, entry in sorted(image.files.items()):
        if _in_bin_dir(path) in ("sudo", "sudoedit") and entry.kind != "dir":
            items.append(Item(path, "sudo is installed"))
    return items


def volume_items(image: ImageData) -> list[Item]:
    volumes = image.runtime.get("Volumes") or {}
    names = volumes.keys() if isinstance(volumes, dict) else []
    return [
        Item(f"VOLUME {v}", "sensitive host directory")
        for v in sorted(names)
        if posixpath.normpath(str(v)) in SENSITIVE_VOLUMES
    ]


def empty_password_items(image: ImageData) -> list[Item] | None:
    found = False
    items = []
    for path in ("etc/shadow", "etc/master.passwd", "etc/passwd"):
        rows = _passwd_rows(image, path)
        if rows is None:
            continue
        found = True
        for row in rows:
            if len(row) > 1 and row[1] == "":
                items.append(Item(f"/{path}: {row[0]}", "empty password field"))
    return items if found else None


def duplicate_items(image: ImageData) -> list[Item] | None:
    found = False
    items = []
    for path, what in (("etc/passwd", "UID"), ("etc/group", "GID")):
        rows = _passwd_rows(image, path)
        if rows is None:
            continue
        found = True
        by_id: dict[str, str] = {}
        names: set[str] = set()
        for row in rows:
            if len(row) < 3:
                items.append(Item(f"/{path}: {row[0]}", "malformed line"))
                continue
            name, ident = row[0], row[2]
            if ident in by_id:
                clash = f"{what} {ident} also used by {by_id[ident]}"
                items.append(Item(f"/{path}: {name}", clash))
            else:
                by_id[ident] = name
            if name in names:
                items.append(Item(f"/{path}: {name}", "name listed twice"))
            names.add(name)
    return items if found else None


def junk_items(image: ImageData) -> list[Item]:
    items = []
    reported: set[str] = set()
    for path, entry in sorted(image.files.items()):
        if entry.kind == "dir" or any(s in path for s in _JUNK_SKIP):
            continue
        parts = path.split("/")
        for depth, part in enumerate(parts[:-1]):
            if part in JUNK_DIRS:
                directory = "/".join(parts[: depth + 1])
                if directory not in reported:
                    reported.add(directory)
                    items.append(Item(directory + "/", "cache, temporary or VCS directory"))
                break
        if parts[-1] in JUNK_FILES:
            items.append(Item(path, "build or editor file"))
    return items


def latest_items(image: ImageData) -> list[Item] | None:
    ref = image.reference
    if not ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if "@" in last:
        return []
    if ":" not in last or last.rsplit(":", 1)[1] == "latest":
        return [Item(ref, "tag is latest (or missing)")]
    return []


def ssh_items(image: ImageData) -> list[Item]:
    items = [Item(p, "SSH server") for p in SSHD if p in image.files]
    ports = image.runtime.get("ExposedPorts") or {}
    for port in sorted(ports) if isinstance(ports, dict) else []:
        if str(port).split("/", 1)[0] == "22":
            items.append(Item(f"EXPOSE {port}", "SSH port"))
    return items


def healthcheck_items(image: ImageData) -> list[Item]:
    health = image.runtime.get("Healthcheck")
    if not isinstance(health, dict) or not health.get("Test"):
        return [Item("config.Healthcheck", "not set")]
    test = health.get("Test") or []
    if isinstance(test, list) and test and str(test[0]).upper() == "NONE":
        return [Item("config.Healthcheck", "disabled (NONE)")]
    return []


# ---------------------------------------------------------------------------------------------
# reproducibility


def mtime_items(image: ImageData) -> tuple[list[Item], str]:
    if image.created is None:
        return [], "the config has no created time"
    items = [
        Item(f"layer {layer.index}: {path}", "mtime later than the config's created time")
        for layer in image.layers
        for path in layer.late_mtimes[:3]
    ]
    distinct = {m for layer in image.layers if layer.entries for m in layer.mtimes}
    return items, f"mtimes span {len(distinct)} distinct value(s) at the layer bounds"


def owner_items(image: ImageData) -> list[Item]:
    items = []
    for layer in image.layers:
        for path in layer.named_owners[:3]:
            items.append(Item(f"layer {layer.index}: {path}", "user/group name in the header"))
        for path in layer.time_records[:3]:
            items.append(Item(f"layer {layer.index}: {path}", "PAX atime/ctime record"))
    return items


def gzip_items(image: ImageData) -> list[Item] | None:
    gz = [layer for layer in image.layers if layer.compression == "gzip"]
    if not gz:
        return None
    items = []
    for layer in gz:
        if layer.gzip_mtime:
            items.append(Item(f"layer {layer.index}", f"gzip mtime {layer.gzip_mtime}"))
        if layer.gzip_name:
            items.append(Item(f"layer {layer.index}", "gzip header carries a file name"))
    return items


def order_items(image: ImageData) -> list[Item]:
    return [
        Item(f"layer {layer.index}: {path}", "out of byte order")
        for layer in image.layers
        for path in layer.unsorted[:3]
    ]


# ---------------------------------------------------------------------------------------------
# the run


def _signature_finding(check: Check, signature: SignatureResult) -> Finding:
    if signature.status == "verified":
        return passed(check, signature.note)
    if signature.status == "failed":
        return judge(check, [Item("signature", signature.note)])
    return skipped(check, signature.note)


def _maybe(check: Check, items: list[Item] | None, why_skip: str, note: str = "") -> Finding:
    return skipped(check, why_skip) if items is None else judge(check, items, note)


def run_image_checks(image: ImageData, signature: SignatureResult = NO_SIGNATURE) -> list[Finding]:
    """Every image check, in catalogue order."""
    c = CHECKS
    root = root_user_items(image)
    minimal = forbidden_items(image)
    health = healthcheck_items(image)
    update = _history_items(image, update_alone, "package index update without install")
    setid = setid_items(image)
    adds = [
        Item(f"history[{i}]", history_command(t)[:120])
        for i, t in enumerate(image.history)
        if uses_add(i, t)
    ]
    secrets = all_secret_items(image)
    dkl_secrets = env_secret_items(image) + secret_file_items(image)
    no_passwd = "no /etc/shadow, /etc/master.passwd or /etc/passwd in the image"
    no_accounts = "no /etc/passwd or /etc/group in the image"
    has_pkgdb = any(p in image.files for p in PACKAGE_DBS) or any(
        p.endswith(".dist-info") for p in image.files
    )
    mtimes, mtime_note = mtime_items(image)
    findings = [
        judge(c["4.1"], root),
        judge(c["4.3"], minimal),
        judge(c["4.6"], health),
        judge(c["4.7"], update),
        judge(c["4.8"], setid),
        judge(c["4.9"], adds),
        judge(c["4.10"], secrets),
        _signature_finding(c["4.12"], signature),
        judge(c["CIS-DI-0001"], root),
        _signature_finding(c["CIS-DI-0002"], signature),
        judge(c["CIS-DI-0003"], minimal),
        skipped(c["CIS-DI-0004"], "needs a vulnerability database: scan the SBOM"),
        _signature_finding(c["CIS-DI-0005"], signature),
        judge(c["CIS-DI-0006"], health),
        judge(c["CIS-DI-0007"], update),
        judge(c["CIS-DI-0008"], setid),
        judge(c["CIS-DI-0009"], adds),
        judge(c["CIS-DI-0010"], dkl_secrets),
        judge(c["DKL-DI-0001"], sudo_items(image)),
        judge(c["DKL-DI-0002"], volume_items(image)),
        judge(c["DKL-DI-0003"], _history_items(image, upgrades, "upgrade in a build step")),
        judge(c["DKL-DI-0004"], apk_cache_items(image)),
        judge(c["DKL-DI-0005"], apt_list_items(image)),
        _maybe(c["DKL-DI-0006"], latest_items(image), "no image reference to check"),
        _maybe(c["DKL-LI-0001"], empty_password_items(image), no_passwd),
        _maybe(c["DKL-LI-0002"], duplicate_items(image), no_accounts),
        judge(c["DKL-LI-0003"], junk_items(image)),
        judge(
            c["NIST-4.1.1"],
            [] if has_pkgdb else [Item("package metadata", "no package database found")],
            "CVE matching itself needs a scanner: scan the image's SBOM",
        ),
        judge(c["NIST-4.1.2-user"], root),
        judge(c["NIST-4.1.2-ssh"], ssh_items(image)),
        judge(c["NIST-4.1.2-minimal"], minimal),
        skipped(c["NIST-4.1.3"], "needs an anti-malware scanner"),
        judge(c["NIST-4.1.4"], secrets),
        _signature_finding(c["NIST-4.1.5"], signature),
        judge(c["HF-R-0001"], mtimes, mtime_note),
        judge(c["HF-R-0002"], owner_items(image)),
        _maybe(c["HF-R-0003"], gzip_items(image), "no gzip-compressed layer to check"),
        judge(c["HF-R-0004"], order_items(image)),
    ]
    return findings


def image_facts(image: ImageData) -> list[tuple[str, str]]:
    runtime: Mapping[str, object] = image.runtime
    return [
        ("source", image.source),
        ("format", image.kind),
        ("reference", image.reference or "(none)"),
        ("user", str(runtime.get("User") or "(root)")),
        ("layers", str(len(image.layers))),
        ("files", str(len(image.files))),
    ]


__all__ = [
    "CHECKS",
    "FORBIDDEN",
    "NO_SIGNATURE",
    "SignatureResult",
    "command_segments",
    "history_command",
    "image_facts",
    "run_image_checks",
    "secrets_in_text",
]
