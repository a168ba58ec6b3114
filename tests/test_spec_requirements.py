"""``[python] requirements-file``: pip's requirements format, read strictly and offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hardflow.errors import SpecError
from hardflow.spec import load_spec
from hardflow.spec_inputs import REQUIREMENTS_MAX_BYTES, REQUIREMENTS_MAX_DEPTH

SPEC = """
name = "acme/airflow"
tag = "1.0"
[debian]
suites = ["trixie"]
packages = ["bash"]
[python]
version = "3.13"
requirements = ["apache-airflow==3.3.2"]
requirements-file = "{name}"
"""
H1, H2, H3 = ("a" * 64, "B" * 64, "c" * 64)


def project(tmp_path: Path, requirements: str, name: str = "requirements.txt") -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(requirements)
    spec = folder / "img.toml"
    spec.write_text(SPEC.replace("{name}", name))
    return spec


def refused(spec: Path) -> str:
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    return exc.value.diagnostics()


def test_requirements_comments_markers_continuations(tmp_path: Path) -> None:
    spec = load_spec(project(tmp_path, """\
# a comment line
tabulate>=0.9  # a trailing comment

Requests[socks] >= 2.31, \\
    < 3 ; python_version >= "3.9"
apache-airflow==3.3.2
celery[redis]<5.7; sys_platform == 'linux'
"""))  # fmt: skip
    python = spec.python
    assert python.requirements == (
        "apache-airflow==3.3.2",  # [python] requirements first, then the file's, each once
        "tabulate>=0.9",
        'Requests[socks]<3,>=2.31; python_version >= "3.9"',
        'celery[redis]<5.7; sys_platform == "linux"',
    )
    assert python.requirements_file == "requirements.txt"  # as written
    assert python.hashes == {}


def test_hashes_are_read_by_canonical_name(tmp_path: Path) -> None:
    spec = load_spec(project(tmp_path, f"""\
Tabulate_Extra==0.9.0 --hash=sha256:{H1} \\
    --hash=sha256:{H2}
zope.interface==7.0 \\
    --hash sha256:{H3}
