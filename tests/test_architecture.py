"""The package graph of ``docs/architecture.md``, enforced on the source.

Every module under ``src/hardflow`` is parsed (never imported) and every import in it is
collected, at any depth: module level, inside functions, under ``if TYPE_CHECKING:`` and in
``try`` blocks alike, because a lazy import is still a dependency. Then:

* each import of a hardflow module must be allowed by :data:`RULES` (the table of the doc);
* the modules must not import each other in a cycle;
* the files that go into the image (``hardflow/image/``) import the standard library only
  (and Airflow, lazily, in the two scripts that exist to drive it; `statsd` in the StatsD client
  Airflow imports by name);
* no module grows past :data:`MAX_LINES` (the entrypoint is one file on purpose: it is copied
  into the image as a single script).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "hardflow"
DOC = ROOT / "docs" / "architecture.md"
TOP = "hardflow"
MAX_LINES = 700
LONG_ON_PURPOSE = frozenset({"hardflow/image/entrypoint.py"})


@dataclass(frozen=True)
class Rule:
    """What the modules a row covers may import, besides their own package."""

    allowed: frozenset[str]
    why: str


def _rule(*allowed: str, why: str, base: bool = True) -> Rule:
    names = (*BASE, *allowed) if base else allowed
    return Rule(frozenset(f"{TOP}.{n}" if n != TOP else TOP for n in names), why)


# Everything may use these: the package's own version, the one error root, the image contract,
# atomic writes and the progress protocol. None of them imports anything beyond ``errors``.
BASE = (TOP, "errors", "contract", "fsutil", "progress")
LOCK_INPUTS = ("lock.model", "lock.fetch", "lock.mirrors")  # a lock, used: not re-resolved
BUILDING = ("spec", *LOCK_INPUTS, "debian", "pypi", "oci")
MEASURING = ("spec", "oci", "run")
PRODUCERS = ("spec", "lock", "debian", "pypi", "build", "oci", "supply")
CONSUMERS = ("run", "audit", "dagcheck", "deploy", "bench")

# Rows are packages or single modules (``lock.resolve``); the longest row that covers a module
# is its rule. An entry names a module or a package (a package covers its modules); ``hardflow``
# alone is the package's ``__init__`` (for ``__version__``), not everything below it.
# docs/architecture.md shows the same table (test_the_doc_table_is_the_enforced_table).
RULES: dict[str, Rule] = {
    TOP: _rule(why="the package root only names the version", base=False),
    "errors": _rule(why="the one error root depends on nothing", base=False),
    "contract": _rule(why="the image contract is plain values", base=False),
    "fsutil": _rule("errors", why="a leaf helper", base=False),
    "progress": _rule("errors", why="a leaf protocol", base=False),
    "spec": _rule(
        "spec_inputs",
        "spec_toml",
        "spec_platforms",
        "spec_links",
        why="the spec is the pipeline's first value",
    ),
    "spec_platforms": _rule("spec_toml", why="OCI platforms and their Debian architectures"),
    "spec_links": _rule(why="where [[files]] entries land, and their link targets"),
    "spec_inputs": _rule(why="what a spec reads from its folder"),
    "spec_toml": _rule(why="typed access to TOML tables for the spec"),
    "lock": _rule("spec", why="the lock value, mirrors and fetch know the spec, not the resolvers"),
    "lock.resolve": _rule("spec", "debian", "pypi", why="locking drives the resolvers"),
    "debian": _rule("lock.model", why="the Debian side produces entries of the lock value"),
    "pypi": _rule("lock.model", why="the PyPI side produces entries of the lock value"),
    "oci": _rule(why="the OCI format knows nothing of how its layers were made"),
    "build": _rule(*BUILDING, why="building uses a lock (never re-resolves it) and writes OCI"),
    "build.pipeline": _rule(*BUILDING, "supply", why="runs the stages, the supply chain last"),
    "build.platforms": _rule(
        *BUILDING, "supply", why="runs each platform's stages, the supply chain last"
    ),
    "supply": _rule("spec", "lock.model", "oci", why="takes the image and its lock, not the build"),
    "run": _rule("oci", why="a consumer of images: never reaches back into the build"),
    "audit": _rule("oci", "run", "supply", why="reads images and verifies their signatures"),
    "dagcheck": _rule("run", why="a consumer of images: runs the loader through the engine"),
    "deploy": _rule("spec", why="a consumer of images: renders manifests from references"),
    "bench": _rule(*MEASURING, why="a consumer of images: measures them"),
    "bench.builds": _rule(
        *MEASURING, "build", *LOCK_INPUTS, "pypi", why="times hardflow's builds: drives them"
    ),
    "bench.run": _rule(
        *MEASURING, *LOCK_INPUTS, "pypi", why="reads the lock, the mirror and the index settings"
    ),
    "bench.reference": _rule(*MEASURING, "lock.model", why="installs the same locked wheels"),
    "bench.trace": _rule(*MEASURING, "build.prune", why="the evidence behind the prune rules"),
    "demo": _rule("spec", "lock", "build", "run", why="the one flow that builds, then runs"),
    "imagediff": _rule(
        "supply", "audit.image_source", why="compares images read as the audit and SBOM read them"
    ),
    "cli": _rule(
        *PRODUCERS,
        *CONSUMERS,
        "demo",
        "imagediff",
        why="the command line parses arguments, calls any stage",
    ),
    "image": _rule(why="in-image scripts are stdlib-only: they cannot import hardflow", base=False),
    "examples": _rule(why="the example DAG goes into the image", base=False),
}
RULES = {(f"{TOP}.{k}" if k != TOP else TOP): v for k, v in RULES.items()}

# Imports that break the table and are known, each with what should happen to it. Not a way to
# widen the table: an entry goes when the code moves, and ``test_pending_entries_still_apply``
# fails once it no longer matches anything, so that it is removed then.
PENDING: dict[tuple[str, str], str] = {}


# ---------------------------------------------------------------------------------------------
# reading the source


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted name of the imported module (or, for names, their module)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def source_files() -> dict[str, Path]:
    files = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    return {module_name(p): p for p in files}


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([module] if module else [])])


def imports_of(name: str, path: Path) -> Iterator[Import]:
    """Every import in the file, at any depth; ``from P import m`` counts as P.m when m is a
    module of P, so importing a sibling through its package is not an edge to ``__init__``."""
    modules = source_files()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(name, path.name == "__init__.py", node.level, node.module)
            else:
                base = node.module or ""
            via_package = False
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    yield Import(name, sub, node.lineno)
                else:
                    via_package = True
            if via_package:
                yield Import(name, base, node.lineno)


@cache
def all_imports() -> tuple[Import, ...]:
    return tuple(imp for name, path in source_files().items() for imp in imports_of(name, path))


def hardflow_imports() -> list[Import]:
    return [i for i in all_imports() if i.target == TOP or i.target.startswith(f"{TOP}.")]


# ---------------------------------------------------------------------------------------------
# the rules


def covers(entry: str, module: str) -> bool:
    """``entry`` names ``module`` or a package above it (the bare root names only itself)."""
    return module == entry or (entry != TOP and module.startswith(f"{entry}."))


def rule_for(module: str) -> tuple[str, Rule] | None:
    rows = [key for key in RULES if covers(key, module)]
    if not rows:
        return None
    key = max(rows, key=len)
    return key, RULES[key]


def own_package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def violations(imports: list[Import]) -> list[str]:
    found: list[str] = []
    for imp in imports:
        row = rule_for(imp.importer)
        if row is None:
            found.append(
                f"{imp.importer} has no row in the import table: add one to "
                "docs/architecture.md and to RULES in tests/test_architecture.py"
            )
            continue
        key, rule = row
        if own_package(imp.target) == own_package(imp.importer):
            continue  # within a package: only cycles are checked
        if any(covers(entry, imp.target) for entry in rule.allowed):
            continue
        allowed = ", ".join(sorted(rule.allowed)) or "nothing from hardflow"
        found.append(
            f"{imp.importer} (line {imp.line}) imports {imp.target}: the rule for {key} "
            f"allows {allowed} ({rule.why})"
        )
    return sorted(set(found))


def find_cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return [_cycle_in(component, edges) for component in components]


def _cycle_in(component: list[str], edges: Mapping[str, set[str]]) -> list[str]:
    """A concrete cycle through the component's first module (breadth-first: a short one)."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges.get(v, ())):
            if w == start:
                return [*paths[v], start]
            if w in members and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start} in {component}")


