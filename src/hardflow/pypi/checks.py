"""What a Python resolution must satisfy beyond uv's answer, and how its failures are told.

* **No wheel.** hardflow installs wheels only (it never builds from source in the image), so uv
  runs with ``--only-binary :all:``. A distribution with no wheel for the target Python and
  platform (an sdist-only project such as ``python-nvd3``, or one whose wheels are all for other
  ABIs or platforms) makes uv fail with a long derivation; :func:`no_wheel_error` turns it into
  one :class:`LockError` that names the distribution and the two ways out (a local wheel folder
  or an exclude).
* **Requirement hashes.** A requirements file's ``--hash`` options pin the exact file pip may
  install; :func:`check_hashes` applies the same rule to the wheels the lock picked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from hardflow.errors import HardflowError, LockError
from hardflow.lock.model import LockedWheel

# uv's derivation, e.g. "Because python-nvd3>=0.15.0 has no usable wheels and ...",
# "all versions of python-nvd3 have no usable wheels", "pywin32<=306 has no wheels with a
# matching Python ABI tag (e.g., `cp313`)".
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_NO_WHEELS = re.compile(
    rf"(?:all versions of (?P<all>{_NAME}) have"
    rf"|(?P<name>{_NAME})(?P<spec>(?:===|==|!=|~=|>=|<=|<|>)[^\s,]+(?:,\s*(?:[<>=!~]=?)[^\s,]+)*)?"
    r" has) no (?:usable wheels|wheels with a matching (?P<what>[A-Za-z ]+?) tag)"
)
# uv's hints: "Wheels are required for `X` because building from source is disabled",
# "we only found wheels for `X` (v306) with ...", "Wheels are available for `X` (v312) on ..."
_HINT_NAMES = re.compile(
    r"(?:Wheels are required for|wheels for|Wheels are available for) `([^`]+)`"
)


@dataclass(frozen=True)
class MissingWheel:
    """A distribution uv found no usable wheel for: its name and the versions concerned."""

    name: str  # canonical
    versions: str  # "0.16.0", ">=0.15.0", or "" for all versions

    def __str__(self) -> str:
        if not self.versions:
            return self.name
        if re.fullmatch(r"===?[^<>=!~,]+", self.versions):
            return f"{self.name} {self.versions.lstrip('=')}"
        return f"{self.name} ({self.versions})"


def missing_wheels(uv_stderr: str) -> list[MissingWheel]:
    """The distributions uv's failure says have no usable wheel, in order of mention."""
    text = re.sub(r"\s+", " ", uv_stderr)
    found: dict[str, MissingWheel] = {}
    for m in _NO_WHEELS.finditer(text):
        name = canonicalize_name(m["all"] or m["name"])
        versions = "" if m["all"] else (m["spec"] or "")
        if name not in found or (found[name].versions and not versions):
            found[name] = MissingWheel(name, versions)
    if found:
        for m in _HINT_NAMES.finditer(text):  # uv names them in its hints too
            found.setdefault(canonicalize_name(m[1]), MissingWheel(canonicalize_name(m[1]), ""))
    return list(found.values())


def no_wheel_hint(names: Sequence[str], direct: Collection[str]) -> str:
    """The ways out, spelled as spec lines for these (canonical) names."""

    def toml_list(items: Sequence[str]) -> str:
        return ", ".join(f'"{n}"' for n in items)

    indirect = [n for n in names if n not in direct]
    direct_ones = [n for n in names if n in direct]
    ways = [
        "if it is needed at run time, build the wheel yourself (for the image's Python and "
        'platform) and put it in a folder next to the spec: [python] find-links = ["wheels/"] '
        "(the lock records each local wheel's sha256)"
    ]
    if indirect:
        ways.append(
            "if it is not needed at run time (declared but never imported), leave it out: "
            f"[python] excludes = [{toml_list(indirect)}]"
        )
    if direct_ones:
        ways.append(f"or drop {toml_list(direct_ones)} from [python] requirements")
    return "; ".join(ways)


