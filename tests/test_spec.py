from pathlib import Path

import pytest

from hardflow.errors import SpecError
from hardflow.spec import load_embedded, load_spec, resolve_spec_arg

MINIMAL = """
name = "acme/airflow"
tag = "1.0"
[debian]
suites = ["trixie"]
packages = ["bash"]
[python]
version = "3.13"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "img.toml"
    p.write_text(text)
    return p


def test_embedded_default_is_valid() -> None:
    spec = load_embedded()
    assert spec.name == "hardflow/airflow"
    assert "apache-airflow==3.3.2" in spec.python.requirements
    assert spec.uid == 50000 and spec.gid == 0
    assert spec.debian.suites == ("trixie", "trixie-updates", "trixie-security")
    assert {"python3.13", "bash", "tini", "ca-certificates", "tzdata"} <= set(spec.debian.packages)


def test_minimal_spec_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.reference == "acme/airflow:1.0"
    assert spec.home == "/opt/airflow"
    assert spec.python.interpreter_path == "/usr/bin/python3.13"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL.replace('packages = ["bash"]', 'packages = ["bash"]\npakages=[]'))
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    msg = exc.value.diagnostics()
    assert str(p) in msg and "debian.pakages" in msg and "allowed keys" in msg


def test_wrong_type_says_expected_and_found(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + '[image]\nuid = "50000"\n')
    with pytest.raises(SpecError, match=r"image\.uid'.*expected an integer.*found string"):
        load_spec(p)


def test_missing_required_key(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL.replace('tag = "1.0"\n', ""))
    with pytest.raises(SpecError, match="missing required key 'tag'"):
        load_spec(p)


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "name = \n"))


def test_files_need_exactly_one_source(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + '[[files]]\ndest = "/x"\n')
    with pytest.raises(SpecError, match="exactly one of 'source', 'content' or 'link'"):
        load_spec(p)


def test_lock_checksum_ignores_metadata_but_not_packages(tmp_path: Path) -> None:
    a = load_spec(write(tmp_path, MINIMAL))
    b = load_spec(write(tmp_path, MINIMAL + '[image]\nlabels = {a = "b"}\n'))
    c = load_spec(write(tmp_path, MINIMAL.replace('["bash"]', '["bash", "tini"]')))
    assert a.lock_checksum() == b.lock_checksum()
    assert a.checksum() != b.checksum()
    assert a.lock_checksum() != c.lock_checksum()


def test_resolve_spec_arg_pairs_lock(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL)
    spec, lock = resolve_spec_arg(str(p))
    assert spec.name == "acme/airflow"
    assert lock == tmp_path / "img.lock.json"
    _spec, lock = resolve_spec_arg(None)
    assert lock.name == "default.lock.json"
    with pytest.raises(SpecError, match=r"no embedded spec|cannot read spec"):
        resolve_spec_arg("nonexistent-spec.toml")


# --------------------------------------------------------------------------------------------
# [[files]] link: a symbolic link instead of a file

FILE_ENTRY = '[[files]]\ndest = "/usr/local/bin/hello"\ncontent = "echo hello\\n"\nmode = "0755"\n'


def link_entry(dest: str, target: str, extra: str = "") -> str:
    return f'[[files]]\ndest = "{dest}"\nlink = "{target}"\n{extra}'


def test_a_link_entry_is_read(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL + link_entry("/bin/sh", "bash")))
    (entry,) = spec.files
    assert (entry.dest, entry.link, entry.source, entry.content) == ("/bin/sh", "bash", "", "")


def test_the_checksum_of_a_spec_without_links_did_not_change(tmp_path: Path) -> None:
    # computed with the spec module before 'link' existed: images built from specs that do not
    # use it keep their revision label and layer-cache keys
    spec = load_spec(write(tmp_path, MINIMAL + FILE_ENTRY))
    assert spec.checksum() == (
        "sha256:7a96ce81283447c3341dc7d2c84c32eb07769fef0f6dde858ceb7f560dbf785c"
    )


def test_a_link_changes_the_checksum_by_its_target(tmp_path: Path) -> None:
    base = load_spec(write(tmp_path, MINIMAL + FILE_ENTRY)).checksum()
    to_bash = load_spec(write(tmp_path, MINIMAL + FILE_ENTRY + link_entry("/bin/sh", "bash")))
    to_dash = load_spec(write(tmp_path, MINIMAL + FILE_ENTRY + link_entry("/bin/sh", "dash")))
    assert len({base, to_bash.checksum(), to_dash.checksum()}) == 3
    assert to_bash.lock_checksum() == to_dash.lock_checksum()  # files never touch the lock


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('content = "x"\n', "found 'content' and 'link'"),
        ('source = "hello.txt"\n', "found 'source' and 'link'"),
        ('mode = "0755"\n', "expected no mode on a 'link' entry"),
    ],
)
def test_a_link_entry_takes_nothing_else(tmp_path: Path, extra: str, expected: str) -> None:
    (tmp_path / "hello.txt").write_text("hi")
    p = write(tmp_path, MINIMAL + link_entry("/bin/sh", "bash", extra))
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    assert str(p) in exc.value.message and "files[0]" in exc.value.message
    assert expected in exc.value.message


@pytest.mark.parametrize(
    "target",
    [
        "",  # empty counts as 'no link': neither source nor content given
        "../etc/passwd",
        "/usr/../etc/shadow",
        "a//b",
        "./bash",
        "bash/",
        "/",
        ".",
        "//host/share",
        "tab\\there",
        "x" * 1025,
        "sh",  # dest /bin/sh: a link to itself
        "/bin/sh",
        "/usr/bin/sh",  # /bin/sh is /usr/bin/sh in the image (merged /usr)
    ],
)
def test_a_bad_link_target_is_refused(tmp_path: Path, target: str) -> None:
    p = write(tmp_path, MINIMAL + link_entry("/bin/sh", target))
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    assert str(p) in exc.value.message and "/bin/sh" in exc.value.message


def test_a_link_target_must_be_a_string(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + '[[files]]\ndest = "/bin/sh"\nlink = 1\n')
    with pytest.raises(SpecError, match=r"files\[0\]\.link'.*expected a string.*found integer"):
        load_spec(p)


FILE_BELOW = FILE_ENTRY.replace("/usr/local/bin/hello", "/opt/lib/x")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (link_entry("/opt/lib", "/usr/lib"), FILE_BELOW),
        (FILE_BELOW, link_entry("/opt/lib", "/usr/lib")),
        (link_entry("/opt/lib", "/usr/lib"), link_entry("/opt/lib/deeper/y", "z")),
        (link_entry("/opt/lib/deeper/y", "z"), link_entry("/opt/lib", "/usr/lib")),
    ],
)
def test_nothing_is_written_through_a_link(tmp_path: Path, first: str, second: str) -> None:
    p = write(tmp_path, MINIMAL + first + second)
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    assert "files[1]" in exc.value.message and "symbolic link" in exc.value.message


def test_one_path_through_the_merged_usr_link_is_one_path(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + link_entry("/bin/sh", "bash") + link_entry("/usr/bin/sh", "x"))
    with pytest.raises(SpecError, match=r"already written by files\[0\]"):
        load_spec(p)


def test_links_beside_each_other_are_fine(tmp_path: Path) -> None:
    spec = load_spec(
        write(tmp_path, MINIMAL + link_entry("/opt/a", "/x") + link_entry("/opt/ab", "/y"))
    )
    assert [f.link for f in spec.files] == ["/x", "/y"]


def test_the_embedded_airflow_specs_provide_the_paths_the_chart_calls() -> None:
    for name in ("default", "airflow2"):
        spec = load_embedded(name)
        by_dest = {f.dest: f for f in spec.files}
        assert by_dest["/bin/sh"].link == "bash"
        assert by_dest["/entrypoint"].link == "/usr/local/lib/hardflow/entrypoint.py"
        assert by_dest["/usr/local/lib/hardflow/entrypoint.py"].mode == 0o755
        assert by_dest["/clean-logs"].source == "hardflow:image/clean-logs"
        assert by_dest["/clean-logs"].mode == 0o755
        assert "/usr/local/lib/hardflow/clean_logs.py" in by_dest
        config = "/usr/local/lib/hardflow/webserver_config.py"
        assert config in by_dest
        section = "FAB" if name == "default" else "WEBSERVER"
        assert spec.env[f"AIRFLOW__{section}__CONFIG_FILE"] == config
    requirements = load_embedded().python.requirements
    assert any(r.startswith("apache-airflow-providers-fab") for r in requirements)