def module_edges(imports: list[Import]) -> dict[str, set[str]]:
    modules = source_files()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.importer:
            edges[imp.importer].add(imp.target)
    return edges


# ---------------------------------------------------------------------------------------------
# the tests


def test_the_tree_is_read() -> None:
    names = source_files()
    assert {"hardflow.errors", "hardflow.build.pipeline", "hardflow.image.entrypoint"} <= set(names)
    assert any(i.target == "hardflow.errors" for i in hardflow_imports())


def test_every_module_has_a_rule() -> None:
    missing = [name for name in source_files() if rule_for(name) is None]
    assert missing == [], f"modules with no row in the import table: {missing}"


def is_pending(imp: Import) -> bool:
    return any(
        imp.importer == importer and covers(target, imp.target) for importer, target in PENDING
    )


def test_imports_follow_the_table() -> None:
    problems = violations([i for i in hardflow_imports() if not is_pending(i)])
    assert problems == [], "imports the table does not allow:\n" + "\n".join(problems)


def test_pending_entries_still_apply() -> None:
    imports = hardflow_imports()
    stale = [
        f"{importer} -> {target}"
        for importer, target in PENDING
        if not violations(
            [i for i in imports if i.importer == importer and covers(target, i.target)]
        )
    ]
    assert stale == [], f"PENDING entries that no longer match a forbidden import: {stale}"


