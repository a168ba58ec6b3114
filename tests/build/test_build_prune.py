"""The prune rules and the pure-Python ELF strip."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from hardflow.build.prune import PRUNE_RULES, prune, rule_for, strip_elf, strip_sections
from hardflow.spec import load_embedded

SITE = "usr/local/lib/python3.13/dist-packages"


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (f"{SITE}/tornado/test/web_test.py", "package-tests"),
        (f"{SITE}/libcst/_nodes/tests/test_x.py", "package-tests"),
        (f"{SITE}/tests/__init__.py", "package-tests"),
        ("usr/lib/python3.13/test/support/__init__.py", "stdlib-test-package"),
        (f"{SITE}/greenlet/greenlet.h", "c-headers-and-sources"),
        (f"{SITE}/uvloop/loop.pyx", "c-headers-and-sources"),
        ("usr/lib/x86_64-linux-gnu/libfoo.a", "static-libraries"),
        (f"{SITE}/yaml/__init__.pyi", "type-stubs"),
        (f"{SITE}/airflow/ui/dist/assets/index.js.map", "javascript-source-maps"),
        ("usr/lib/x86_64-linux-gnu/gconv/libCNS.so", "glibc-gconv-modules"),
    ],
)
def test_rules_match_their_class(path: str, rule: str) -> None:
    found = rule_for(path)
    assert found is not None and found.name == rule


@pytest.mark.parametrize(
    "path",
    [
        f"{SITE}/airflow/models/dag.py",
        f"{SITE}/sqlalchemy/testing/__init__.py",  # 'testing' is imported at run time by some
        f"{SITE}/pytest_like/contest/x.py",
        f"{SITE}/airflow/ui/dist/assets/index.js",
        f"{SITE}/psycopg2_binary.libs/libpq-a17e3caa.so.5.17",
        "usr/lib/python3.13/unittest/case.py",
        "usr/lib/python3.13/asyncio/base_events.py",
        "usr/include/python3.13/Python.h",  # not from a wheel: the rules name wheel headers
        f"{SITE}/certifi/cacert.pem",
        f"{SITE}/babel/locale-data/de.dat",
        f"{SITE}/yaml/py.typed",
    ],
)
def test_rules_leave_run_time_files_alone(path: str) -> None:
    assert rule_for(path) is None


def test_every_rule_has_a_reason() -> None:
    assert len({r.name for r in PRUNE_RULES}) == len(PRUNE_RULES)
    assert all(len(r.reason) > 40 for r in PRUNE_RULES)


def test_prune_removes_files_dirs_and_layer_entries(tmp_path: Path) -> None:
    files = {
        f"{SITE}/pkg/__init__.py": b"x = 1\n",
        f"{SITE}/pkg/tests/__init__.py": b"",
        f"{SITE}/pkg/tests/data/key.txt": b"data",
        f"{SITE}/pkg/_speed.pyi": b"def f() -> int: ...\n",
        f"{SITE}/pkg/include/pkg.h": b"int f(void);\n",
        "usr/lib/x86_64-linux-gnu/gconv/UTF-16.so": b"\x7fELF",
        "usr/lib/x86_64-linux-gnu/libz.so.1": b"\x7fELF",
    }
    layer_of: dict[str, str] = {}
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
        layer_of[rel] = "wheels"
        parts = rel.split("/")
        for i in range(1, len(parts)):
            layer_of.setdefault("/".join(parts[:i]), "wheels")
    result = prune(tmp_path, load_embedded(), layer_of, strip=False)
    assert result.removed["package-tests"] == 2
    assert result.removed["type-stubs"] == 1
    assert result.removed["c-headers-and-sources"] == 1
    assert result.removed["glibc-gconv-modules"] == 1
    assert result.removed_bytes["package-tests"] == 4
    assert (tmp_path / f"{SITE}/pkg/__init__.py").is_file()
    assert (tmp_path / "usr/lib/x86_64-linux-gnu/libz.so.1").is_file()
    for gone in (f"{SITE}/pkg/tests", f"{SITE}/pkg/include", "usr/lib/x86_64-linux-gnu/gconv"):
        assert not (tmp_path / gone).exists(), gone
        assert gone not in layer_of
    assert not any("/tests" in k or k.endswith(".pyi") for k in layer_of)
    assert f"{SITE}/pkg" in layer_of and f"{SITE}/pkg/__init__.py" in layer_of


C_SOURCE = "int answer(void) { return 42; }\nint twice(int x) { return 2 * x; }\n"


@pytest.fixture()
def shared_object(tmp_path: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on this machine")
    src = tmp_path / "lib.c"
    src.write_text(C_SOURCE)
    out = tmp_path / "libanswer.so"
    subprocess.run([cc, "-shared", "-fPIC", "-g", "-O1", "-o", str(out), str(src)], check=True)
    return out


def _readelf(*args: str) -> str:
    exe = shutil.which("readelf")
    if exe is None:
        pytest.skip("readelf is not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout


def test_strip_keeps_what_the_loader_reads(shared_object: Path, tmp_path: Path) -> None:
    original = shared_object.read_bytes()
    before = _readelf("-lW", "--dyn-syms", "-d", str(shared_object))
    assert ".debug_info" in _readelf("-SW", str(shared_object))
    assert strip_elf(shared_object)
    assert shared_object.stat().st_size < len(original)
    after_sections = _readelf("-SW", str(shared_object))
    assert ".debug_info" not in after_sections and ".symtab" not in after_sections
    assert ".dynsym" in after_sections and ".dynamic" in after_sections
    assert _readelf("-lW", "--dyn-syms", "-d", str(shared_object)) == before
    lib = ctypes.CDLL(str(shared_object))
    assert lib.answer() == 42 and lib.twice(21) == 42
    # deterministic, and a second strip finds nothing left to drop
    again = tmp_path / "again.so"
    again.write_bytes(original)
    strip_elf(again)
    assert again.read_bytes() == shared_object.read_bytes()
    assert strip_sections(shared_object.read_bytes()) is None


def test_strip_leaves_other_files_alone(tmp_path: Path) -> None:
    assert strip_sections(b"#!/bin/sh\necho hi\n") is None
    assert strip_sections(b"\x7fELF" + b"\0" * 10) is None
    text = tmp_path / "x.so"
    text.write_text("not an ELF file")
    assert not strip_elf(text)
    assert text.read_text() == "not an ELF file"


def test_postgres_jit_provider_goes_only_without_llvm() -> None:
    from hardflow.build.prune import active_rules

    jit = ["usr/lib/postgresql/17/lib/llvmjit.so", "usr/lib/postgresql/17/lib/bitcode/x.bc"]
    tree = [*jit, "usr/lib/postgresql/17/lib/plpgsql.so"]
    for path in jit:
        rule = rule_for(path, active_rules(tree))
        assert rule is not None and rule.name == "postgres-jit-without-llvm"
    assert rule_for("usr/lib/postgresql/17/lib/plpgsql.so", active_rules(tree)) is None
    with_llvm = [*tree, "usr/lib/x86_64-linux-gnu/libLLVM.so.19.1"]
    assert all(rule_for(path, active_rules(with_llvm)) is None for path in jit)
