"""Hostile specs: ``[[files]] source`` must not read outside the spec's folder or the hardflow
package, every field is type-checked, and no input makes the parser raise anything but
SpecError."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardflow.errors import SpecError
from hardflow.spec import ExtraFile, ImageSpec, load_spec, parse_spec, read_extra_file

BASE = """
name = "acme/airflow"
tag = "1.0"
[debian]
suites = ["trixie"]
packages = ["bash"]
[python]
version = "3.13"
"""


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A secret outside the spec's folder."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text("top secret\n")
    return path


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "ok.txt").write_text("fine\n")
    return folder


def spec_with_source(spec_dir: Path, source: str, entries_before: int = 0) -> Path:
    text = BASE
    for i in range(entries_before):
        text += f'[[files]]\ndest = "/etc/f{i}"\ncontent = "x"\n'
    text += f"[[files]]\ndest = \"/etc/target\"\nsource = '{source}'\n"
    path = spec_dir / "img.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "source",
    [
        "/etc/passwd",
        "../outside/secret.txt",
        "files/../../outside/secret.txt",
        "hardflow:../../../../../../etc/passwd",
        "hardflow:/etc/passwd",
        "hardflow:",
        ".",
    ],
)
def test_sources_outside_their_root_are_refused(spec_dir: Path, victim: Path, source: str) -> None:
    path = spec_with_source(spec_dir, source, entries_before=2)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    msg = exc.value.message
    assert str(path) in msg  # the spec file
    assert "[[files]] entry 2" in msg and "key 'source'" in msg  # the entry and the key
    assert "expected" in msg and repr(source) in msg  # what was expected, what was found
    assert "top secret" not in exc.value.diagnostics()


def test_symlink_out_of_the_folder_is_refused_when_parsing_and_reading(
    spec_dir: Path, victim: Path
) -> None:
    (spec_dir / "files" / "link.txt").symlink_to(victim)
    with pytest.raises(SpecError, match="outside"):
        load_spec(spec_with_source(spec_dir, "files/link.txt"))
    # a link made after the spec was parsed is caught when the file is read
    spec = load_spec(spec_with_source(spec_dir, "files/later.txt"))
    (spec_dir / "files" / "later.txt").symlink_to(victim)
    with pytest.raises(SpecError, match=r"files\[0\].*outside"):
        read_extra_file(spec, spec.files[0])
    with pytest.raises(SpecError, match="outside"):
        spec.checksum()
    assert victim.read_text() == "top secret\n"


def test_symlinked_folder_escape_is_refused(spec_dir: Path, victim: Path) -> None:
    (spec_dir / "linkdir").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(SpecError, match="outside"):
        load_spec(spec_with_source(spec_dir, "linkdir/secret.txt"))


def test_sources_inside_their_root_are_read(spec_dir: Path) -> None:
    (spec_dir / "files" / "inner").symlink_to(spec_dir / "files" / "ok.txt")  # stays inside
    for source, expected in (("files/ok.txt", b"fine\n"), ("files/inner", b"fine\n"),
                             ("./files/../files/ok.txt", b"fine\n")):  # fmt: skip
        spec = load_spec(spec_with_source(spec_dir, source))
        assert read_extra_file(spec, spec.files[0]) == expected
    spec = load_spec(spec_with_source(spec_dir, "hardflow:image/health.py"))
    assert b"def " in read_extra_file(spec, spec.files[0])


def test_an_imagespec_made_without_the_parser_is_confined_too(victim: Path) -> None:
    base = parse_spec(tomllib.loads(BASE), "<test>", str(victim.parent.parent / "project"))
    spec = ImageSpec(**{**base.__dict__, "files": (ExtraFile("/x", source=str(victim)),)})
    with pytest.raises(SpecError, match="absolute path"):
        read_extra_file(spec, spec.files[0])


@pytest.mark.parametrize(
    ("extra", "key", "expected"),
    [
        ('[[files]]\ndest = "/x"\ncontent = "a"\nmode = "4755"\n', "files[0].mode", "matching"),
        ('[[files]]\ndest = "/x"\ncontent = "a"\nmode = 493\n', "files[0].mode", "a string"),
        ('[[files]]\ndest = "/"\ncontent = "a"\n', "files[0]", "absolute file path"),
        ('[[files]]\ndest = "/a/../b"\ncontent = "a"\n', "files[0]", "without '..'"),
        ('[[files]]\ndest = "/x"\ncontent = "a"\n[[files]]\ndest = "/x"\ncontent = "b"\n',
         "files[1]", "no other entry"),
        ('[image]\nenv = {"A=B" = "c"}\n', "image.env", "names matching"),
        ('[image]\nenv = {A = "a\\u0000b"}\n', "image.env.A", "without NUL"),
        ('[image]\nentrypoint = ["/bin/sh", 1]\n', "image.entrypoint", "an array of strings"),
        ('[image]\nhome = "/opt/../etc"\n', "image.home", "without '..'"),
        ('[image]\nports = [0]\n', "image.ports", "port numbers"),
        ('[image]\nuid = true\n', "image.uid", "an integer"),
        ('[image]\nlabels = {a = 1}\n', "image.labels", "a table of strings"),
    ],
)  # fmt: skip
def test_fields_are_strict(tmp_path: Path, extra: str, key: str, expected: str) -> None:
    path = tmp_path / "img.toml"
    path.write_text(BASE + extra)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert str(path) in exc.value.message and key in exc.value.message
    assert expected in exc.value.message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('suites = ["trixie"]', 'suites = ["../../x"]', "debian.suites[0]"),
        ('suites = ["trixie"]', 'suites = ["trixie"]\ncomponents = ["main", "a b"]',
         "debian.components[1]"),
        ('suites = ["trixie"]', 'suites = ["trixie"]\nmirror = "ftp.example/debian"',
         "debian.mirror"),
        ('version = "3.13"', 'version = "3.13"\nrequirements = [""]', "python.requirements[0]"),
        ('version = "3.13"', 'version = "3.13"\ninterpreter = "python3"', "python.interpreter"),
        ('version = "3.13"', 'version = "3.13"\nextra = 1', "python.extra"),
        ('tag = "1.0"', 'tag = "1.0"\nfiles = {dest = "/x"}', "'files': expected an array of"),
    ],
)  # fmt: skip
def test_debian_and_python_fields_are_strict(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = tmp_path / "img.toml"
    path.write_text(BASE.replace(old, new))
    with pytest.raises(SpecError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_spec(path)


# ---------------------------------------------------------------------------------------------
# any TOML-able document: an ImageSpec or a SpecError, nothing else

KEYS = ["name", "tag", "debian", "python", "image", "files", "suites", "packages", "version",
        "components", "architecture", "excludes", "mirror", "requirements", "dest", "source",
        "content", "mode", "env", "labels", "ports", "uid", "entrypoint", "home", "x",
        "extends", "requirements-file", "find-links", "dags", "plugins"]  # fmt: skip
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["trixie", "bash", "3.13", "/opt/x", "acme/a", "1.0", "0755", "hardflow:image/health.py",
     "../../etc/passwd", "/etc/passwd", "hardflow:../../x", "a\x00b", "http://m/debian",
     "default", "core", "..", ".", "dags", "escape", "req.txt", "../outside.toml", "self.toml",
     "escape/secret.txt"]
)  # fmt: skip
SCALARS = (
    TEXT | st.integers(-(2**40), 2**40) | st.booleans()
    | st.floats(allow_nan=True) | st.dates()
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(KEYS) | TEXT, inner, max_size=4),
    max_leaves=16,
)  # fmt: skip


def near_valid() -> st.SearchStrategy[dict[str, Any]]:
    """A valid document with some values replaced or keys added: reaches deep validation."""
    valid: dict[str, Any] = tomllib.loads(BASE)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in valid.items()}
        for _ in range(draw(st.integers(0, 3))):
            tables = [t for t in (doc, doc.get("debian"), doc.get("python")) if isinstance(t, dict)]
            table = draw(st.sampled_from(tables))
            table[draw(st.sampled_from(KEYS))] = draw(VALUES)
        if draw(st.booleans()):
            doc["files"] = draw(st.lists(st.dictionaries(st.sampled_from(KEYS), VALUES,
                                                         max_size=4), max_size=3))  # fmt: skip
        if draw(st.booleans()):
            doc["image"] = draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4))
        return doc

    return build()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A project folder with a DAG folder, a requirements file, a spec extending itself and a
    symlink out; outside it, a base spec and a secret."""
    root = tmp_path_factory.mktemp("specfuzz")
    (root / "outside.toml").write_text(BASE)
    (root / "secret.txt").write_text("top secret\n")
    project = root / "project"
    (project / "dags").mkdir(parents=True)
    (project / "req.txt").write_text("tabulate\n-r ../secret.txt\n")
    (project / "self.toml").write_text('extends = "self.toml"\n')
    (project / "escape").symlink_to(root, target_is_directory=True)
    return str(project)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(doc=near_valid() | st.dictionaries(st.sampled_from(KEYS) | TEXT, VALUES, max_size=6))
def test_any_document_gives_a_spec_or_a_spec_error(base_dir: str, doc: dict[str, Any]) -> None:
    try:
        spec = parse_spec(doc, "<fuzz>", base_dir)
    except SpecError as exc:
        assert exc.message.startswith("<fuzz>")
        return
    assert isinstance(spec, ImageSpec)
    for f in spec.files:  # a parsed source never points outside its root
        if f.source and not f.source.startswith("hardflow:"):
            assert os.path.realpath(Path(f.base_dir or base_dir, f.source)).startswith(base_dir)
    for folder in (*spec.python.find_links, spec.dags, spec.plugins):
        assert not folder or Path(folder).is_relative_to(base_dir)
