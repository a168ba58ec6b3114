"""The spec's ``platforms``: OCI platforms and the Debian architectures they are built from."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, cast

from hardflow.errors import SpecError
from hardflow.spec_toml import Reader


class _Debian(Protocol):
    @property
    def architecture(self) -> str: ...


class _Platformed(Protocol):
    """What :func:`platform_view` needs of an ``ImageSpec``."""

    @property
    def platforms(self) -> tuple[str, ...]: ...
    @property
    def debian(self) -> _Debian: ...
    @property
    def source(self) -> str: ...


SpecT = TypeVar("SpecT", bound=_Platformed)

# OCI platform (os/architecture) -> Debian architecture, for the platforms hardflow builds.
PLATFORM_ARCHITECTURES = {"linux/amd64": "amd64", "linux/arm64": "arm64"}
_ALIASES = {"linux/arm64/v8": "linux/arm64", "linux/x86_64": "linux/amd64",
            "linux/aarch64": "linux/arm64"}  # fmt: skip


def platform_architecture(platform: str) -> str:
    """The Debian architecture of an OCI platform (``linux/arm64`` -> ``arm64``)."""
    canonical = _ALIASES.get(platform, platform)
    if canonical not in PLATFORM_ARCHITECTURES:
        raise SpecError(
            f"platform {platform!r}: expected one of {', '.join(PLATFORM_ARCHITECTURES)}"
        )
    return PLATFORM_ARCHITECTURES[canonical]


def oci_platform(arch: str) -> str:
    """The OCI platform of a Debian architecture (``arm64`` -> ``linux/arm64``)."""
    return f"linux/{arch}"


def parse_platforms(values: Sequence[str], what: str) -> tuple[str, ...]:
    """Platforms as written (spec or ``--platform``): canonical, each once, in order."""
    out: list[str] = []
    for value in values:
        canonical = _ALIASES.get(value.strip(), value.strip())
        if canonical not in PLATFORM_ARCHITECTURES:
            raise SpecError(
                f"{what}: expected platforms among {', '.join(PLATFORM_ARCHITECTURES)}, "
                f"found {value!r}"
            )
        if canonical not in out:
            out.append(canonical)
    if not out:
        raise SpecError(f"{what}: expected at least one platform, found none")
    return tuple(out)


def read_platforms(
    top: Reader, deb: Reader, inherited: tuple[str, ...], origin: str
) -> tuple[tuple[str, ...], str]:
    """(platforms, the primary Debian architecture or "") of a spec file: its own
    ``platforms``, else its base's unless it names ``debian.architecture`` itself. A list of
    one platform is stored as that architecture alone (the checksums of a spec without the
    key)."""
    platforms = inherited
    if "platforms" in top.table:
        if "architecture" in deb.table:
            raise SpecError(
                f"{origin}: key 'debian.architecture': expected it left out when 'platforms' is "
                f"given (the first platform is the primary architecture), found "
                f"{deb.table['architecture']!r}",
                hint='write platforms = ["linux/amd64", "linux/arm64"] alone',
            )
        platforms = parse_platforms(top.strings("platforms"), f"{origin}: key 'platforms'")
    elif "architecture" in deb.table:
        platforms = ()  # the spec chose one architecture itself: its base's list is replaced
    if not platforms:
        return (), ""
    primary = platform_architecture(platforms[0])
    return (platforms if len(platforms) > 1 else ()), primary


def architectures_of(platforms: Sequence[str], architecture: str) -> tuple[str, ...]:
    """The Debian architectures of a spec's platforms (none: its ``debian.architecture``)."""
    return tuple(platform_architecture(p) for p in platforms) or (architecture,)


def platform_view(spec: SpecT, arch: str) -> SpecT:
    """The one-platform view of ``spec`` that the stages of ``arch`` see: ``platforms``
    emptied, ``debian.architecture`` set (the spec itself when it has only that platform).
    SpecError for an architecture the spec lacks."""
    arches = architectures_of(spec.platforms, spec.debian.architecture)
    if arch not in arches:
        raise SpecError(
            f"{spec.source or 'the spec'}: expected one of the spec's platforms "
            f"({', '.join(oci_platform(a) for a in arches)}), found {oci_platform(arch)}",
            hint="add it to the spec's top-level 'platforms' and run `hardflow lock`",
        )
    if not spec.platforms:
        return spec
    debian = dataclasses.replace(cast(Any, spec.debian), architecture=arch)
    return cast(SpecT, dataclasses.replace(cast(Any, spec), debian=debian, platforms=()))
