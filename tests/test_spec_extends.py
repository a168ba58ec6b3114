"""``extends``: a spec flattened onto its base (an embedded spec or a .toml beside it)."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from hardflow.errors import SpecError
from hardflow.spec import (
    EXTENDS_MAX_DEPTH,
    embedded_spec_names,
    load_embedded,
    load_spec,
    parse_spec,
    read_extra_file,
)

FIVE_LINES = """\
extends = "default"
name = "acme/airflow"
tag = "1"
[python]
requirements = ["apache-airflow-providers-http", "tabulate"]
"""

BASE = """
name = "acme/base"
tag = "1.0"
[debian]
suites = ["trixie", "trixie-updates"]
components = ["main", "contrib"]
packages = ["bash", "tini"]
excludes = ["perl-base"]
[python]
version = "3.13"
glibc = "2.41"
requirements = ["apache-airflow==3.3.2", "celery<5.7"]
excludes = ["python-nvd3"]
[image]
user = "airflow"
uid = 50000
entrypoint = ["/usr/bin/tini", "--"]
cmd = ["standalone"]
ports = [8080]
healthcheck = ["CMD", "/usr/local/bin/health"]
[image.env]
A = "base"
B = "base"
[image.labels]
"org.example.title" = "base"
[[files]]
dest = "/etc/one"
source = "files/one.txt"
[[files]]
dest = "/etc/two"
content = "two from the base"
[[files]]
dest = "/bin/sh"
link = "bash"
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    write(tmp_path / "base" / "files", "one.txt", "one from the base folder\n")
    return write(tmp_path / "base", "base.toml", BASE)


def child(tmp_path: Path, text: str, extends: str = "../base/base.toml") -> Path:
    return write(tmp_path / "app", "app.toml", f'extends = "{extends}"\n{text}')


# --------------------------------------------------------------------------------------------
# the five-line spec of the README, on the real embedded default


def test_the_five_line_spec_extends_the_embedded_default(tmp_path: Path) -> None:
    default = load_embedded()
    spec = load_spec(write(tmp_path, "img.toml", FIVE_LINES))
    assert spec.reference == "acme/airflow:1"
    assert spec.python.requirements == (
        *default.python.requirements,
        "apache-airflow-providers-http",
        "tabulate",
    )
    # everything else is the default's
    assert spec.debian == default.debian
    assert replace(spec.python, requirements=()) == replace(default.python, requirements=())
    for key in ("user", "uid", "gid", "home", "workdir", "env", "entrypoint", "cmd", "labels",
                "ports", "stop_signal", "healthcheck", "files"):  # fmt: skip
        assert getattr(spec, key) == getattr(default, key), key
    assert spec.source == str(tmp_path / "img.toml") and spec.base_dir == str(tmp_path)
    # the base's packaged files are read from the package, not from the spec's folder
    entry = next(f for f in spec.files if f.dest == "/usr/local/lib/hardflow/health.py")
    assert read_extra_file(spec, entry) == read_extra_file(default, entry)
    # a different flattened spec: its own lock
    assert spec.lock_checksum() != default.lock_checksum()
    assert spec.checksum() != default.checksum()


def test_the_embedded_specs_still_match_their_committed_locks() -> None:
    for name in embedded_spec_names():
        lock = resources.files("hardflow.specs").joinpath(f"{name}.lock.json")
        if not lock.is_file():
            continue
        committed = json.loads(lock.read_text(encoding="utf-8"))["spec_checksum"]
        assert load_embedded(name).lock_checksum() == committed, name


# --------------------------------------------------------------------------------------------
# merge semantics, one key kind at a time


def test_list_keys_add_to_the_base_once_each_in_order(tmp_path: Path, base: Path) -> None:
    spec = load_spec(child(tmp_path, """
[debian]
packages = ["tini", "curl"]
excludes = ["dpkg", "perl-base"]
[python]
requirements = ["tabulate", "celery<5.7"]
excludes = ["other-dist"]
"""))  # fmt: skip
    assert spec.debian.packages == ("bash", "tini", "curl")
    assert spec.debian.excludes == ("perl-base", "dpkg")
    assert spec.python.requirements == ("apache-airflow==3.3.2", "celery<5.7", "tabulate")
    assert spec.python.excludes == ("python-nvd3", "other-dist")


def test_scalars_and_other_lists_override(tmp_path: Path, base: Path) -> None:
    spec = load_spec(child(tmp_path, """
name = "acme/app"
tag = "2"
[debian]
suites = ["bookworm"]
components = ["main"]
architecture = "arm64"
[python]
version = "3.12"
glibc = "2.36"
[image]
user = "worker"
uid = 60000
entrypoint = ["/usr/bin/python3.12"]
cmd = ["scheduler"]
ports = [8793]
healthcheck = ["NONE"]
"""))  # fmt: skip
    assert spec.reference == "acme/app:2"
    assert spec.debian.suites == ("bookworm",) and spec.debian.components == ("main",)
    assert spec.debian.architecture == "arm64" and spec.debian.packages == ("bash", "tini")
    assert (spec.python.version, spec.python.glibc) == ("3.12", "2.36")
    assert (spec.user, spec.uid, spec.gid) == ("worker", 60000, 0)
    assert spec.entrypoint == ("/usr/bin/python3.12",) and spec.cmd == ("scheduler",)
    assert spec.ports == (8793,) and spec.healthcheck == ("NONE",)


