"""Where the Debian archive is fetched from: an explicit setting, else the host's apt sources.

Nothing here names a host. The order is: environment (``HARDFLOW_DEBIAN_MIRROR``,
``HARDFLOW_DEBIAN_SECURITY_MIRROR``), then the spec's ``debian.mirror`` /
``debian.security_mirror``, then the first matching ``deb`` source in the host's apt
configuration (``/etc/apt/sources.list``, ``sources.list.d/*.list`` and ``*.sources``).
A snapshot mirror is just another explicit mirror.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hardflow.errors import FetchError
from hardflow.spec import DebianSpec

ENV_MIRROR = "HARDFLOW_DEBIAN_MIRROR"
ENV_SECURITY = "HARDFLOW_DEBIAN_SECURITY_MIRROR"
# Suite names of the Debian archive proper (not third-party repositories the host may list).
_DEBIAN_SUITE = re.compile(
    r"(buster|bullseye|bookworm|trixie|forky|duke|sid|stable|testing|unstable|oldstable)"
    r"(-updates|-backports|-proposed-updates|-security)?"
)


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    origin: str  # file it came from


@dataclass(frozen=True)
class Mirrors:
    main: str
    security: str
    origin: str  # human-readable: where the choice came from

    def for_suite(self, suite: str) -> str:
        return self.security if suite.endswith("-security") else self.main


def parse_one_line(text: str, origin: str) -> list[AptSource]:
    out: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line[4:])  # drop [options]
        parts = line.split()
        if len(parts) >= 2:
            out.append(AptSource(parts[0].rstrip("/"), (parts[1],), origin))
    return out


def parse_deb822(text: str, origin: str) -> list[AptSource]:
    out: list[AptSource] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        out.extend(AptSource(uri.rstrip("/"), suites, origin) for uri in fields.get(
            "uris", "").split())
    return out


def host_apt_sources(etc: Path = Path("/etc/apt")) -> list[AptSource]:
    sources: list[AptSource] = []
    main = etc / "sources.list"
    if main.is_file():
        sources += parse_one_line(main.read_text(errors="replace"), str(main))
    d = etc / "sources.list.d"
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.suffix == ".list":
                sources += parse_one_line(f.read_text(errors="replace"), str(f))
            elif f.suffix == ".sources":
                sources += parse_deb822(f.read_text(errors="replace"), str(f))
    return sources


def pick_from_sources(sources: Iterable[AptSource]) -> tuple[str | None, str | None, str]:
    main = security = None
    origins = []
    for src in sources:
        kinds = [m.group(2) or "" for s in src.suites if (m := _DEBIAN_SUITE.fullmatch(s))]
        if not kinds:
            continue
        if "-security" in kinds and security is None:
            security = src.uri
            origins.append(src.origin)
        if any(k != "-security" for k in kinds) and main is None:
            main = src.uri
            origins.append(src.origin)
    return main, security, ", ".join(dict.fromkeys(origins))


def resolve_mirrors(
    spec: DebianSpec,
    env: Mapping[str, str] | None = None,
    etc: Path = Path("/etc/apt"),
) -> Mirrors:
    env = os.environ if env is None else env
    if env.get(ENV_MIRROR):
        main = env[ENV_MIRROR].rstrip("/")
        return Mirrors(main, env.get(ENV_SECURITY, "").rstrip("/") or _sibling(main), ENV_MIRROR)
    if spec.mirror:
        main = spec.mirror.rstrip("/")
        sec = env.get(ENV_SECURITY) or spec.security_mirror or _sibling(main)
        return Mirrors(main, sec.rstrip("/"), "spec debian.mirror")
    host_main, host_sec, origin = pick_from_sources(host_apt_sources(etc))
    if host_main is None:
        raise FetchError(
            f"no Debian mirror configured: none in the spec, ${ENV_MIRROR} is unset, and no "
            f"Debian 'deb' source in {etc}/sources.list or {etc}/sources.list.d/",
            hint=f"set {ENV_MIRROR}=<base URL of a Debian archive mirror>",
        )
    security = env.get(ENV_SECURITY) or host_sec or _sibling(host_main)
    return Mirrors(host_main, security.rstrip("/"), f"host apt sources ({origin})")


def _sibling(main: str) -> str:
    """Debian mirrors conventionally serve the security archive beside the main one."""
    return main + "-security" if main.endswith("/debian") else main
