"""HF-M-0001: a secret written in plain text into a manifest, where anyone who can read the
manifest (or ``kubectl describe`` the pod, or ``docker inspect`` the container) reads it.

Looked at: Kubernetes container ``env`` entries set by ``value:`` (init and ephemeral
containers included), Compose ``environment:`` values, and ConfigMap ``data`` and
``binaryData`` (their keys, and inside their values: ``NAME=value``, ``name: value`` and
``name = value`` lines, JSON objects and the env of an embedded pod template).

A value is a secret when its name says so (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``,
``*CREDENTIAL*``, ``*_KEY``: ``AIRFLOW__CORE__FERNET_KEY``, ``AIRFLOW__API_AUTH__JWT_SECRET``,
OIDC ``CLIENT_SECRET``…; for ``AIRFLOW__SECTION__OPTION`` only the option counts), or when the
value has a known secret format (the image audit's patterns: cloud and chat tokens, private
keys, ``scheme://user:password@`` as in an Airflow connection). References are fine:
``valueFrom.secretKeyRef``, names ending in ``_FILE``, ``_CMD``, ``_PATH`` or ``_DIR``, an
Airflow ``*_SECRET`` option naming a secrets-backend path, Compose ``secrets:``. So are empty
values and obvious placeholders (``${VAR}``, ``$(VAR)``, ``{{ … }}``, ``<password>``,
``changeme``). So is a setting that names a field of an OAuth token response rather than
holding a token: FAB's ``OAUTH_PROVIDERS`` entry ``"token_key": "access_token"`` (exactly that
name with one of those field names, see :data:`TOKEN_FIELD_SETTINGS`). Findings name the variable
or key, never the value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from hardflow.audit.image_secrets import ENV_POINTER_SUFFIXES, secret_formats
from hardflow.audit.manifest_loader import (
    ConfigMap,
    Container,
    Manifests,
    as_list,
    as_map,
    compose_environment,
    containers,
    plain_env,
)
from hardflow.audit.model import Item

SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE_KEY")
# names that hold something about a secret, not the secret itself
METADATA_SUFFIXES = (
    "_NAME", "_NAMES", "_URL", "_URI", "_ENDPOINT", "_TTL", "_EXPIRY", "_EXPIRATION",
    "_EXPIRATION_TIME", "_LENGTH", "_ALGORITHM", "_ENABLED", "_TYPE", "_FORMAT", "_REF",
)  # fmt: skip
_AIRFLOW_OPTION = re.compile(r"AIRFLOW__[A-Z0-9_]+?__(?P<option>[A-Z0-9_]+)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_PLACEHOLDER = re.compile(
    r"\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\}|<[^<>]*>|%\([^)]*\)s"
    r"|(?i:change[-_ ]?me|replace[-_ ]?me|placeholder|redacted|todo|none|null|example)"
    r"|x{3,}|X{3,}|\*{3,}|\.{3,}"
)
_BOOLEAN = frozenset({"true", "false", "yes", "no", "on", "off"})
_BACKEND_KEY = re.compile(r"[A-Za-z0-9_./-]{1,256}")
# one assignment per line: NAME=value, export NAME=value, name: value, name = value, "n": v
_LINE = re.compile(
    r"^\s*(?:export\s+|-\s+)?[\"']?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)[\"']?\s*[:=]\s*"
    r"(?P<value>.*)$"
)
_BY_NAME = "a secret by its name"
# Settings whose value is the name of a field of an OAuth token response, not a token: FAB's
# OAUTH_PROVIDERS "token_key" (the response field kept as the session's token; FAB's default is
# "oauth_token") and "token_secret" (OAuth 1). Only these exact names with these exact values.
TOKEN_FIELD_SETTINGS: Mapping[str, frozenset[str]] = MappingProxyType({
    "TOKEN_KEY": frozenset({"access_token", "id_token", "oauth_token"}),
    "TOKEN_SECRET": frozenset({"oauth_token_secret"}),
})  # fmt: skip
MAX_SCAN = 1 << 20  # ConfigMap values are at most 1 MiB; a longer one is scanned in part
MAX_DEPTH = 4  # nesting followed into JSON values


def canonical_name(name: str) -> str:
    """``fernetKey`` / ``db-password`` / ``client.secret`` → ``FERNET_KEY`` / ``DB_PASSWORD``
    / ``CLIENT_SECRET``."""
    return re.sub(r"[^A-Z0-9]+", "_", _CAMEL.sub("_", name).upper()).strip("_")


def _option(name: str) -> str:
    """The canonical name that counts: for ``AIRFLOW__SECTION__OPTION``, the option only."""
    match = _AIRFLOW_OPTION.fullmatch(name.strip().upper())
    return canonical_name(match.group("option") if match else name)


def secret_name(name: str) -> bool:
    """Whether a variable or key of this name holds a secret (its value unseen)."""
    option = _option(name)
    if not option or option.endswith(ENV_POINTER_SUFFIXES + METADATA_SUFFIXES):
        return False
    return any(w in option for w in SECRET_WORDS) or option == "KEY" or option.endswith("_KEY")


def is_placeholder(value: str) -> bool:
    """Empty, a boolean, or an obvious stand-in: ``${VAR}``, ``$(VAR)``, ``{{ .Values.x }}``,
    ``<password>``, ``changeme``, ``xxx``, ``***``."""
    text = value.strip().strip("\"'")
    return not text or text.lower() in _BOOLEAN or bool(_PLACEHOLDER.fullmatch(text))


def is_reference(name: str, value: str) -> bool:
    """An Airflow ``*_SECRET`` option whose value names a secrets-backend entry
    (``AIRFLOW__CORE__FERNET_KEY_SECRET=airflow/fernet``); ``AIRFLOW__API_AUTH__JWT_SECRET`` is
    the secret itself: its option, ``JWT_SECRET``, is not another option plus ``_SECRET``."""
    option = _option(name)
    stem = option.removesuffix("_SECRET")
    return (
        option.endswith("_SECRET")
        and "_" in stem
        and canonical_name(name).startswith("AIRFLOW_")
        and bool(_BACKEND_KEY.fullmatch(value.strip()))
    )


def _url_password(found: str) -> str:
    """The password of ``scheme://user:password@`` (as the image audit's pattern matched)."""
    return found.rsplit("@", 1)[0].split("://", 1)[-1].partition(":")[2]


