"""A small deterministic YAML emitter for the documents hardflow renders.

Only what compose files and Kubernetes manifests need: mappings (insertion order kept), lists,
strings, integers, floats, booleans and null. Every string is written double-quoted with JSON
escapes, a subset of YAML's double-quoted style, so no value can change type when read back
("no", "on", "1.10" and "08" stay strings), and the output parses the same with any YAML 1.1
or 1.2 reader. Keys that are plain identifiers are written bare for readability.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Tagged:
    """A value written with a YAML tag, e.g. compose's ``!override`` (replace, do not merge)."""

    tag: str
    value: object

    def __post_init__(self) -> None:
        if not re.fullmatch(r"![A-Za-z][A-Za-z0-9_-]*", self.tag):
            raise ValueError(f"YAML tag {self.tag!r}: expected !name")


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
# words a YAML 1.1 reader would turn into booleans or null even as keys
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})
Scalar = str | int | float | bool | None


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"mapping keys must be strings, found {type(key).__name__}")
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _RESERVED:
        return key
    return json.dumps(key)


def _scalar(value: Scalar) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write a {type(value).__name__} as YAML")


def _is_empty_collection(value: object) -> str | None:
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, list | tuple) and not value:
        return "[]"
    return None


def _lines(value: object, indent: int) -> Iterable[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, Tagged):  # the tag, then the value as a flow (JSON) collection
                yield f"{pad}{_key(k)}: {v.tag} {_flow(v.value)}"
                continue
            empty = _is_empty_collection(v)
            if empty is not None:
                yield f"{pad}{_key(k)}: {empty}"
            elif isinstance(v, Mapping):
                yield f"{pad}{_key(k)}:"
                yield from _lines(v, indent + 2)
            elif isinstance(v, list | tuple):
                yield f"{pad}{_key(k)}:"
                yield from _lines(v, indent)
            else:
                yield f"{pad}{_key(k)}: {_scalar(v)}"
    elif isinstance(value, list | tuple):
        for item in value:
            empty = _is_empty_collection(item)
            if empty is not None:
                yield f"{pad}- {empty}"
            elif isinstance(item, Mapping | list | tuple):
                inner = list(_lines(item, indent + 2))
                yield f"{pad}- {inner[0].lstrip()}"
                yield from inner[1:]
            else:
                yield f"{pad}- {_scalar(item)}"
    else:
        yield f"{pad}{_scalar(value)}"  # type: ignore[arg-type]


def _flow(value: object) -> str:
    """A value in flow style: JSON, a subset of YAML (its strings stay double-quoted)."""
    if isinstance(value, Mapping | list | tuple | str | int | float | bool) or value is None:
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write a {type(value).__name__} as YAML")


def dump(document: Mapping[str, object], header: str = "") -> str:
    """One YAML document (block style), with an optional ``#`` comment header."""
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + "\n".join(_lines(document, 0)) + "\n"


def dump_all(documents: Sequence[Mapping[str, object]], header: str = "") -> str:
    """Several documents separated by ``---``."""
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + "".join("---\n" + dump(doc) for doc in documents)