def test_omitted_keys_come_from_the_base(tmp_path: Path, base: Path) -> None:
    spec = load_spec(child(tmp_path, ""))
    reference = load_spec(base)
    assert spec.reference == "acme/base:1.0"
    assert (spec.debian, spec.python) == (reference.debian, reference.python)
    assert spec.lock_checksum() == reference.lock_checksum()
    assert spec.checksum() == reference.checksum()  # same bytes from the same base folder


def test_tables_merge_key_by_key(tmp_path: Path, base: Path) -> None:
    spec = load_spec(child(tmp_path, """
[image.env]
B = "child"
C = "child"
[image.labels]
"org.example.version" = "2"
"""))  # fmt: skip
    assert spec.env == {"A": "base", "B": "child", "C": "child"}
    assert spec.labels == {"org.example.title": "base", "org.example.version": "2"}


def test_a_files_entry_for_a_base_destination_replaces_it(tmp_path: Path, base: Path) -> None:
    write(tmp_path / "app" / "files", "one.txt", "one from the app folder\n")
    spec = load_spec(child(tmp_path, """
[[files]]
dest = "/etc/two"
source = "files/one.txt"
[[files]]
dest = "/usr/bin/sh"
link = "dash"
[[files]]
dest = "/etc/three"
content = "three"
"""))  # fmt: skip
    # in place, where the base had them; new entries after the base's
    assert [f.dest for f in spec.files] == ["/etc/one", "/etc/two", "/usr/bin/sh", "/etc/three"]
    data = {f.dest: read_extra_file(spec, f) for f in spec.files if not f.link}
    assert data == {
        "/etc/one": b"one from the base folder\n",  # the base's relative source: its folder
        "/etc/two": b"one from the app folder\n",  # the child's: the child's folder
        "/etc/three": b"three",
    }
    assert spec.files[2].link == "dash"  # /usr/bin/sh is /bin/sh in the image


def test_two_own_entries_for_one_path_are_still_an_error(tmp_path: Path, base: Path) -> None:
    path = child(tmp_path, '[[files]]\ndest = "/etc/two"\ncontent = "a"\n'
                 '[[files]]\ndest = "/etc/two"\ncontent = "b"\n')  # fmt: skip
    with pytest.raises(SpecError, match=r"files\[1\].*already written by files\[0\]"):
        load_spec(path)


def test_nothing_is_written_below_an_inherited_link(tmp_path: Path, base: Path) -> None:
    path = child(tmp_path, '[[files]]\ndest = "/usr/bin/sh/x"\ncontent = "a"\n')
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    msg = exc.value.message
    assert msg.startswith(str(path)) and "files[0]" in msg and "symbolic link" in msg
    assert str(base.resolve()) in msg  # the other entry: the base's


def test_a_base_file_changes_the_checksum_of_the_child(tmp_path: Path, base: Path) -> None:
    before = load_spec(child(tmp_path, ""))
    checksum, lock_checksum = before.checksum(), before.lock_checksum()
    (tmp_path / "base" / "files" / "one.txt").write_text("edited\n")
    after = load_spec(child(tmp_path, ""))
    assert after.checksum() != checksum
    assert after.lock_checksum() == lock_checksum


def test_a_base_change_relocks_the_child(tmp_path: Path, base: Path) -> None:
    before = load_spec(child(tmp_path, "")).lock_checksum()
    base.write_text(BASE.replace('"celery<5.7"', '"celery<5.8"'))
    assert load_spec(child(tmp_path, "")).lock_checksum() != before


def test_a_child_may_omit_required_keys_but_the_result_must_be_valid(
    tmp_path: Path, base: Path
) -> None:
    path = child(tmp_path, "[debian]\nsuites = []\n")
    with pytest.raises(SpecError, match=r"debian\.suites.*at least one suite"):
        load_spec(path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("nmae = 'x'\n", "unknown key 'nmae'"),
        ("[debian]\npakages = []\n", "unknown key 'debian.pakages'"),
        ("[python]\nrequirement = []\n", "unknown key 'python.requirement'"),
        ("[image]\nenvs = {}\n", "unknown key 'image.envs'"),
        ("[[files]]\ndest = '/x'\ncontents = 'a'\n", r"unknown key 'files\[0\].contents'"),
        ("[python]\nrequirements = 'tabulate'\n", "python.requirements'.*an array of strings"),
        ("[image]\nports = 8080\n", "image.ports'.*port numbers"),
    ],
)
def test_unknown_keys_and_wrong_types_are_refused_in_the_child(
    tmp_path: Path, base: Path, text: str, key: str
) -> None:
    path = child(tmp_path, text)
    with pytest.raises(SpecError, match=key) as exc:
        load_spec(path)
    assert exc.value.message.startswith(str(path))


