"""Run inside the image: import every module of every installed Python distribution.

Catches what a minimal image most often gets wrong: a shared library, data file or stdlib
module that a package needs at import time and that was not shipped. A module whose import
fails only because an *optional* third-party package is not installed (ModuleNotFoundError
naming a top-level module that no installed distribution provides) is counted, not failed:
those are extras the requirement set did not ask for. Everything else fails, and so does a
missing shared object (``OSError``/``ImportError`` mentioning ``.so``).

``--extensions``: only the modules that are compiled extensions (``.so``), each imported
with the package around it: what differs between the image's platforms (the pure-Python
modules are the same files on every platform). ``IMPORT_EVERYTHING_TIMEOUT``: seconds one
import may take (default 60; an emulated interpreter needs more).

``--workers N``: the modules dealt out to N shares in blocks, each imported by a child forked
after the parent imported ``WARM`` (what most distributions import anyway) and froze its
heap. Under qemu-user this is what makes the whole run affordable: a forked child inherits
the emulator's translated code along with the parent's memory, so the shared base is
translated and imported once, and the children run on every core. A child that dies (a
crashing extension) fails the module it was importing.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.metadata as md
import json
import os
import signal
import sys
import tempfile
import warnings
from pathlib import PurePosixPath
from typing import Any

# Modules that cannot be imported in this image on purpose, each with its reason.
SKIP: dict[str, str] = {
    "billiard._win": "Windows only",
    "billiard.popen_spawn_win32": "Windows only",
    "dateutil.tz.win": "Windows only",
    "dateutil.tzwin": "Windows only",
    "rich._win32_console": "Windows only",
    "rich._windows_renderer": "Windows only",
    "tzlocal.win32": "Windows only",
    "psutil._psaix": "AIX only",
    "psutil._psbsd": "BSD only",
    "psutil._psosx": "macOS only",
    "psutil._pssunos": "Solaris only",
    "psutil._pswindows": "Windows only",
    "psycopg.pq._pq_ctypes": "ctypes libpq binding: psycopg-binary's bundled libpq is used",
    "psycopg.pq.pq_ctypes": "ctypes libpq binding: psycopg-binary's bundled libpq is used",
    "psycopg.types.shapely": "needs the optional Shapely package",
    "rich_argparse.django": "needs the optional Django package",
    "flask_appbuilder.models.sqla.base_legacy": (
        "flask-appbuilder's module for Flask-SQLAlchemy 2.x: nothing imports it, the image has 3.x"
    ),
    "libcst.codegen.gen_matcher_classes": (
        "a code generator, not a library module: it builds libcst's matcher source at import "
        "time (30-60 s of CPU on a loaded 2-core machine)"
    ),
    "airflow.utils.log.task_handler_with_custom_formatter": (
        "Airflow 3.3.2 itself: imports a helper that its own airflow.utils.helpers no longer has"
    ),
}
# --extensions: a package that must be imported before a distribution's compiled modules (as
# everything that uses them does), else the extension refuses to load
BEFORE_EXTENSIONS: dict[str, str] = {"psycopg-binary": "psycopg"}
SKIP_PARTS = {"tests", "test", "testing", "_pytest", "conftest", "__main__", "e2e_test"}


def skipped_name(parts: list[str]) -> bool:
    last = parts[-1]
    return bool(SKIP_PARTS & set(parts)) or last.startswith("test_") or last.endswith(
        ("_test", "_benchmark")
    )


def modules_of(dist: md.Distribution, extensions: bool = False) -> list[str]:
    names = set()
    suffixes = (".so",) if extensions else (".py", ".so")
    for f in dist.files or ():
        p = PurePosixPath(str(f))
        if p.suffix not in suffixes or ".." in p.parts or p.parts[0].endswith(
            (".dist-info", ".data")
        ):
            continue
        parts = list(p.parts)
        last = parts[-1].split(".")[0]
        parts = [*parts[:-1], last] if last != "__init__" else parts[:-1]
        if not parts or any(not x.isidentifier() for x in parts):
            continue
        if skipped_name(parts) or ".".join(parts) in SKIP:
            continue
        names.add(".".join(parts))
    return sorted(names)


def provided_modules() -> set[str]:
    """Every dotted module/package name some installed distribution (or the stdlib) ships."""
    names = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    for dist in md.distributions():
        for f in dist.files or ():
            parts = list(PurePosixPath(str(f)).parts)
            if not parts or parts[0].endswith((".dist-info", ".data")):
                continue
            parts[-1] = parts[-1].split(".")[0]
            for i in range(1, len(parts) + 1):
                names.add(".".join(parts[:i]))
    return names


class Timeout(Exception):
    pass


TIMEOUT = int(os.environ.get("IMPORT_EVERYTHING_TIMEOUT", "60"))


def _alarm(signum: int, frame: object) -> None:
    raise Timeout(f"import took longer than {TIMEOUT} s")


Entry = tuple[str, str]  # (distribution name, module)


def entries(extensions: bool) -> tuple[int, list[Entry]]:
    # each ``metadata`` parses the METADATA file again: read every name once
    named = sorted((d.metadata["Name"].lower(), i, d) for i, d in enumerate(md.distributions()))
    todo = [(name, m) for name, _, d in named for m in modules_of(d, extensions)]
    return len(named), todo


def import_all(todo: list[Entry], provided: set[str], extensions: bool,
               progress: str | None = None) -> dict[str, object]:  # fmt: skip
    """Import each module; ``progress``: a file that names the module being imported, so
    that the parent can name it if this process dies."""
    imported = 0
    optional: dict[str, str] = {}
    failures: dict[str, str] = {}
    seen: set[str] = set()
    for dist, mod in todo:
        first = BEFORE_EXTENSIONS.get(dist) if extensions else None
        if first and dist not in seen:
            importlib.import_module(first)
        seen.add(dist)
        if progress:
            with open(progress, "w") as fh:
                fh.write(mod)
        signal.alarm(TIMEOUT)
        try:
            importlib.import_module(mod)
            imported += 1
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing and missing not in provided:
                optional[mod] = f"optional dependency {missing} not installed"
            else:
                failures[mod] = f"{type(exc).__name__}: {exc}"
        except (Timeout, KeyboardInterrupt) as exc:
            failures[mod] = f"{type(exc).__name__}: {exc}"
        except BaseException as exc:
            text = f"{type(exc).__name__}: {exc}"
            if ".so" in text or isinstance(exc, (OSError, ImportError, SystemExit)):
                failures[mod] = text
            else:
                # a library refusing to import without configuration (e.g. a provider
                # asking for a missing setting) is a logic error, not a missing file
                optional[mod] = text[:300]
        finally:
            signal.alarm(0)
    return {"imported": imported, "optional": optional, "failures": failures}


BLOCK = 40  # modules a child takes at a time
# imported by the parent before --workers forks: the base nearly every distribution pulls in
WARM = ("airflow", "airflow.models", "sqlalchemy.orm", "pydantic", "fastapi", "flask")


def forked(todo: list[Entry], provided: set[str], extensions: bool, workers: int,
           scratch: str) -> dict[str, object]:  # fmt: skip
    for name in WARM:
        with contextlib.suppress(Exception):  # the children import it again and report it
            importlib.import_module(name)
    gc.collect()
    gc.freeze()  # the children's collections skip the shared base
    # blocks of neighbouring modules dealt out in turn: a package's modules mostly stay in one
    # child, and the heavy distributions (Airflow's core and providers) are split between them
    blocks = [todo[i : i + BLOCK] for i in range(0, len(todo), BLOCK)]
    children: dict[int, tuple[str, str]] = {}
    for i in range(workers):
        share = [entry for block in blocks[i::workers] for entry in block]
        out, progress = f"{scratch}/share-{i}.json", f"{scratch}/share-{i}.progress"
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child: import its share, write its report, leave at once
            code = 1
            try:
                mine = import_all(share, provided, extensions, progress)
                with open(out + ".part", "w") as fh:
                    json.dump(mine, fh)
                os.replace(out + ".part", out)
                code = 0
            finally:
                os._exit(code)
        children[pid] = (out, progress)
    imported = 0
    optional: dict[str, str] = {}
    failures: dict[str, str] = {}
    for pid, (out, progress) in children.items():
        _, status = os.waitpid(pid, 0)
        report: dict[str, Any]
        if os.path.exists(out):
            with open(out) as fh:
                report = json.load(fh)
        else:
            last = "(before any module)"
            if os.path.exists(progress):
                with open(progress) as fh:
                    last = fh.read()
            died = f"the importing process died: wait status {status}"
            report = {"imported": 0, "optional": {}, "failures": {last: died}}
        imported += int(report["imported"])
        optional.update(report["optional"])
        failures.update(report["failures"])
    return {"imported": imported, "optional": optional, "failures": failures}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extensions", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv[1:])
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    provided = provided_modules()
    count, todo = entries(args.extensions)
    if args.workers > 1:
        with tempfile.TemporaryDirectory(prefix="import-everything-") as scratch:
            result = forked(todo, provided, args.extensions, args.workers, scratch)
    else:
        result = import_all(todo, provided, args.extensions)
    result["skipped"] = SKIP
    result["extensions_only"] = args.extensions
    result["distributions"] = count
    result["workers"] = args.workers
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
