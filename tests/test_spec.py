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
    assert {"python3.13", "bash", "tini", "ca-certificates", "tzdata"} <= set(
        spec.debian.packages
    )


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
    p = write(tmp_path, MINIMAL + "[image]\nuid = \"50000\"\n")
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
    with pytest.raises(SpecError, match="exactly one of 'source' or 'content'"):
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
