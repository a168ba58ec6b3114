"""What an image holds and declares: its merged file system, its accounts, its runtime config.

Check functions for CIS Docker Benchmark §4, Dockle and NIST SP 800-190 §4.1 rules, each a
pure function of an :class:`ImageData` returning the offending items (or an
:class:`Outcome` when the question cannot be decided for this image). The policy data they
apply — forbidden executables, junk directories, sensitive volumes — sits beside them.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable

from hardflow.audit.image_history import apk_cached, apt_lists_kept, history_items, uses_sudo
from hardflow.audit.image_source import FileEntry, ImageData, is_setid
from hardflow.audit.model import Item, Outcome

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


def _passwd_rows(image: ImageData, path: str) -> list[list[str]] | None:
    data = image.contents.get(path)
    if data is None:
        return None
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _in_bin_dir(path: str) -> str | None:
    directory, base = posixpath.split(path)
    return base if directory in BIN_DIRS else None


def _files_under(image: ImageData, prefix: str, skip: Iterable[str] = ()) -> list[FileEntry]:
    skipped_names = set(skip)
    return [
        e
        for p, e in sorted(image.files.items())
        if p.startswith(prefix) and e.kind != "dir" and posixpath.basename(p) not in skipped_names
    ]


# ---------------------------------------------------------------------------------------------
# the runtime config


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


def healthcheck_items(image: ImageData) -> list[Item]:
    health = image.runtime.get("Healthcheck")
    if not isinstance(health, dict) or not health.get("Test"):
        return [Item("config.Healthcheck", "not set")]
    test = health.get("Test") or []
    if isinstance(test, list) and test and str(test[0]).upper() == "NONE":
        return [Item("config.Healthcheck", "disabled (NONE)")]
    return []


def volume_items(image: ImageData) -> list[Item]:
    volumes = image.runtime.get("Volumes") or {}
    names = volumes.keys() if isinstance(volumes, dict) else []
    return [
        Item(f"VOLUME {v}", "sensitive host directory")
        for v in sorted(names)
        if posixpath.normpath(str(v)) in SENSITIVE_VOLUMES
    ]


def latest_items(image: ImageData) -> Outcome:
    ref = image.reference
    if not ref:
        return Outcome(skip="no image reference to check")
    last = ref.rsplit("/", 1)[-1]
    if "@" in last:
        return Outcome()
    if ":" not in last or last.rsplit(":", 1)[1] == "latest":
        return Outcome((Item(ref, "tag is latest (or missing)"),))
    return Outcome()


def ssh_items(image: ImageData) -> list[Item]:
    items = [Item(p, "SSH server") for p in SSHD if p in image.files]
    ports = image.runtime.get("ExposedPorts") or {}
    for port in sorted(ports) if isinstance(ports, dict) else []:
        if str(port).split("/", 1)[0] == "22":
            items.append(Item(f"EXPOSE {port}", "SSH port"))
    return items


# ---------------------------------------------------------------------------------------------
# the merged file system


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


def apt_list_items(image: ImageData) -> list[Item]:
    items = history_items(image, apt_lists_kept, "apt-get install without clearing lists")
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
    items = history_items(image, apk_cached, "apk add without --no-cache")
    for entry in _files_under(image, "var/cache/apk/")[:10]:
        items.append(Item(entry.path, "apk cache left in the image"))
    return items


def sudo_items(image: ImageData) -> list[Item]:
    items = history_items(image, uses_sudo, "build step runs sudo")
    for path, entry in sorted(image.files.items()):
        if _in_bin_dir(path) in ("sudo", "sudoedit") and entry.kind != "dir":
            items.append(Item(path, "sudo is installed"))
    return items


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


def package_metadata_items(image: ImageData) -> Outcome:
    """Whether scanners can see the packages (dpkg/apk/rpm databases or *.dist-info)."""
    has_db = any(p in image.files for p in PACKAGE_DBS) or any(
        p.endswith(".dist-info") for p in image.files
    )
    missing = () if has_db else (Item("package metadata", "no package database found"),)
    return Outcome(missing, note="CVE matching itself needs a scanner: scan the image's SBOM")


# ---------------------------------------------------------------------------------------------
# accounts


def empty_password_items(image: ImageData) -> Outcome:
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
    if not found:
        return Outcome(skip="no /etc/shadow, /etc/master.passwd or /etc/passwd in the image")
    return Outcome(tuple(items))


def duplicate_items(image: ImageData) -> Outcome:
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
    if not found:
        return Outcome(skip="no /etc/passwd or /etc/group in the image")
    return Outcome(tuple(items))