def value_reasons(value: str) -> list[str]:
    """The known secret formats ``value`` holds (placeholders in a URL's password aside)."""
    out = []
    for what, found in secret_formats(value):
        if what == "credentials in a URL" and is_placeholder(_url_password(found)):
            continue
        out.append(what)
    return list(dict.fromkeys(out))


def is_token_field_name(name: str, value: str) -> bool:
    """``token_key = "access_token"`` (FAB's OAuth provider entry): the value names a field of
    the provider's token response; it is no token (:data:`TOKEN_FIELD_SETTINGS`)."""
    return value.strip() in TOKEN_FIELD_SETTINGS.get(canonical_name(name), frozenset())


def assignment_reasons(name: str, value: str) -> list[str]:
    """Why ``name`` set to ``value`` is a secret in plain text ([] when it is not)."""
    if is_placeholder(value):
        return []
    reasons = value_reasons(value)
    if secret_name(name) and not is_reference(name, value) and not is_token_field_name(name, value):
        reasons.insert(0, _BY_NAME)
    return reasons


# ---------------------------------------------------------------------------------------------
# inside a ConfigMap value


def _literal(raw: str) -> str | None:
    """The literal a line assigns: a quoted string or a bare word; None for an expression
    (``os.environ["X"]``, ``get_secret()``), a list or a block."""
    text = raw.rstrip(",;").strip()
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        return text[1:-1]
    if not text or any(c in text for c in "()[]{}| \t"):
        return None
    return text


def _json_reasons(doc: Any, depth: int = 0) -> Iterator[tuple[str, str]]:
    if depth > MAX_DEPTH:
        return
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(value, str):
                for why in assignment_reasons(str(key), value):
                    yield str(key), why
            else:
                yield from _json_reasons(value, depth + 1)
    elif isinstance(doc, list):
        for value in doc:
            yield from _json_reasons(value, depth + 1)


def _pod_template_env(text: str) -> Iterator[tuple[str, str]]:
    """The plain env of a pod (template) embedded in a ConfigMap value."""
    if "kind:" not in text or "env:" not in text:
        return
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    spec = as_map(as_map(doc).get("spec"))
    if as_map(doc).get("kind") != "Pod":
        return
    for key in ("initContainers", "containers"):
        for n, c in enumerate(as_list(spec.get(key))):
            container = Container(key, str(as_map(c).get("name") or f"{key}-{n}"), as_map(c))
            for name, value in plain_env(container):
                for why in assignment_reasons(name, value):
                    yield f"{container.name} env {name}", why


def text_reasons(text: str) -> list[tuple[str, str]]:
    """(where, why) for each secret inside a ConfigMap value."""
    found: list[tuple[str, str]] = [("", why) for why in value_reasons(text)]
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError):
            doc = None
        found += [(f"field {k}", why) for k, why in _json_reasons(doc)]
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name, literal = match.group("name"), _literal(match.group("value").strip())
        if literal is not None and _BY_NAME in assignment_reasons(name, literal):
            found.append((f"sets {name}", _BY_NAME))
    found += list(_pod_template_env(text))
    return list(dict.fromkeys(found))


def _decoded(value: object) -> str:
    try:
        raw = base64.b64decode(str(value)[: MAX_SCAN * 2], validate=False)
    except (binascii.Error, ValueError):
        return ""
    return raw[:MAX_SCAN].decode("utf-8", "replace")


def _config_map_items(cm: ConfigMap) -> list[Item]:
    items = []
    for field, values, decode in (("data", cm.data, False), ("binaryData", cm.binary_data, True)):
        for key, raw in sorted(values.items()):
            text = _decoded(raw) if decode else str(raw if raw is not None else "")[:MAX_SCAN]
            reasons = [("", why) for why in assignment_reasons(key, text) if "\n" not in text]
            if "\n" in text and secret_name(key) and not is_placeholder(text):
                reasons.append(("", _BY_NAME))
            reasons += text_reasons(text)
            for where, why in dict.fromkeys(reasons):
                items.append(cm.item(f"{field}.{key}{': ' + where if where else ''}: {why}"))
    return items


# ---------------------------------------------------------------------------------------------
# the check


def _env_items(pairs: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    for name, value in pairs.items():
        for why in assignment_reasons(name, value):
            yield name, why


def plain_secrets(m: Manifests) -> list[Item]:
    """HF-M-0001: secrets in plain env values (Kubernetes, Compose) and in ConfigMaps."""
    items: list[Item] = []
    for pod, c in containers(m):
        for name, why in _env_items(dict(plain_env(c))):
            items.append(pod.item(f"env {name}: {why}", c))
    for s in m.services:
        env = {k: v for k, v in compose_environment(s) if v is not None}
        for name, why in _env_items(env):
            items.append(s.item(f"environment {name}: {why}"))
    for cm in m.config_maps:
        items += _config_map_items(cm)
    return items