def test_an_error_in_the_base_names_the_base(tmp_path: Path, base: Path) -> None:
    base.write_text(BASE + "[extra]\n")
    with pytest.raises(SpecError, match="unknown key 'extra'") as exc:
        load_spec(child(tmp_path, ""))
    assert exc.value.message.startswith(str(base.resolve()))


# --------------------------------------------------------------------------------------------
# chains, cycles, depth, bad names


def test_a_chain_is_flattened_with_each_base_from_its_own_folder(tmp_path: Path) -> None:
    write(tmp_path / "a" / "files", "a.txt", "from a\n")
    write(tmp_path / "a", "a.toml", BASE.replace("files/one.txt", "files/a.txt"))
    write(tmp_path / "b" / "files", "a.txt", "from b (not read)\n")
    write(tmp_path / "b", "b.toml", 'extends = "../a/a.toml"\ntag = "b"\n'
          "[python]\nrequirements = ['from-b']\n")  # fmt: skip
    c = write(tmp_path / "c", "c.toml", 'extends = "../b/b.toml"\nname = "acme/c"\n'
              "[python]\nrequirements = ['from-c']\n")  # fmt: skip
    spec = load_spec(c)
    assert spec.reference == "acme/c:b"
    assert spec.python.requirements[-2:] == ("from-b", "from-c")
    assert read_extra_file(spec, spec.files[0]) == b"from a\n"


def test_an_embedded_base_chain_and_names(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec(write(tmp_path, "x.toml", 'extends = "no-such-spec"\n'))
    msg = exc.value.message
    assert "key 'extends'" in msg and "'no-such-spec'" in msg and "default" in msg


@pytest.mark.parametrize("value", ["/etc/base.toml", "missing.toml", ""])
def test_a_bad_base_path_is_a_spec_error(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "x.toml", f'extends = "{value}"\n')
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert exc.value.message.startswith(str(path)) and "extends" in exc.value.message


def test_a_cycle_names_the_files(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'extends = "b.toml"\n')
    write(tmp_path, "b.toml", 'extends = "sub/../a.toml"\n')
    (tmp_path / "sub").mkdir()
    with pytest.raises(SpecError, match="cycle") as exc:
        load_spec(tmp_path / "a.toml")
    msg = exc.value.message
    a, b = str((tmp_path / "a.toml").resolve()), str((tmp_path / "b.toml").resolve())
    assert f"{a} -> {b} -> {a}" in msg


def test_a_spec_extending_itself_is_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml", 'extends = "./a.toml"\n')
    with pytest.raises(SpecError, match="cycle"):
        load_spec(path)


def test_the_depth_is_limited(tmp_path: Path) -> None:
    write(tmp_path, "s0.toml", BASE.replace("files/one.txt", "s0.toml"))
    for i in range(1, EXTENDS_MAX_DEPTH + 2):
        write(tmp_path, f"s{i}.toml", f'extends = "s{i - 1}.toml"\n')
    assert load_spec(tmp_path / f"s{EXTENDS_MAX_DEPTH}.toml").name == "acme/base"
    with pytest.raises(SpecError, match=f"at most {EXTENDS_MAX_DEPTH} levels") as exc:
        load_spec(tmp_path / f"s{EXTENDS_MAX_DEPTH + 1}.toml")
    assert "s0.toml" in exc.value.message and f"s{EXTENDS_MAX_DEPTH + 1}.toml" in exc.value.message


def test_extends_must_be_a_string(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="key 'extends': expected a string"):
        load_spec(write(tmp_path, "x.toml", "extends = 1\n"))


def test_a_fifo_as_base_is_refused_without_hanging(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "fifo.toml")
    with pytest.raises(SpecError, match="cannot read the base spec"):
        load_spec(write(tmp_path, "x.toml", 'extends = "fifo.toml"\n'))


def test_parse_spec_resolves_a_base_relative_to_base_dir(tmp_path: Path, base: Path) -> None:
    spec = parse_spec({"extends": "base.toml", "tag": "9"}, "<test>", str(base.parent))
    assert spec.reference == "acme/base:9" and spec.source == "<test>"


def test_a_spec_or_base_may_be_a_symbolic_link(tmp_path: Path, base: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "base.toml").symlink_to(base)
    link = tmp_path / "app" / "link.toml"  # relative paths: from the folder of the link
    link.symlink_to(child(tmp_path, "", extends="base.toml"))
    spec = load_spec(link)
    assert spec.reference == "acme/base:1.0"
    assert read_extra_file(spec, spec.files[0]) == b"one from the base folder\n"
