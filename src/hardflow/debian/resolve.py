"""The Debian dependency closure of a set of wanted packages.

Rules, in order of application:

* The candidates for a name are its records across all suites whose architecture is the target's
  or ``all``, highest version first (so a newer ``-security`` build beats the release's).
* ``Pre-Depends`` and ``Depends`` are followed; ``Recommends``/``Suggests`` never are.
  Essential and ``Priority: required`` packages are *not* added implicitly: an image gets only
  what is asked for and what that needs.
* A dependency group ``a | b`` is already met when any alternative is met by a selected package
  (real or through ``Provides``) — wanted packages are selected first, so they count.
* An *excluded* package counts as present: a group one of whose alternatives names it (or a
  virtual package it provides) is dropped silently and nothing is added for it. That is what
  excludes are for (``debconf``, ``perl-base``): leaving out packages an image does not need
  without pulling in a replacement such as ``cdebconf`` for ``debconf | debconf-2.0``.
* Otherwise the first alternative that can be met is chosen: a real package of that name (its
  highest satisfying version), else a provider (by Priority as apt does — ``mawk`` before
  ``gawk`` for ``awk`` — then by name, highest version first).
* A group that cannot be met raises :class:`ResolveError` naming the chain that required it.
* *Preferred* versions (the pins of an existing lock, for ``lock --update --only``) come first
  among the candidates of their name. When a preferred version turns out not to fit (a newer
  package needs a newer one), the closure is computed again without that preference: it moves
  only as far as it must.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from debian.deb822 import PkgRelation
from debian.debian_support import Version, version_compare

from hardflow.debian.repo import PackageRecord, SuiteIndex
from hardflow.errors import ResolveError

# Providers of a virtual package are tried in this order of Priority, then by name.
_PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}

# dpkg still reads the deprecated "<" and ">" as "<=" and ">=".
_OPS = {"<<": "<<", "<=": "<=", "<": "<=", "=": "=", ">=": ">=", ">": ">=", ">>": ">>"}


@dataclass(frozen=True)
class Alternative:
    """One alternative of a dependency group, e.g. ``libc6 (>= 2.36)``."""

    name: str
    op: str | None
    version: str | None
    archqual: str | None

    def __str__(self) -> str:
        text = self.name + (f":{self.archqual}" if self.archqual else "")
        if self.op:
            text += f" ({self.op} {self.version})"
        return text


def version_satisfies(candidate: str, op: str | None, wanted: str | None) -> bool:
    """Does version ``candidate`` meet the constraint ``op wanted`` (no constraint: yes)?"""
    if op is None or wanted is None:
        return True
    cmp = version_compare(candidate, wanted)
    return {
        "<<": cmp < 0,
        "<=": cmp <= 0,
        "=": cmp == 0,
        ">=": cmp >= 0,
        ">>": cmp > 0,
    }[op]


def _arch_matches(pattern: str, arch: str) -> bool:
    """Debian architecture wildcard matching, for the forms used in binary relations."""
    return pattern in (arch, "any", "linux-any", f"any-{arch}", f"linux-{arch}")


def parse_relations(text: str, arch: str, origin: str) -> list[list[Alternative]]:
    """Parse a Depends-style field into groups of alternatives that apply to ``arch``.

    Alternatives restricted to other architectures (``[!amd64]``, ``[i386]``) are dropped; a
    group left empty is dropped.
    """
    if not text.strip():
        return []
    try:
        parsed = PkgRelation.parse_relations(text)
    except Exception as exc:  # python-debian raises assorted errors on malformed input
        raise ResolveError(f"{origin}: unreadable relation field {text!r}: {exc}") from None
    groups: list[list[Alternative]] = []
    for group in parsed:
        alts: list[Alternative] = []
        for rel in group:
            restrictions = rel.get("arch")
            if restrictions:
                enabled = [r.arch for r in restrictions if r.enabled]
                disabled = [r.arch for r in restrictions if not r.enabled]
                if enabled and not any(_arch_matches(a, arch) for a in enabled):
                    continue
                if any(_arch_matches(a, arch) for a in disabled):
                    continue
            version = rel.get("version")
            op, ver = (None, None) if not version else (_OPS.get(version[0]), version[1])
            if version and op is None:
                raise ResolveError(f"{origin}: unknown version operator in {text!r}")
            alts.append(Alternative(rel["name"], op, ver, rel.get("archqual")))
        if alts:
            groups.append(alts)
    return groups


def _parse_provides(text: str) -> list[tuple[str, str | None]]:
    """``Provides`` entries as (name, version or None). Cheap: Provides has no alternatives."""
    out: list[tuple[str, str | None]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, rest = item.partition("(")
        name = name.strip().split(":", 1)[0]
        version: str | None = None
        if rest:
            rest = rest.rstrip(")").strip()
            if rest.startswith("="):
                version = rest[1:].strip()
        out.append((name, version))
    return out


class _Universe:
    """All candidate records, by name and by what they provide."""

    def __init__(
        self, indices: Sequence[SuiteIndex], arch: str, prefer: Mapping[str, str] | None = None
    ) -> None:
        self.arch = arch
        self.prefer = dict(prefer or {})
        self.suites = [i.suite for i in indices]
        by_name: dict[str, list[PackageRecord]] = {}
        seen: set[tuple[str, str]] = set()
        for index in indices:
            for rec in index.packages:
                if rec.architecture not in (arch, "all"):
                    continue
                key = (rec.name, rec.version)
                if key in seen:  # the same build listed by two suites: keep the first
                    continue
                seen.add(key)
                by_name.setdefault(rec.name, []).append(rec)
        for records in by_name.values():
            records.sort(key=lambda r: Version(r.version), reverse=True)
        self.by_name = by_name
        self.providers: dict[str, list[tuple[PackageRecord, str | None]]] = {}
        for records in by_name.values():
            for rec in records:
                if rec.provides:
                    for vname, vversion in _parse_provides(rec.provides):
                        self.providers.setdefault(vname, []).append((rec, vversion))
        for providers in self.providers.values():
            providers.sort(
                key=lambda p: (
                    _PRIORITY_RANK.get(p[0].priority, len(_PRIORITY_RANK)),
                    p[0].name,
                    _NegVersion(p[0].version),
                )
            )

    def arch_ok(self, alt: Alternative) -> bool:
        return alt.archqual in (None, "any", "native", self.arch)

    def candidates(self, alt: Alternative) -> list[PackageRecord]:
        """Records that meet ``alt``, in order of preference."""
        if not self.arch_ok(alt):
            return []
        found = [
            r
            for r in self.by_name.get(alt.name, ())
            if version_satisfies(r.version, alt.op, alt.version)
        ]
        for rec, pversion in self.providers.get(alt.name, ()):
            if rec in found:
                continue
            if alt.op is None or (
                pversion is not None and version_satisfies(pversion, alt.op, alt.version)
            ):
                found.append(rec)
        return self._preferred_first(found) if self.prefer else found

    def _preferred_first(self, found: list[PackageRecord]) -> list[PackageRecord]:
        """``found`` with each name's preferred version moved ahead of that name's others."""
        by_name: dict[str, list[PackageRecord]] = {}
        for rec in found:
            by_name.setdefault(rec.name, []).append(rec)
        out: list[PackageRecord] = []
        for name, records in by_name.items():
            wanted = self.prefer.get(name)
            out += sorted(records, key=lambda r: r.version != wanted)  # stable: else as found
        return out

    def preferred_not_newest(self, rec: PackageRecord) -> bool:
        """Was ``rec`` chosen for a preference while a newer version of it exists?"""
        if self.prefer.get(rec.name) != rec.version:
            return False
        newest = self.by_name.get(rec.name, [rec])[0]
        return newest.version != rec.version

    def met_by(self, alt: Alternative, rec: PackageRecord) -> bool:
        if rec.name == alt.name and version_satisfies(rec.version, alt.op, alt.version):
            return True
        if not rec.provides:
            return False
        for vname, vversion in _parse_provides(rec.provides):
            if vname == alt.name and (
                alt.op is None
                or (vversion is not None and version_satisfies(vversion, alt.op, alt.version))
            ):
                return True
        return False

    def excluded_meets(self, alt: Alternative, excludes: Collection[str]) -> bool:
        if alt.name in excludes:
            return True
        return any(rec.name in excludes for rec, _ in self.providers.get(alt.name, ()))

    def why_not(self, alt: Alternative) -> str:
        if not self.arch_ok(alt):
            return f"{alt}: architecture qualifier :{alt.archqual} cannot be met on {self.arch}"
        known = self.by_name.get(alt.name, [])
        provided = self.providers.get(alt.name, [])
        if not known and not provided:
            return f"{alt}: not in {', '.join(self.suites)}"
        offers = [f"{r.name} {r.version} ({r.suite})" for r in known]
        offers += [
            f"{r.name} provides {alt.name}" + (f" {v}" if v else " unversioned")
            for r, v in provided
        ]
        return f"{alt}: only {', '.join(offers)} available"


class _NegVersion:
    """Sort key that orders Debian versions from highest to lowest."""

    def __init__(self, version: str) -> None:
        self.version = Version(version)

    def __lt__(self, other: _NegVersion) -> bool:
        return bool(self.version > other.version)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NegVersion) and bool(self.version == other.version)

    def __hash__(self) -> int:
        return hash(str(self.version))


def _chain(names: Iterable[str]) -> str:
    return " → ".join(names)


class _PreferenceClash(Exception):
    """A preferred (older) version of ``name`` cannot meet a dependency: drop the preference."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def resolve_closure(
    indices: Sequence[SuiteIndex],
    wanted: Sequence[str],
    excludes: Collection[str],
    arch: str,
    prefer: Mapping[str, str] | None = None,
) -> list[PackageRecord]:
    """The packages ``wanted`` needs (Depends + Pre-Depends, transitively), sorted by name.

    ``prefer`` maps package names to versions to keep where they still fit (an existing
    lock's pins); every other name gets its highest version.
    """
    preferences = dict(prefer or {})
    while True:
        try:
            return _closure(_Universe(indices, arch, preferences), wanted, excludes, arch)
        except _PreferenceClash as clash:
            del preferences[clash.name]  # move it, and try again


