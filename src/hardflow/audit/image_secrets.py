"""Secrets baked into an image: in env, history, labels and files of any layer.

Dockle's suspicious file names and extensions, a few well-known credential files, private-key
blocks the reader found inside files, and value patterns of common tokens. A file a later
layer deletes is still in its own layer's blob, so every layer is looked at, not only the
merged file system.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re

from hardflow.audit.image_source import ImageData
from hardflow.audit.model import Item

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


def secret_formats(text: str) -> list[tuple[str, str]]:
    """The known secret formats in ``text`` (tokens, key blocks, credentials in a URL): what
    each is and the text that matched (for callers that look closer, never to print)."""
    return [
        (what, match.group(0))
        for what, pattern in _VALUE_PATTERNS
        for match in pattern.finditer(text)
    ]


def env_pairs(image: ImageData) -> list[tuple[str, str]]:
    env = image.runtime.get("Env") or []
    out = []
    for item in env if isinstance(env, list) else []:
        name, _, value = str(item).partition("=")
        out.append((name, value))
    return out


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
    """Everything CIS 4.10 and NIST 4.1.4 ask about: env, history, labels and files."""
    return (
        env_secret_items(image)
        + history_secret_items(image)
        + label_secret_items(image)
        + secret_file_items(image)
    )


def env_and_file_secret_items(image: ImageData) -> list[Item]:
    """What Dockle's CIS-DI-0010 asks about: env and files."""
    return env_secret_items(image) + secret_file_items(image)