def no_wheel_error(
    uv_stderr: str,
    python_version: str,
    platform: str,
    direct: Collection[str] = (),
    detail_limit: int = 1500,
) -> LockError | None:
    """A clear LockError when uv failed because a distribution has no usable wheel, else None.

    ``direct``: canonical names of the direct requirements (they cannot be excluded).
    """
    missing = missing_wheels(uv_stderr)
    if not missing:
        return None
    names = [m.name for m in missing]
    listed = ", ".join(str(m) for m in missing)
    lines = [line for line in uv_stderr.strip().splitlines() if line.strip()]
    detail = "\n".join(f"    {line.strip()}" for line in lines)
    if len(detail) > detail_limit:
        detail = detail[:detail_limit] + " …"
    return LockError(
        f"{listed}: no wheel for CPython {python_version} on {platform} "
        "(hardflow installs wheels only; it never builds a source distribution)\n"
        f"  uv's explanation:\n{detail}",
        hint=no_wheel_hint(names, {canonicalize_name(d) for d in direct}),
    )


def sdist_only_error(
    name: str, version: str, python_version: str, platform: str, direct: Collection[str] = ()
) -> LockError:
    """The same answer for a resolution that came back with a source distribution only."""
    target = f"CPython {python_version} on {platform}" if python_version else "the target"
    return LockError(
        f"{name} {version}: no wheel for {target}, only a source distribution "
        "(hardflow installs wheels only; it never builds a source distribution)",
        hint=no_wheel_hint([canonicalize_name(name)], {canonicalize_name(d) for d in direct}),
    )


# --------------------------------------------------------------------------- requirement hashes

Identify = Callable[[str, Collection[str]], Mapping[str, str]]
"""``identify(name, digests)``: file names the index lists for those sha256 hex digests."""


def _describe_file(filename: str) -> str:
    if filename.endswith(".whl"):
        try:
            _, version, _, tags = parse_wheel_filename(filename)
        except ValueError:
            return filename
        shown = ", ".join(sorted(str(t) for t in tags)[:3])
        return f"{filename} (the {version} wheel for {shown})"
    try:
        _, version = parse_sdist_filename(filename)
    except ValueError:
        return filename
    return f"{filename} (the {version} source distribution)"


def check_hashes(
    wheels: Sequence[LockedWheel],
    hashes: Mapping[str, Sequence[str]],
    requirements_file: str,
    target: str,
    identify: Identify | None = None,
) -> None:
    """Each locked wheel whose name ``hashes`` lists must have one of its allowed digests.

    pip's rule: a ``--hash`` names the exact file to install. ``target`` names the image's
    Python and platform for messages; ``identify`` (optional, best effort) tells which file of
    the index an allowed digest belongs to, for the hint.
    """
    origin = requirements_file or "the requirements file"
    by_name = {canonicalize_name(n): tuple(v) for n, v in hashes.items()}
    for wheel in wheels:
        allowed = by_name.get(canonicalize_name(wheel.name))
        if not allowed:
            continue
        found = f"sha256:{wheel.sha256}"
        if found in allowed:
            continue
        hint = (
            "a --hash names one exact file (pip's rule): a hash of the source distribution or "
            f"of another platform's or Python's wheel never matches the wheel the image uses "
            f"({target}). Check where the hashes come from; regenerate them for the image's "
            f"platform, or add --hash={found} for {wheel.name} after checking that file"
        )
        known = _identify(identify, wheel.name, allowed)
        if known:
            hint = (
                "the allowed hashes are of "
                + "; ".join(f"{d[:19]}…: {_describe_file(f)}" for d, f in known.items())
                + ". "
                + hint
            )
        raise LockError(
            f"{origin}: {wheel.name} {wheel.version}: the locked wheel {wheel.filename} has "
            f"{found}, which is not among the hashes {origin} allows: {', '.join(allowed)}",
            hint=hint,
        )


def _identify(identify: Identify | None, name: str, allowed: Sequence[str]) -> dict[str, str]:
    if identify is None:
        return {}
    hexes = [a.removeprefix("sha256:") for a in allowed if a.startswith("sha256:")]
    try:
        files = identify(name, hexes)
    except (HardflowError, OSError, ValueError):  # best effort: the hint gets less specific
        return {}
    return {f"sha256:{h}": files[h] for h in hexes if h in files}