def _closure(
    universe: _Universe, wanted: Sequence[str], excludes: Collection[str], arch: str
) -> list[PackageRecord]:
    excluded = frozenset(excludes)
    selected: dict[str, PackageRecord] = {}
    chains: dict[str, tuple[str, ...]] = {}
    queue: deque[PackageRecord] = deque()

    def select(rec: PackageRecord, chain: tuple[str, ...]) -> None:
        selected[rec.name] = rec
        chains[rec.name] = chain
        queue.append(rec)

    for name in dict.fromkeys(wanted):  # keep order, drop duplicates
        if name in excluded:
            raise ResolveError(f"{name}: wanted and excluded at the same time")
        if name in selected:
            continue
        alt = Alternative(name, None, None, None)
        if any(universe.met_by(alt, rec) for rec in selected.values()):
            continue
        options = [r for r in universe.candidates(alt) if r.name not in excluded]
        if not options:
            raise ResolveError(f"{universe.why_not(alt)} (wanted)")
        select(options[0], (name,) if options[0].name == name else (name, options[0].name))

    while queue:
        rec = queue.popleft()
        chain = chains[rec.name]
        origin = f"{rec.name} {rec.version} ({rec.suite})"
        groups = parse_relations(rec.pre_depends, arch, origin) + parse_relations(
            rec.depends, arch, origin
        )
        for group in groups:
            if any(universe.met_by(alt, s) for alt in group for s in selected.values()):
                continue
            if any(universe.excluded_meets(alt, excluded) for alt in group):
                continue
            choice: PackageRecord | None = None
            for alt in group:
                for cand in universe.candidates(alt):
                    if cand.name in excluded or cand.name in selected:
                        # selected under another, unsuitable version: not an option
                        continue
                    choice = cand
                    break
                if choice is not None:
                    break
            if choice is None:
                for alt in group:
                    held = selected.get(alt.name)
                    if held is not None and universe.preferred_not_newest(held):
                        raise _PreferenceClash(held.name)
                reasons = []
                for alt in group:
                    clash = selected.get(alt.name)
                    if clash is not None:
                        reasons.append(
                            f"{alt}: {clash.name} {clash.version} is already selected "
                            f"(for {_chain(chains[clash.name])})"
                        )
                    else:
                        reasons.append(universe.why_not(alt))
                if len(group) == 1:
                    raise ResolveError(f"{_chain(chain)} → {reasons[0]}")
                raise ResolveError(
                    f"{_chain(chain)} → {' | '.join(map(str, group))}: none can be met: "
                    + "; ".join(reasons)
                )
            select(choice, (*chain, choice.name))
    return sorted(selected.values(), key=lambda r: (r.name, r.version))
