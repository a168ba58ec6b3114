"""The spec's ``platforms``: one image for several architectures, old specs unchanged."""

from pathlib import Path

import pytest

from hardflow.errors import SpecError
from hardflow.spec import load_embedded, load_spec, parse_platforms

MINIMAL = """
name = "acme/airflow"
tag = "1.0"
[debian]
suites = ["trixie"]
packages = ["bash"]
[python]
version = "3.13"
"""


def write(tmp_path: Path, text: str, name: str = "img.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_spec_without_platforms_has_one_and_keeps_its_checksums(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.platforms == () and spec.architectures == ("amd64",)
    assert spec.for_architecture("amd64") is spec
    # the embedded default's lock was written before 'platforms' existed and still matches
    default = load_embedded()
    assert default.architectures == ("amd64",)
    lock = Path(__file__).parents[1] / "src/hardflow/specs/default.lock.json"
    assert f'"spec_checksum": "{default.lock_checksum()}"' in lock.read_text()


def test_one_platform_is_the_same_spec_as_none(tmp_path: Path) -> None:
    plain = load_spec(write(tmp_path, MINIMAL))
    one = load_spec(write(tmp_path, 'platforms = ["linux/amd64"]\n' + MINIMAL, "one.toml"))
    assert one.platforms == ()
    assert (one.lock_checksum(), one.checksum()) == (plain.lock_checksum(), plain.checksum())
    arm = load_spec(write(tmp_path, 'platforms = ["linux/arm64/v8"]\n' + MINIMAL, "arm.toml"))
    assert arm.debian.architecture == "arm64" and arm.platforms == ()
    assert arm.lock_checksum() != plain.lock_checksum()


def test_two_platforms_change_the_lock_and_give_one_view_each(tmp_path: Path) -> None:
    plain = load_spec(write(tmp_path, MINIMAL))
    text = 'platforms = ["linux/amd64", "linux/arm64", "linux/amd64"]\n' + MINIMAL
    spec = load_spec(write(tmp_path, text, "multi.toml"))
    assert spec.platforms == ("linux/amd64", "linux/arm64")
    assert spec.architectures == ("amd64", "arm64")
    assert spec.debian.architecture == "amd64"
    assert spec.lock_checksum() != plain.lock_checksum()
    arm = spec.for_architecture("arm64")
    assert (arm.debian.architecture, arm.platforms) == ("arm64", ())
    assert arm.python == spec.python and arm.files == spec.files
    # the amd64 view is the one-platform spec: its layers are those of the plain spec
    assert spec.for_architecture("amd64").checksum() == plain.checksum()
    with pytest.raises(SpecError, match="expected one of the spec's platforms"):
        spec.for_architecture("riscv64")


def test_the_first_platform_is_primary(tmp_path: Path) -> None:
    text = 'platforms = ["linux/arm64", "linux/amd64"]\n' + MINIMAL
    spec = load_spec(write(tmp_path, text))
    assert spec.architectures == ("arm64", "amd64") and spec.debian.architecture == "arm64"


def test_a_child_inherits_the_platforms_or_chooses_one_architecture(tmp_path: Path) -> None:
    write(tmp_path, 'platforms = ["linux/amd64", "linux/arm64"]\n' + MINIMAL, "base.toml")
    child = load_spec(write(tmp_path, 'extends = "base.toml"\n', "child.toml"))
    assert child.architectures == ("amd64", "arm64")
    one = load_spec(write(tmp_path, 'extends = "base.toml"\n[debian]\narchitecture = "arm64"\n',
                          "one.toml"))  # fmt: skip
    assert one.architectures == ("arm64",) and one.platforms == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('platforms = ["linux/s390x"]\n', "key 'platforms': expected platforms among"),
        ('platforms = ["amd64"]\n', "key 'platforms': expected platforms among"),
        ("platforms = []\n", "key 'platforms': expected at least one platform"),
        ('platforms = "linux/amd64"\n', "key 'platforms': expected an array of strings"),
    ],
)
def test_bad_platforms_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, text + MINIMAL))


def test_platforms_and_an_architecture_together_are_refused(tmp_path: Path) -> None:
    text = 'platforms = ["linux/amd64", "linux/arm64"]\n' + MINIMAL.replace(
        'suites = ["trixie"]', 'suites = ["trixie"]\narchitecture = "amd64"'
    )
    with pytest.raises(SpecError, match=r"'debian\.architecture': expected it left out"):
        load_spec(write(tmp_path, text))


def test_parse_platforms_for_the_command_line() -> None:
    assert parse_platforms(["linux/arm64", " linux/amd64"], "--platform") == (
        "linux/arm64", "linux/amd64",
    )  # fmt: skip
    with pytest.raises(SpecError, match="--platform: expected platforms among"):
        parse_platforms(["windows/amd64"], "--platform")