Tabulate-Extra==0.9.0 ; python_version < "3.14" --hash=sha256:{H1}
"""))  # fmt: skip
    assert spec.python.hashes == {
        "tabulate-extra": (f"sha256:{H1}", f"sha256:{H2.lower()}"),
        "zope-interface": (f"sha256:{H3}",),
    }


def test_nested_files_are_read_relative_to_the_including_file(tmp_path: Path) -> None:
    spec_path = project(tmp_path, "-r reqs/base.txt\nfirst\n")
    reqs = spec_path.parent / "reqs"
    reqs.mkdir()
    (reqs / "base.txt").write_text("--requirement more.txt\nsecond\n")
    (reqs / "more.txt").write_text("third\n-r../last.txt\n")
    (spec_path.parent / "last.txt").write_text("fourth\n")
    spec = load_spec(spec_path)
    assert spec.python.requirements[1:] == ("third", "fourth", "second", "first")


def test_a_file_may_be_included_twice_without_a_cycle(tmp_path: Path) -> None:
    spec_path = project(tmp_path, "-r common.txt\n-r common.txt\nx\n")
    (spec_path.parent / "common.txt").write_text("common\n")
    assert load_spec(spec_path).python.requirements[1:] == ("common", "x")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("-e .", "the option '-e'"),
        ("--editable=git+https://example.invalid/x.git", "'--editable=git+https"),
        ("--index-url https://example.invalid/simple", "the option '--index-url'"),
        ("-i https://example.invalid/simple", "the option '-i'"),
        ("--extra-index-url=https://example.invalid/simple", "'--extra-index-url"),
        ("-f wheels/", "the option '-f'"),
        ("--find-links wheels/", "the option '--find-links'"),
        ("-c constraints.txt", "the option '-c'"),
        ("--pre", "the option '--pre'"),
        ("--no-binary :all:", "the option '--no-binary'"),
        ("https://example.invalid/x-1.0-py3-none-any.whl", "URL or local path"),
        ("x @ https://example.invalid/x-1.0.tar.gz", "URL or local path"),
        ("./local/project", "URL or local path"),
        ("/abs/project", "URL or local path"),
        ("x-1.0-py3-none-any.whl", "URL or local path"),
        ("not a requirement!", "PEP 508"),
        ("x==1.0 --hash=md5:0123", "--hash=sha256:<64 hex digits>"),
        (f"x==1.0 --hash=sha256:{H1[:-1]}", "--hash=sha256:<64 hex digits>"),
        ("x==1.0 --hash", "--hash=sha256:<64 hex digits>"),
        (f"--hash=sha256:{H1}", "a requirement before the --hash options"),
        ("-r", "a file name after -r"),
        ("x -r other.txt", "-r FILE alone on its line"),
        (f"x>=1.0 --hash=sha256:{H1}", "pinned with =="),
        (f"x==1.* --hash=sha256:{H1}", "pinned with =="),
        (f"x --hash=sha256:{H1}", "pinned with =="),
    ],
)
def test_everything_else_is_refused_naming_file_and_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    spec = project(tmp_path, f"ok==1.0\n\n# comment\n{line}\n")
    msg = refused(spec)
    assert f"{spec.parent.resolve() / 'requirements.txt'}:4:" in msg
    assert "expected" in msg and expected in msg


def test_once_one_requirement_has_hashes_all_must(tmp_path: Path) -> None:
    spec = project(tmp_path, f"a==1.0 --hash=sha256:{H1}\n-r more.txt\n")
    (spec.parent / "more.txt").write_text("\n\nb==2.0\n")
    msg = refused(spec)
    assert f"{spec.parent.resolve() / 'more.txt'}:3:" in msg and "'b==2.0'" in msg
    assert "requirements.txt:1 has hashes" in msg


def test_a_line_number_is_the_first_line_of_a_continuation(tmp_path: Path) -> None:
    msg = refused(project(tmp_path, "a\nb==1 \\\n  --hash=sha256:bad\n"))
    assert "requirements.txt:2:" in msg


@pytest.mark.parametrize(
    "name", ["../outside.txt", "/etc/passwd", "sub/../../outside.txt", "link.txt", "."]
)
def test_the_file_stays_inside_the_spec_folder(tmp_path: Path, name: str) -> None:
    (tmp_path / "outside.txt").write_text("secret-package\n")
    spec = project(tmp_path, "x\n")
    (spec.parent / "link.txt").symlink_to(tmp_path / "outside.txt")
    spec.write_text(SPEC.replace("{name}", name))
    msg = refused(spec)
    assert str(spec) in msg and "python.requirements-file" in msg and "secret" not in msg


def test_a_nested_file_stays_inside_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret-package\n")
    spec = project(tmp_path, "-r sub/inner.txt\n")
    (spec.parent / "sub").mkdir()
    (spec.parent / "sub" / "inner.txt").write_text("-r ../../outside.txt\n")
    msg = refused(spec)
    assert "inner.txt:1:" in msg and "outside" in msg and "secret-package" not in msg
    (spec.parent / "sub" / "inner.txt").unlink()
    (spec.parent / "sub" / "inner.txt").symlink_to(tmp_path / "outside.txt")
    assert "outside" in refused(spec)


def test_a_cycle_of_includes_is_refused(tmp_path: Path) -> None:
    spec = project(tmp_path, "-r b.txt\n")
    (spec.parent / "b.txt").write_text("x\n-r requirements.txt\n")
    msg = refused(spec)
    assert "b.txt:2:" in msg and "cycle" in msg and "requirements.txt -> " in msg


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    spec = project(tmp_path, "-r r1.txt\n")
    for i in range(1, REQUIREMENTS_MAX_DEPTH + 2):
        (spec.parent / f"r{i}.txt").write_text(f"-r r{i + 1}.txt\n")
    (spec.parent / f"r{REQUIREMENTS_MAX_DEPTH + 2}.txt").write_text("x\n")
    assert f"at most {REQUIREMENTS_MAX_DEPTH} nested -r files" in refused(spec)


def test_a_diamond_of_includes_cannot_blow_up(tmp_path: Path) -> None:
    spec = project(tmp_path, "-r d1.txt\n-r d1.txt\n")
    for i in range(1, REQUIREMENTS_MAX_DEPTH):  # 2**8 reads, each within the depth limit
        (spec.parent / f"d{i}.txt").write_text(f"-r d{i + 1}.txt\n-r d{i + 1}.txt\n")
    (spec.parent / f"d{REQUIREMENTS_MAX_DEPTH}.txt").write_text("x\n")
    assert "files read through -r" in refused(spec)


def test_hostile_files_give_a_spec_error(tmp_path: Path) -> None:
    spec = project(tmp_path, "x\n")
    req = spec.parent / "requirements.txt"
    req.write_bytes(b"a\nb\x00c\n")
    assert "requirements.txt:2: expected text, found a NUL byte" in refused(spec)
    req.write_bytes(b"a\n\xff\n")
    assert "requirements.txt:2: expected UTF-8 text" in refused(spec)
    req.write_bytes(b"a" * (REQUIREMENTS_MAX_BYTES + 1))
    assert "more than 1 MiB of requirements" in refused(spec)
    req.unlink()
    os.mkfifo(req)  # opening it blocking would hang
    assert "cannot be read" in refused(spec) or "not a regular file" in refused(spec)
    req.unlink()
    req.mkdir()
    assert "python.requirements-file" in refused(spec)
    req.rmdir()
    assert "No such file" in refused(spec)


def test_a_bom_and_crlf_are_fine(tmp_path: Path) -> None:
    spec = project(tmp_path, "x\n")
    (spec.parent / "requirements.txt").write_bytes(b"\xef\xbb\xbfalpha\r\nbeta \\\r\n  >=1\r\n")
    assert load_spec(spec).python.requirements[1:] == ("alpha", "beta>=1")
