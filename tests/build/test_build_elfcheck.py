"""The shared-library check: real ELF files made by gcc, in small layers and in a fixture build.

Each object is linked against a stub whose SONAME is that of a real library
(``libxml2.so.2``), so its ``DT_NEEDED`` names the library although none exists. The Debian
package that provides a missing library comes from the Contents index of a fake signed
repository (helpers.fixtures_debian).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from hardflow.build.elfcheck import check_shared_libraries, check_tree
from hardflow.build.elffacts import FactsCache
from hardflow.errors import ImageError, LinkError
from hardflow.lock.fetch import Cache
from hardflow.oci.layer import Layer
from hardflow.spec import DebianSpec, ImageSpec, PythonSpec
from helpers.elf_objects import program, shared_library
from helpers.fixtures_debian import FakePackage, build_repo, write_contents

SITE = "usr/lib/python3.13/site-packages"
LIBDIR = "usr/lib/x86_64-linux-gnu"


@dataclass(frozen=True)
class Objects:
    libxml2: bytes  # SONAME libxml2.so.2
    libfoo: bytes  # SONAME libfoo.so.1
    plain: bytes  # NEEDED libxml2.so.2, no search path of its own
    both: bytes  # NEEDED libxml2.so.2 and libfoo.so.1
    origin: bytes  # NEEDED libxml2.so.2, RUNPATH $ORIGIN/../foo.libs
    old_rpath: bytes  # NEEDED libxml2.so.2, RPATH $ORIGIN
    program: bytes  # NEEDED libc.so.6, PT_INTERP /lib64/ld-linux-x86-64.so.2
    libc: bytes  # SONAME libc.so.6
    loader: bytes  # SONAME ld-linux-x86-64.so.2


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    d = tmp_path_factory.mktemp("elf")
    xml = shared_library(d, "xmlstub", soname="libxml2.so.2")
    foo = shared_library(d, "foostub", soname="libfoo.so.1")
    return Objects(
        libxml2=xml.read_bytes(),
        libfoo=foo.read_bytes(),
        plain=shared_library(d, "_plain", links=[xml]).read_bytes(),
        both=shared_library(d, "_both", links=[xml, foo]).read_bytes(),
        origin=shared_library(
            d, "_origin", links=[xml], runpath="$ORIGIN/../foo.libs"
        ).read_bytes(),
        old_rpath=shared_library(d, "_rpath", links=[xml], rpath="$ORIGIN").read_bytes(),
        program=program(d, "prog").read_bytes(),
        libc=shared_library(d, "cstub", soname="libc.so.6").read_bytes(),
        loader=shared_library(d, "ldstub", soname="ld-linux-x86-64.so.2").read_bytes(),
    )


Member = bytes | tuple[str, str]  # file content, or ("link"/"hardlink", target) / ("dir", "")


def make_layer(directory: Path, name: str, members: Mapping[str, Member]) -> Layer:
    """A gzip layer blob holding ``members`` (parents added as directories)."""
    buf = io.BytesIO()
    dirs = sorted({"/".join(p.split("/")[:i]) for p in members for i in range(1, p.count("/") + 1)})
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            if d not in members:
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
        for path, value in members.items():
            info = tarfile.TarInfo(path)
            if isinstance(value, bytes):
                info.size, info.mode = len(value), 0o755
                tar.addfile(info, io.BytesIO(value))
                continue
            kind, target = value
            info.type = {"link": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "dir": tarfile.DIRTYPE}[kind]  # fmt: skip
            info.linkname = target
            tar.addfile(info)
    raw = buf.getvalue()
    blob = gzip.compress(raw, mtime=0)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.tar.gz"
    path.write_bytes(blob)
    return Layer(name, path, "sha256:" + hashlib.sha256(blob).hexdigest(),
                 "sha256:" + hashlib.sha256(raw).hexdigest(), len(blob), len(raw),
                 len(members))  # fmt: skip


def spec_for(keyring: Path | str = "/nonexistent.gpg", arch: str = "amd64",
             env: Mapping[str, str] | None = None) -> ImageSpec:  # fmt: skip
    return ImageSpec(
        name="test/elf",
        tag="1",
        debian=DebianSpec(suites=("trixie",), architecture=arch, keyring=str(keyring)),
        python=PythonSpec("3.13"),
        env=dict(env or {}),
    )


def missing_of(tmp_path: Path, *layers: Mapping[str, Member], **kw: object) -> dict[str, list[str]]:
    made = [make_layer(tmp_path / "blobs", f"l{i}", m) for i, m in enumerate(layers)]
    result = check_tree(made, str(kw.get("arch", "amd64")), dict(kw.get("env", {})),  # type: ignore[call-overload]
                        tmp_path / "facts")  # fmt: skip
    return {m.library: list(m.needed_by) for m in result.missing}


# ---------------------------------------------------------------------------------------------
# where the loader looks


def test_a_library_in_no_search_directory_is_missing(tmp_path: Path, objs: Objects) -> None:
    missing = missing_of(tmp_path, {f"{SITE}/foo/_bar.so": objs.plain,
                                    "opt/elsewhere/libxml2.so.2": objs.libxml2})  # fmt: skip
    assert missing == {"libxml2.so.2": [f"{SITE}/foo/_bar.so"]}


def test_origin_runpath_finds_the_wheel_libs_dir(tmp_path: Path, objs: Objects) -> None:
    base = {f"{SITE}/foo/_bar.so": objs.origin}
    assert missing_of(tmp_path / "a", {**base, f"{SITE}/foo.libs/libxml2.so.2": objs.libxml2}) == {}
    # the same library one directory off is not found: $ORIGIN really was expanded
    assert missing_of(tmp_path / "b", {**base, f"{SITE}/libxml2.so.2": objs.libxml2}) == {
        "libxml2.so.2": [f"{SITE}/foo/_bar.so"]
    }


def test_origin_rpath_and_a_library_from_another_layer(tmp_path: Path, objs: Objects) -> None:
    lower = {f"{SITE}/bar/libxml2.so.2": objs.libxml2}
    upper = {f"{SITE}/bar/_baz.so": objs.old_rpath}
    assert missing_of(tmp_path, lower, upper) == {}


def test_merged_usr_symlinks_are_followed(tmp_path: Path, objs: Objects) -> None:
    base = {
        "lib": ("link", "usr/lib"),
        f"{LIBDIR}/libxml2.so.2.9.14": objs.libxml2,
        f"{LIBDIR}/libxml2.so.2": ("link", "libxml2.so.2.9.14"),
        "usr/local/lib/x.so": ("link", "/lib/x86_64-linux-gnu/libxml2.so.2"),
    }
    assert missing_of(tmp_path, base, {f"{SITE}/foo/_bar.so": objs.plain}) == {}


@pytest.mark.parametrize(
    "library",
    [
        ("link", "libxml2.so.2.9.14"),  # dangling: the target is not there
        ("link", "libxml2.so.2"),  # a loop
        b"INPUT(libxml2.so.2.9.14)\n" * 4,  # not an ELF file (a linker script)
        ("dir", ""),
    ],
    ids=["dangling-link", "link-loop", "not-elf", "directory"],
)
def test_what_does_not_count_as_the_library(tmp_path: Path, objs: Objects, library: Member) -> None:
    layer = {f"{LIBDIR}/libxml2.so.2": library, f"{SITE}/foo/_bar.so": objs.plain}
    assert missing_of(tmp_path, layer) == {"libxml2.so.2": [f"{SITE}/foo/_bar.so"]}


def test_a_whiteout_removes_a_lower_layers_library(tmp_path: Path, objs: Objects) -> None:
    lower = {f"{LIBDIR}/libxml2.so.2": objs.libxml2, f"{SITE}/foo/_bar.so": objs.plain}
    assert missing_of(tmp_path / "a", lower) == {}
    upper = {f"{LIBDIR}/.wh.libxml2.so.2": b""}
    assert missing_of(tmp_path / "b", lower, upper) == {"libxml2.so.2": [f"{SITE}/foo/_bar.so"]}


def test_a_hard_link_carries_its_targets_facts(tmp_path: Path, objs: Objects) -> None:
    layer = {f"{LIBDIR}/libxml2.so.2.9": objs.libxml2,
             f"{LIBDIR}/libxml2.so.2": ("hardlink", f"{LIBDIR}/libxml2.so.2.9"),
             f"{SITE}/a/_bar.so": objs.plain,
             f"{SITE}/b/_bar.so": ("hardlink", f"{SITE}/a/_bar.so")}  # fmt: skip
    assert missing_of(tmp_path / "a", layer) == {}
    del layer[f"{LIBDIR}/libxml2.so.2"]
    assert missing_of(tmp_path / "b", layer) == {
        "libxml2.so.2": [f"{SITE}/a/_bar.so", f"{SITE}/b/_bar.so"]
    }


def test_ld_so_conf_counts_only_with_the_cache(tmp_path: Path, objs: Objects) -> None:
    layer: dict[str, Member] = {
        "etc/ld.so.conf": b"include /etc/ld.so.conf.d/*.conf\n",
        "etc/ld.so.conf.d/opt.conf": b"# the vendor's libraries\n/opt/vendor/lib\n",
        "opt/vendor/lib/libxml2.so.2": objs.libxml2,
        f"{SITE}/foo/_bar.so": objs.plain,
    }
    # without /etc/ld.so.cache the loader never reads ld.so.conf
    assert missing_of(tmp_path / "a", layer) == {"libxml2.so.2": [f"{SITE}/foo/_bar.so"]}
    assert missing_of(tmp_path / "b", {**layer, "etc/ld.so.cache": b"cache"}) == {}


def test_ld_library_path_of_the_image_counts(tmp_path: Path, objs: Objects) -> None:
    layer = {"opt/x/libxml2.so.2": objs.libxml2, f"{SITE}/foo/_bar.so": objs.plain}
    assert missing_of(tmp_path, layer, env={"LD_LIBRARY_PATH": "/opt/y:/opt/x"}) == {}


def test_programs_need_their_interpreter(tmp_path: Path, objs: Objects) -> None:
    prog = {"usr/bin/prog": objs.program}
    assert missing_of(tmp_path / "a", prog) == {
        "/lib64/ld-linux-x86-64.so.2": ["usr/bin/prog"],
        "libc.so.6": ["usr/bin/prog"],
    }
    base = {
        "lib64": ("link", "usr/lib64"),
        "usr/lib64/ld-linux-x86-64.so.2": ("link", f"/{LIBDIR}/ld-linux-x86-64.so.2"),
        f"{LIBDIR}/ld-linux-x86-64.so.2": objs.loader,
        f"{LIBDIR}/libc.so.6": objs.libc,
    }
    assert missing_of(tmp_path / "b", base, prog) == {}


def test_the_allow_list_accepts_only_its_path_and_library(
    tmp_path: Path, objs: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hardflow.build import elfcheck

    rule = elfcheck.Allowance(f"{SITE}/foo/*.so", "libxml2.so.2", "test")
    monkeypatch.setattr(elfcheck, "ALLOWED", (rule,))
    layers = [make_layer(tmp_path, "l0", {f"{SITE}/foo/_bar.so": objs.both,
                                          f"{SITE}/baz/_bar.so": objs.plain})]  # fmt: skip
    result = check_tree(layers, "amd64", {}, tmp_path / "facts")
    assert result.allowed == ((f"{SITE}/foo/_bar.so", "libxml2.so.2"),)
    assert {m.library: m.needed_by for m in result.missing} == {
        "libfoo.so.1": (f"{SITE}/foo/_bar.so",),
        "libxml2.so.2": (f"{SITE}/baz/_bar.so",),
    }


def test_garbage_and_foreign_elf_files_are_skipped(tmp_path: Path, objs: Objects) -> None:
    garbage = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\x3e\x00" + b"\xff" * 200
    foreign = bytearray(objs.plain)
    foreign[18:20] = (40).to_bytes(2, "little")  # 32-bit ARM: no business of this check
    layers = [make_layer(tmp_path, "l0", {f"{SITE}/bad.so": garbage,
                                          f"{SITE}/arm.so": bytes(foreign)})]  # fmt: skip
    result = check_tree(layers, "amd64", {}, tmp_path / "facts")
    assert result.missing == ()
    assert [path for path, _ in result.unreadable] == [f"{SITE}/bad.so"]
    assert "malformed ELF file" in result.unreadable[0][1]


def test_another_architecture_is_not_checked(tmp_path: Path, objs: Objects) -> None:
    layers = [make_layer(tmp_path, "l0", {f"{SITE}/foo/_bar.so": objs.plain})]
    result = check_tree(layers, "riscv64", {}, tmp_path / "facts")
    assert result.missing == () and "not checked" in result.notes[0]
    # an arm64 image's check ignores the x86-64 object (it could not load there either)
    assert check_tree(layers, "arm64", {}, tmp_path / "facts").objects == 0


# ---------------------------------------------------------------------------------------------
# the per-layer cache


def test_layer_facts_are_cached_by_diff_id(tmp_path: Path, objs: Objects) -> None:
    layers = [make_layer(tmp_path, "l0", {f"{SITE}/foo/_bar.so": objs.plain}),
              make_layer(tmp_path, "l1", {f"{LIBDIR}/libfoo.so.1": objs.libfoo})]  # fmt: skip
    first = check_tree(layers, "amd64", {}, tmp_path / "facts")
    assert (first.layers_scanned, first.layers_cached) == (2, 0)
    second = check_tree(layers, "amd64", {}, tmp_path / "facts")
    assert (second.layers_scanned, second.layers_cached) == (0, 2)
    assert second.missing == first.missing and len(first.missing) == 1
    # a damaged entry, or one that names another layer, is a miss: the layer is read again
    entry = FactsCache(tmp_path / "facts")._path(layers[0].diff_id)
    assert entry is not None and entry.is_file()
    for bad in (b"{not json", json.dumps({"format": 1, "diff_id": layers[1].diff_id}).encode(),
                json.dumps({"format": 1, "diff_id": layers[0].diff_id, "entries": [[1, 2]],
                            "whiteouts": [], "conf": {}, "unreadable": []}).encode()):  # fmt: skip
        entry.write_bytes(bad)
        again = check_tree(layers, "amd64", {}, tmp_path / "facts")
        assert (again.layers_scanned, again.missing) == (1, first.missing)


def test_a_modified_layer_blob_is_refused(tmp_path: Path, objs: Objects) -> None:
    layer = make_layer(tmp_path, "l0", {f"{SITE}/foo/_bar.so": objs.plain})
    data = bytearray(gzip.decompress(layer.path.read_bytes()))
    data[600] ^= 0xFF
    layer.path.write_bytes(gzip.compress(bytes(data), mtime=0))
    with pytest.raises(ImageError, match=r"does not match its digest|diff_id"):
        check_tree([layer], "amd64", {}, tmp_path / "facts")


# ---------------------------------------------------------------------------------------------
# the failure names the Debian package (Contents index of the fake signed repository)


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    repo = build_repo(tmp_path / "repo", [
        FakePackage("libxml2", "2.9.14", files={f"{LIBDIR}/libxml2.so.2.9.14": b"x"},
                    symlinks={f"{LIBDIR}/libxml2.so.2": "libxml2.so.2.9.14"}),
        FakePackage("libxml2-dev", "2.9.14", files={f"{LIBDIR}/libxml2.so": b"x"}),
        FakePackage("libc6", "2.41", files={f"{LIBDIR}/libc.so.6": b"x",
                                            "usr/lib64/ld-linux-x86-64.so.2": b"x"}),
    ], contents=True)  # fmt: skip
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
    monkeypatch.setenv("HARDFLOW_DEBIAN_SECURITY_MIRROR", repo.base_url)
    yield repo.keyring


def fail_message(tmp_path: Path, keyring: Path, *layers: Mapping[str, Member]) -> str:
    made = [make_layer(tmp_path / "blobs", f"l{i}", m) for i, m in enumerate(layers)]
    with pytest.raises(LinkError) as caught:
        check_shared_libraries(spec_for(keyring), made, Cache(tmp_path / "cache"))
    return caught.value.message


def test_the_failure_names_library_file_and_package(
    tmp_path: Path, objs: Objects, archive: Path
) -> None:
    message = fail_message(tmp_path, archive, {f"{SITE}/foo/_bar.so": objs.plain})
    assert (
        f"/{SITE}/foo/_bar.so needs libxml2.so.2, which the image does not have; Debian "
        'package libxml2 (trixie) provides it: add "libxml2" to [debian] packages'
    ) in message
    assert message.startswith("1 shared library is needed but not in the image")
    # the Contents index is in the download cache now, stored under its signed sha256
    assert any((tmp_path / "cache" / "sha256").rglob("*"))


def test_all_missing_libraries_are_listed_grouped(
    tmp_path: Path, objs: Objects, archive: Path
) -> None:
    message = fail_message(tmp_path, archive, {f"{SITE}/a/_one.so": objs.both,
                                               f"{SITE}/b/_two.so": objs.plain,
                                               "usr/bin/prog": objs.program})  # fmt: skip
    lines = message.splitlines()
    assert lines[0] == "4 shared libraries are needed but not in the image:"
    by_lib = {line.split(" needs ")[1].split(",")[0].split()[-1]: line for line in lines[1:]}
    assert set(by_lib) == {"libxml2.so.2", "libfoo.so.1", "libc.so.6",
                           "/lib64/ld-linux-x86-64.so.2"}  # fmt: skip
    assert f"/{SITE}/a/_one.so needs libxml2.so.2" in by_lib["libxml2.so.2"]
    assert f"(so do /{SITE}/b/_two.so)" in by_lib["libxml2.so.2"]
    assert "no Debian package of trixie provides it" in by_lib["libfoo.so.1"]
    assert 'add "libc6"' in by_lib["libc.so.6"]
    assert "needs the program interpreter" in by_lib["/lib64/ld-linux-x86-64.so.2"]
    assert 'add "libc6"' in by_lib["/lib64/ld-linux-x86-64.so.2"]


def test_a_provider_the_spec_excludes_is_named_as_such(
    tmp_path: Path, objs: Objects, archive: Path
) -> None:
    from dataclasses import replace

    spec = spec_for(archive)
    spec = replace(spec, debian=replace(spec.debian, excludes=("libxml2",)))
    layers = [make_layer(tmp_path, "l0", {f"{SITE}/foo/_bar.so": objs.plain})]
    with pytest.raises(LinkError) as caught:
        check_shared_libraries(spec, layers, Cache(tmp_path / "cache"))
    assert (
        'Debian package libxml2 (trixie) provides it: remove "libxml2" from [debian] excludes'
    ) in caught.value.message


def test_without_a_contents_index_the_failure_says_why(
    tmp_path: Path, objs: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = build_repo(tmp_path / "repo", [FakePackage("libc6", "2.41")])  # no Contents
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
    message = fail_message(tmp_path, repo.keyring, {f"{SITE}/foo/_bar.so": objs.plain})
    assert f"/{SITE}/foo/_bar.so needs libxml2.so.2, which the image does not have" in message
    assert (
        "the Debian package that provides it could not be looked up (trixie: the signed "
        "Release lists no main/Contents-amd64 index)"
    ) in message


def test_a_contents_index_that_differs_from_the_release_is_not_used(
    tmp_path: Path, objs: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    libxml2 = FakePackage("libxml2", files={f"{LIBDIR}/libxml2.so.2": b"x"})
    repo = build_repo(tmp_path / "repo", [libxml2], contents=True)
    write_contents(repo, "trixie", [], data=f"{LIBDIR}/libxml2.so.2 libs/evil\n".encode())
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
    message = fail_message(tmp_path, repo.keyring, {f"{SITE}/foo/_bar.so": objs.plain})
    assert "evil" not in message.split("could not be looked up")[0]
    assert "could not be looked up (trixie: main/Contents-amd64.gz: " in message


def test_offline_builds_do_not_look_up(tmp_path: Path, objs: Objects) -> None:
    layers = [make_layer(tmp_path, "l0", {f"{SITE}/foo/_bar.so": objs.plain})]
    with pytest.raises(LinkError, match="--offline was given"):
        check_shared_libraries(spec_for(), layers, Cache(tmp_path / "cache", offline=True))


# ---------------------------------------------------------------------------------------------
# a whole fixture build


def test_a_build_with_a_wheel_needing_a_missing_library_fails(
    tmp_path: Path, objs: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hardflow.build.pipeline import BuildOptions, build
    from hardflow.lock.model import read_lock
    from hardflow.lock.resolve import make_lock
    from hardflow.spec import load_spec
    from helpers.compilers import host_compiler
    from helpers.fixtures_wheels import IndexServer, build_wheel, write_index

    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    repo = build_repo(tmp_path / "repo", [
        FakePackage("libc6", "2.41", files={f"{LIBDIR}/libc.so.6": objs.libc}),
        FakePackage(f"python{pyver}", "3.0", depends="libc6",
                    files={f"usr/bin/python{pyver}": b"#!fake interpreter"}),
        FakePackage("libxml2", "2.9.14", depends="libc6",
                    files={f"{LIBDIR}/libxml2.so.2": objs.libxml2}),
    ], contents=True)  # fmt: skip
    wheel = build_wheel(tmp_path / "wheels", "alpha", "1.0", files={
        "alpha/__init__.py": b"", "alpha/_bar.cpython-313-x86_64-linux-gnu.so": objs.plain,
    })  # fmt: skip
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
    monkeypatch.setenv("HARDFLOW_DEBIAN_SECURITY_MIRROR", repo.base_url)
    monkeypatch.setenv("UV_NO_CACHE", "1")
    spec_path = tmp_path / "tiny.toml"
    lock_path = tmp_path / "tiny.lock.json"
    spec_path.write_text(f"""
