"""Typed access to the tables of a TOML spec.

Each value is checked where it is read, and a failure names the file, the dotted key, what was
expected and what was found; the keys a table has but nobody read are rejected (as apko does).
A schema library would give generic messages for the same amount of code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hardflow.errors import SpecError


class Reader:
    """Typed access to one TOML table that remembers which keys were consumed."""

    def __init__(self, origin: str, table: Mapping[str, Any], prefix: str = "") -> None:
        self.origin = origin
        self.table = table
        self.prefix = prefix
        self.seen: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _fail(self, key: str, expected: str, found: object) -> SpecError:
        return SpecError(
            f"{self.origin}: key '{self._key(key)}': expected {expected}, found {describe(found)}"
        )

    def _get(self, key: str, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.table:
            if required:
                raise SpecError(f"{self.origin}: missing required key '{self._key(key)}'")
            return None
        return self.table[key]

    def string(self, key: str, default: str | None = None, pattern: str | None = None) -> str:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        if "\0" in value:
            raise self._fail(key, "a string without NUL characters", value)
        if pattern and not re.fullmatch(pattern, value):
            raise self._fail(key, f"a string matching {pattern}", value)
        return value

    def integer(self, key: str, default: int, low: int = 0, high: int = 2**32 - 1) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        if not low <= value <= high:
            raise self._fail(key, f"an integer from {low} to {high}", value)
        return value

    def strings(
        self,
        key: str,
        default: tuple[str, ...] = (),
        required: bool = False,
        pattern: str | None = None,
        what: str | None = None,
    ) -> tuple[str, ...]:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "an array of strings", value)
        for i, item in enumerate(value):
            if "\0" in item or (pattern and not re.fullmatch(pattern, item)):
                raise SpecError(
                    f"{self.origin}: key '{self._key(key)}[{i}]': expected "
                    f"{what or 'a string without NUL characters'}, found {describe(item)}"
                )
        return tuple(value)

    def integers(self, key: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536 for v in value
        ):
            raise self._fail(key, "an array of port numbers (1-65535)", value)
        return tuple(value)

    def mapping(self, key: str, key_pattern: str = r"[^\0]+") -> dict[str, str]:
        value = self._get(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._fail(key, "a table of strings", value)
        for name, text in value.items():
            if not re.fullmatch(key_pattern, name):
                raise SpecError(
                    f"{self.origin}: key '{self._key(key)}': expected names matching "
                    f"{key_pattern}, found {describe(name)}"
                )
            if "\0" in text:
                raise self._fail(f"{key}.{name}", "a string without NUL characters", text)
        return dict(value)

    def table_(self, key: str, required: bool = True) -> Reader:
        value = self._get(key, required)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self._fail(key, "a table", value)
        return Reader(self.origin, value, f"{self._key(key)}.")

    def tables(self, key: str) -> list[Reader]:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._fail(key, "an array of tables ([[files]])", value)
        return [Reader(self.origin, v, f"{self._key(key)}[{i}].") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            raise SpecError(
                f"{self.origin}: unknown key '{self._key(unknown[0])}'",
                hint=f"allowed keys here: {allowed}",
            )


def describe(value: object) -> str:
    kind = {
        str: "string",
        int: "integer",
        float: "float",
        bool: "boolean",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"