def test_no_import_cycles() -> None:
    cycles = find_cycles(module_edges(hardflow_imports()))
    shown = "\n".join(" -> ".join(cycle) for cycle in cycles)
    assert cycles == [], f"modules that import each other in a cycle:\n{shown}"


STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
# The two scripts that exist to drive Airflow import it (and what it installs), inside functions
# only: each must also start (and report) in an image whose Airflow is broken.
AIRFLOW_DRIVERS = frozenset({"hardflow.image.dagcheck_loader", "hardflow.image.standalone"})
AIRFLOW_SIDE = frozenset({"airflow", "setproctitle"})
# A module Airflow imports by name from its config (compose mounts it; see its docstring): it
# subclasses a class of a package the Airflow image installs, so it imports that one package at
# module level, and nothing else.
AIRFLOW_IMPORTED = {"hardflow.image.hardflow_statsd": frozenset({"statsd"})}


def image_violations() -> list[str]:
    found: list[str] = []
    for name, path in source_files().items():
        if not name.startswith(f"{TOP}.image."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                found.append(f"{name} (line {node.lineno}): a relative import in the image")
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""]
            else:
                continue
            for target in targets:
                head = target.split(".")[0]
                if head in STDLIB:
                    continue
                if head in AIRFLOW_SIDE and name in AIRFLOW_DRIVERS and id(node) not in top_level:
                    continue
                if head in AIRFLOW_IMPORTED.get(name, ()):
                    continue
                found.append(
                    f"{name} (line {node.lineno}) imports {target}: files that go into the "
                    "image import the standard library only"
                    + (" (Airflow inside functions)" if name in AIRFLOW_DRIVERS else "")
                )
    return found


def test_image_files_import_the_standard_library_only() -> None:
    problems = image_violations()
    assert problems == [], "\n".join(problems)


def long_modules() -> list[str]:
    found: list[str] = []
    for path in source_files().values():
        rel = path.relative_to(SRC).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and rel not in LONG_ON_PURPOSE:
            found.append(f"{rel}: {lines} lines")
    return found


def test_no_module_is_too_long() -> None:
    long = long_modules()
    assert long == [], f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(long)


# ---------------------------------------------------------------------------------------------
# the doc says what the test enforces

_ROW = re.compile(r"^\|\s*`(?P<key>[\w.]+)`\s*\|(?P<allowed>[^|]*)\|")
_BACKTICKED = re.compile(r"`([\w.]+)`")


def doc_table() -> dict[str, tuple[bool, frozenset[str]]]:
    """Rows of the import table in docs/architecture.md: key -> (the base?, names beyond it)."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Who may import whom", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[bool, frozenset[str]]] = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            column = match["allowed"]
            words = _BACKTICKED.sub(" ", column).replace(",", " ").split()
            rows[match["key"]] = ("base" in words, frozenset(_BACKTICKED.findall(column)))
    return rows


def test_the_doc_table_is_the_enforced_table() -> None:
    base = frozenset(f"{TOP}.{n}" if n != TOP else TOP for n in BASE)
    expected: dict[str, tuple[bool, frozenset[str]]] = {}
    for key, rule in RULES.items():
        with_base = base <= rule.allowed
        beyond = rule.allowed - base if with_base else rule.allowed
        names = frozenset(n.removeprefix(f"{TOP}.") for n in beyond)
        expected[key.removeprefix(f"{TOP}.")] = (with_base, names)
    documented = doc_table()
    assert documented == expected, (
        "docs/architecture.md's import table and RULES differ: "
        f"only in the doc {sorted(documented.items() - expected.items())}, "
        f"only in the test {sorted(expected.items() - documented.items())}"
    )


# ---------------------------------------------------------------------------------------------
# the checks themselves catch what they should


def test_a_forbidden_import_names_both_modules_and_the_rule() -> None:
    (problem,) = violations([Import("hardflow.run.engine", "hardflow.build.pipeline", 7)])
    assert "hardflow.run.engine (line 7) imports hardflow.build.pipeline" in problem
    assert "the rule for hardflow.run" in problem
    assert violations([Import("hardflow.lock.resolve", "hardflow.debian.repo", 1)]) == []
    assert violations([Import("hardflow.lock.model", "hardflow.debian.repo", 1)]) != []
    assert violations([Import("hardflow.debian.deb", "hardflow.lock.resolve", 1)]) != []
    assert violations([Import("hardflow.oci.writer", "hardflow.oci.layer", 1)]) == []


def test_a_cycle_is_reported_as_a_path() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_found_at_any_depth(tmp_path: Path) -> None:
    fake = tmp_path / "engine.py"
    fake.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from hardflow.build import pipeline\n"
        "def f():\n    import hardflow.supply.sign\n"
        "    from . import runner\n"
    )
    found = {(i.target, i.line) for i in imports_of("hardflow.run.engine", fake)}
    assert {
        ("hardflow.build.pipeline", 3),
        ("hardflow.supply.sign", 5),
        ("hardflow.run.runner", 6),
    } <= found
