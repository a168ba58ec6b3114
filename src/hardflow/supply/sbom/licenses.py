"""Licences as SPDX expressions: from Debian copyright files and from Python metadata.

Both sources are messy, so the rule is *say only what the file says*:

* Debian: a machine-readable (DEP-5) copyright file names the licence of its ``Files: *``
  paragraph; its short names are mapped to SPDX identifiers. A short name with no SPDX
  equivalent becomes ``LicenseRef-Debian-<name>``. A free-text copyright file gives
  ``NOASSERTION`` — guessing a licence from prose would be a claim we cannot back.
* Python: ``License-Expression`` (PEP 639) first, then a ``License`` field that is a known
  identifier or an unambiguous alias, then the ``License ::`` trove classifiers, then the
  ``License`` text itself as ``LicenseRef-PyPI-<name>``, else ``NOASSERTION``.

Every identifier emitted is either in :data:`SPDX_IDS` (a curated subset of the SPDX licence
list, so SPDX validators accept it) or a ``LicenseRef-`` whose text travels with the
:class:`License` (SPDX needs it in ``hasExtractedLicensingInfos``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message

NOASSERTION = "NOASSERTION"

# A curated subset of the SPDX licence list: the identifiers Debian and PyPI packages use.


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SPDX_IDS: frozenset[str] = _words(
    """
    0BSD AFL-2.1 AFL-3.0 AGPL-3.0-only AGPL-3.0-or-later Apache-1.0 Apache-1.1 Apache-2.0
    APSL-2.0 Artistic-1.0 Artistic-1.0-Perl Artistic-2.0 Beerware BlueOak-1.0.0 BSD-1-Clause
    BSD-2-Clause BSD-2-Clause-Patent BSD-3-Clause BSD-3-Clause-Clear BSD-4-Clause BSL-1.0
    bzip2-1.0.6 CC-BY-3.0 CC-BY-4.0 CC-BY-SA-3.0 CC-BY-SA-4.0 CC0-1.0 CDDL-1.0 CDDL-1.1
    CECILL-2.1 CNRI-Python CPL-1.0 curl EPL-1.0 EPL-2.0 EUPL-1.1 EUPL-1.2 FSFAP FSFUL
    FSFULLR FTL GFDL-1.2-only GFDL-1.2-or-later GFDL-1.3-only GFDL-1.3-or-later GPL-1.0-only
    GPL-1.0-or-later GPL-2.0-only GPL-2.0-or-later GPL-3.0-only GPL-3.0-or-later HPND ICU
    IJG Info-ZIP IPL-1.0 ISC LGPL-2.0-only LGPL-2.0-or-later LGPL-2.1-only LGPL-2.1-or-later
    LGPL-3.0-only LGPL-3.0-or-later Libpng libtiff LPPL-1.3c MirOS MIT MIT-0 MIT-CMU MPL-1.0
    MPL-1.1 MPL-2.0 MPL-2.0-no-copyleft-exception MS-PL NCSA OFL-1.1 OLDAP-2.8 OpenSSL
    PostgreSQL PSF-2.0 Python-2.0 Python-2.0.1 Ruby Sleepycat SSLeay TCL Unicode-3.0
    Unicode-DFS-2016 Unlicense UPL-1.0 W3C WTFPL X11 Zlib ZPL-2.0 ZPL-2.1
    """
)
SPDX_EXCEPTIONS: frozenset[str] = _words(
    """
    Autoconf-exception-2.0 Autoconf-exception-3.0 Bison-exception-2.2 Classpath-exception-2.0
    GCC-exception-2.0 GCC-exception-3.1 LLVM-exception OpenSSL-exception
    """
)
_CANONICAL = {i.lower(): i for i in SPDX_IDS | SPDX_EXCEPTIONS}

# DEP-5 short names (and the spellings found in the wild) that differ from SPDX's.
DEBIAN_NAMES: dict[str, str] = {
    "expat": "MIT",
    "mit": "MIT",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause",
    "artistic": "Artistic-1.0-Perl",
    "artistic-1": "Artistic-1.0-Perl",
    "artistic-2": "Artistic-2.0",
    "zlib": "Zlib",
    "isc": "ISC",
    "apache-2": "Apache-2.0",
    "psf-2": "PSF-2.0",
    "python": "Python-2.0",
    "python-2": "Python-2.0",
    "mpl-2": "MPL-2.0",
    "x11": "X11",
    "openssl": "OpenSSL",
    "ssleay": "SSLeay",
    "sleepycat": "Sleepycat",
    "bzip2": "bzip2-1.0.6",
    "bsl-1": "BSL-1.0",
    "cc0": "CC0-1.0",
    "cc0-1": "CC0-1.0",
    "unicode-dfs-2016": "Unicode-DFS-2016",
}
# GPL family: Debian writes "GPL-2+" / "GPL-2"; SPDX 3.x ids say -or-later / -only.
_GNU = re.compile(r"(?i)^(a?gpl|lgpl|gfdl)-?(\d(?:\.\d)?)(\+?)$")
_GNU_VERSIONS = {
    "gpl": {"1": "1.0", "2": "2.0", "3": "3.0"},
    "agpl": {"3": "3.0"},
    "lgpl": {"2": "2.0", "2.1": "2.1", "3": "3.0"},
    "gfdl": {"1.2": "1.2", "1.3": "1.3"},
}
# Debian's exception names in "GPL-2+ with OpenSSL exception".
_DEBIAN_EXCEPTIONS = {
    "openssl": "OpenSSL-exception",
    "autoconf": "Autoconf-exception-3.0",
    "autoconf-data": "Autoconf-exception-3.0",
    "gcc-runtime-library": "GCC-exception-3.1",
    "gcc": "GCC-exception-3.1",
    "bison": "Bison-exception-2.2",
    "classpath": "Classpath-exception-2.0",
}

# License field values on PyPI that unambiguously name one licence.
PYPI_ALIASES: dict[str, str] = {
    "mit license": "MIT",
    "the mit license": "MIT",
    "mit licence": "MIT",
    "apache 2.0": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd 3-clause license": "BSD-3-Clause",
    "3-clause bsd": "BSD-3-Clause",
    "3-clause bsd license": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "bsd 2-clause license": "BSD-2-Clause",
    "2-clause bsd": "BSD-2-Clause",
    "simplified bsd": "BSD-2-Clause",
    "isc license": "ISC",
    "mpl 2.0": "MPL-2.0",
    "mozilla public license 2.0": "MPL-2.0",
    "psf": "PSF-2.0",
    "psf license": "PSF-2.0",
    "python software foundation license": "PSF-2.0",
    "the unlicense": "Unlicense",
    "zope public license": "ZPL-2.1",
}
# Trove classifiers that name exactly one licence. Generic ones ("BSD License", "GNU General
# Public License (GPL)") name a family, not a licence, and are deliberately absent.
_OSI = "License :: OSI Approved :: "
CLASSIFIERS: dict[str, str] = {
    f"{_OSI}MIT License": "MIT",
    f"{_OSI}MIT No Attribution License (MIT-0)": "MIT-0",
    f"{_OSI}Apache Software License": "Apache-2.0",
    f"{_OSI}ISC License (ISCL)": "ISC",
    f"{_OSI}Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    f"{_OSI}Python Software Foundation License": "PSF-2.0",
    f"{_OSI}The Unlicense (Unlicense)": "Unlicense",
    f"{_OSI}Zope Public License": "ZPL-2.1",
    f"{_OSI}Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    f"{_OSI}BSD 3-Clause License": "BSD-3-Clause",
    f"{_OSI}BSD 2-Clause License": "BSD-2-Clause",
    f"{_OSI}GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    f"{_OSI}GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    f"{_OSI}GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    f"{_OSI}GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    f"{_OSI}GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    f"{_OSI}GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    f"{_OSI}GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    f"{_OSI}GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    f"{_OSI}GNU Affero General Public License v3": "AGPL-3.0-only",
    f"{_OSI}Historical Permission Notice and Disclaimer (HPND)": "HPND",
    f"{_OSI}Universal Permissive License (UPL)": "UPL-1.0",
    f"{_OSI}Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}


@dataclass(frozen=True)
class License:
    """An SPDX licence expression plus the text of every ``LicenseRef-`` it uses."""

    expression: str = NOASSERTION
    refs: tuple[tuple[str, str], ...] = ()  # (LicenseRef-id, extracted text)
    source: str = ""  # where it was read, for the document's comments

    @property
    def known(self) -> bool:
        return self.expression != NOASSERTION


def license_ref(kind: str, name: str) -> str:
    """``LicenseRef-<kind>-<name>`` with the characters SPDX allows (letters, digits, . -)."""
    slug = re.sub(r"[^A-Za-z0-9.\-]+", "-", name).strip("-") or "unnamed"
    return f"LicenseRef-{kind}-{slug}"


# --------------------------------------------------------------------------------------------
# SPDX expressions

_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9.+\-:]+)")


def _tokens(text: str) -> list[str] | None:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            return None
        out.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def normalise_expression(text: str) -> str | None:
    """A syntactically valid SPDX expression with known ids in canonical case, else None.

    ``LicenseRef-`` ids are kept as they are; an id outside :data:`SPDX_IDS` makes it None.
    """
    tokens = _tokens(text)
    if not tokens:
        return None
    out: list[str] = []
    depth = 0
    expect_operand = True
    after_with = False
    for tok in tokens:
        upper = tok.upper()
        if tok == "(":
            if not expect_operand:
                return None
            depth += 1
            out.append(tok)
        elif tok == ")":
            depth -= 1
            if depth < 0 or expect_operand:
                return None
            out.append(tok)
        elif upper in ("AND", "OR", "WITH"):
            if expect_operand:
                return None
            out.append(upper)
            expect_operand = True
            after_with = upper == "WITH"
            continue
        else:
            if not expect_operand:
                return None
            if after_with:
                canonical = _CANONICAL.get(tok.lower())
                if canonical not in SPDX_EXCEPTIONS:
                    return None
                out.append(canonical)
            elif tok.startswith("LicenseRef-") and re.fullmatch(r"LicenseRef-[A-Za-z0-9.\-]+", tok):
                out.append(tok)
            else:
                plus = tok.endswith("+")
                canonical = _CANONICAL.get(tok.rstrip("+").lower())
                if canonical is None or canonical not in SPDX_IDS:
                    return None
                out.append(canonical + ("+" if plus else ""))
            expect_operand = False
        after_with = False
    if depth or expect_operand:
        return None
    text = " ".join(out)
    return text.replace("( ", "(").replace(" )", ")")


def combine(expressions: Sequence[str], operator: str) -> str:
    unique = list(dict.fromkeys(expressions))
    if len(unique) == 1:
        return unique[0]
    return f" {operator} ".join(f"({e})" if " " in e else e for e in unique)


# --------------------------------------------------------------------------------------------
# Debian


def _paragraphs(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs: field name (lower case) → value (continuation lines joined by \\n)."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, ""
        elif line[0] in " \t":
            if key:
                current[key] += "\n" + line.strip()
        elif ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def is_dep5(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    return bool(re.match(r"(?i)format(-specification)?:\s*https?://.*copyright-format", first))


def debian_short_name(name: str) -> str | None:
    """One DEP-5 short name (``GPL-2+``, ``Expat``, ``BSD-3-clause``) as an SPDX id."""
    m = _GNU.match(name)
    if m:
        family, version, plus = m.group(1).lower(), m.group(2), m.group(3)
        mapped = _GNU_VERSIONS[family].get(version)
        if mapped is None:
            return None
        return f"{family.upper()}-{mapped}-{'or-later' if plus else 'only'}"
    key = name.lower()
    if key in DEBIAN_NAMES:
        return DEBIAN_NAMES[key]
    return _CANONICAL.get(key) if _CANONICAL.get(key) in SPDX_IDS else None


def debian_license(text: str, package: str) -> License:
    """The ``Files: *`` licence of a copyright file as an SPDX expression."""
    source = f"/usr/share/doc/{package}/copyright"
    if not is_dep5(text):
        return License(source=f"{source} (not machine-readable)")
    paragraphs = _paragraphs(text)
    files_star = next((p for p in paragraphs if "files" in p and "*" in p["files"].split()), None)
    if files_star is None or not files_star.get("license"):
        return License(source=f"{source} (no 'Files: *' licence)")
    short = files_star["license"].split("\n", 1)[0].strip()
    standalone = {
        p["license"].split("\n", 1)[0].strip(): p["license"]
        for p in paragraphs
        if "license" in p and "files" not in p
    }
    return _debian_expression(short, standalone, package, source)


def _debian_expression(
    short: str, standalone: dict[str, str], package: str, source: str
) -> License:
    # DEP-5 grammar: "A or B", "A and B", "A, and B" (comma: lower precedence), "A with X exception"
    refs: list[tuple[str, str]] = []

    def one(term: str) -> str:
        term = term.strip()
        exception = None
        m = re.fullmatch(r"(?i)(\S+)\s+with\s+(\S+)\s+exception", term)
        if m:
            term, exception = m.group(1), m.group(2)
        spdx = debian_short_name(term)
        if spdx is None or (exception and _DEBIAN_EXCEPTIONS.get(exception.lower()) is None):
            name = f"{term} with {exception} exception" if exception else term
            ref = license_ref("Debian", name)
            body = standalone.get(name) or standalone.get(term)
            text = f"Licence named '{name}' in the Debian copyright file {source}" + (
                f":\n{body.split(chr(10), 1)[1]}" if body and "\n" in body else "."
            )
            refs.append((ref, text))
            return ref
        if exception:
            return f"{spdx} WITH {_DEBIAN_EXCEPTIONS[exception.lower()]}"
        return spdx

    # "and" binds tighter than "or"; a comma separates groups that are all required
    parts = []
    for group in re.split(r",\s*(?:and\s+)?", short):
        alternatives = [
            combine([one(t) for t in re.split(r"(?i)\s+and\s+", alt) if t.strip()], "AND")
            for alt in re.split(r"(?i)\s+or\s+", group)
            if alt.strip()
        ]
        if alternatives:
            parts.append(combine(alternatives, "OR"))
    if not parts:
        return License(source=source)
    expression = combine(parts, "AND")
    return License(expression=expression, refs=tuple(dict.fromkeys(refs)), source=source)


# --------------------------------------------------------------------------------------------
# Python


def _license_field(value: str) -> str | None:
    text = value.strip()
    if not text or "\n" in text or len(text) > 100:
        return None
    alias = PYPI_ALIASES.get(text.lower().rstrip("."))
    if alias:
        return alias
    direct = normalise_expression(text)
    if direct is not None and "LicenseRef-" not in direct:
        return direct
    # "MIT -or- Apache License 2.0", "MIT or Apache-2.0"
    parts = [p.strip() for p in re.split(r"(?i)\s+-?or-?\s+", text)]
    if len(parts) > 1:
        mapped = [_license_field(p) for p in parts]
        if all(mapped):
            return combine([m for m in mapped if m], "OR")
    return None


def python_license(metadata: Message, name: str) -> License:
    """The licence of a distribution from its METADATA headers (see the module docstring)."""
    source = f"{name} METADATA"
    expr = str(metadata.get("License-Expression") or "").strip()
    if expr:
        normalised = normalise_expression(expr)
        if normalised is not None:
            return License(normalised, source=f"{source} License-Expression")
    field_value = str(metadata.get("License") or "").strip()
    if field_value.upper() in ("UNKNOWN", "NONE"):
        field_value = ""
    if field_value:
        known = _license_field(field_value)
        if known:
            return License(known, source=f"{source} License")
    classifiers = [
        c
        for c in (str(c).strip() for c in metadata.get_all("Classifier") or [])
        if c.startswith("License ::") and c not in ("License :: OSI Approved",)
    ]
    if classifiers and all(c in CLASSIFIERS for c in classifiers):
        # several licence classifiers on one project mean "choose one" in practice
        mapped = sorted({CLASSIFIERS[c] for c in classifiers})
        return License(combine(mapped, "OR"), source=f"{source} classifiers")
    declared = [
        f"{k}: {v}" for k, v in (("License-Expression", expr), ("License", field_value)) if v
    ]
    declared += [f"Classifier: {c}" for c in classifiers]
    if declared:
        # a family ("BSD License"), free text or an unknown id: keep the words, claim no id
        ref = license_ref("PyPI", name)
        text = f"Declared in the METADATA of the {name} distribution:\n" + "\n".join(declared)
        return License(ref, refs=((ref, text),), source=f"{source} (not an SPDX expression)")
    return License(source=f"{source} (no licence declared)")


def collect_refs(licenses: Iterable[License]) -> list[tuple[str, str]]:
    """Every LicenseRef used, once, sorted by id (the first text seen for an id wins)."""
    seen: dict[str, str] = {}
    for lic in licenses:
        for ref, text in lic.refs:
            seen.setdefault(ref, text)
    return sorted(seen.items())