name = "test/elf"
tag = "1"
[debian]
suites = ["trixie"]
packages = ["python{pyver}"]
keyring = "{repo.keyring}"
[python]
version = "{pyver}"
requirements = ["alpha"]
[image]
entrypoint = ["/usr/bin/python{pyver}"]
""")
    with IndexServer(write_index(tmp_path / "index", [wheel])) as server:
        monkeypatch.setenv("UV_DEFAULT_INDEX", server.url)
        make_lock(load_spec(spec_path), lock_path)
        options = BuildOptions(out_dir=tmp_path / "out", cache=Cache(tmp_path / "cache"),
                               work_dir=tmp_path / "work", compiler=host_compiler)  # fmt: skip
        with pytest.raises(LinkError) as caught:
            build(load_spec(spec_path), read_lock(lock_path), lock_path, options)
    message = caught.value.message
    assert message.startswith("1 shared library is needed but not in the image:\n- /usr/")
    assert (
        f"python{pyver}/dist-packages/alpha/_bar.cpython-313-x86_64-linux-gnu.so needs "
        "libxml2.so.2, which the "
        'image does not have; Debian package libxml2 (trixie) provides it: add "libxml2" to '
        "[debian] packages"
    ) in message
    assert not (tmp_path / "out" / "oci").exists()  # nothing was written
