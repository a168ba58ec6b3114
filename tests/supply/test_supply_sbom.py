"""SBOMs of images built by the real pipeline from fixture archives (and of the real image).

The fixture world: a signed fake Debian archive whose packages carry DEP-5 and free-text
copyright files (one through a ``usr/share/doc`` symlink, one with a ``+`` in its name and an
epoch in its version), and wheels whose METADATA declare licences in the three ways PyPI does.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.build.pipeline import BuildOptions, BuildResult, build
from hardflow.cli.sbom import sbom as sbom_command
from hardflow.errors import LockError
from hardflow.lock.fetch import Cache
from hardflow.lock.model import Lock, read_lock
from hardflow.lock.resolve import make_lock
from hardflow.spec import ImageSpec, load_embedded, load_spec
from hardflow.supply.sbom import (
    document,
    embedded_lock_for,
    inventory,
    read_image,
    render,
)
from hardflow.supply.sbom.licenses import (
    debian_license,
    normalise_expression,
    python_license,
)
from helpers.compilers import host_compiler
from helpers.fixtures_debian import FakePackage, build_repo
from helpers.fixtures_wheels import IndexServer, build_wheel, write_index

PYVER = f"{sys.version_info.major}.{sys.version_info.minor}"
# where `hardflow build` (run in the repository) puts the embedded default image
_DEFAULT = load_embedded()
REAL_IMAGE = (
    Path(__file__).resolve().parents[1] / "out"
    / f"{_DEFAULT.name.replace('/', '_')}-{_DEFAULT.tag}" / "oci"
)

SPEC = f"""
name = "test/sbom"
tag = "7"
[debian]
suites = ["trixie", "trixie-security"]
packages = ["python{PYVER}", "bash", "libstdc++6", "libfoo1", "oddlic"]
[python]
version = "{PYVER}"
requirements = ["alpha"]
[image]
entrypoint = ["/usr/bin/bash"]
"""

DEP5_HEAD = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
LIBC_COPYRIGHT = (
    DEP5_HEAD + "Upstream-Name: glibc\n\n"
    "Files: *\nCopyright: 1991-2025 Free Software Foundation, Inc.\nLicense: LGPL-2.1+\n\n"
    "Files: debian/*\nCopyright: the Debian maintainers\nLicense: GPL-2+\n\n"
    "License: LGPL-2.1+\n The GNU C Library is free software.\n"
)
FOO_COPYRIGHT = (
    DEP5_HEAD + "\n"
    "Files: src/*\nCopyright: someone\nLicense: Expat\n\n"
    "Files: *\nCopyright: 2020 Foo Authors\nLicense: GPL-2+ or Artistic\n"
)
ODD_COPYRIGHT = (
    DEP5_HEAD + "\n"
    "Files: *\nCopyright: 2021 Odd\nLicense: BSD-3-clause, and Odd-Permissive\n\n"
    "License: Odd-Permissive\n Do what you like, but be odd.\n"
)
FREE_TEXT = "This package was put together by someone.\n\nIt is licensed under the PSF licence.\n"


def fake_packages() -> list[FakePackage]:
    return [
        FakePackage(
            "libc6", "2.41-12", source="glibc",
            files={"usr/lib/x86_64-linux-gnu/libc.so.6": b"libc",
                   "usr/share/doc/libc6/copyright": LIBC_COPYRIGHT.encode()},
        ),
        FakePackage(
            "bash", "5.2.37-2", depends="libc6 (>= 2.40)",
            files={"bin/bash": b"#!bash", "usr/share/doc/bash/copyright": (
                DEP5_HEAD + "\nFiles: *\nCopyright: FSF\nLicense: GPL-3+\n").encode()},
        ),
        FakePackage(
            "libstdc++6", "1:14.2.0-19", source="gcc-14 (14.2.0-19)", depends="libc6",
            suites=("trixie-security",),
            files={"usr/lib/x86_64-linux-gnu/libstdc++.so.6": b"c++"},
            symlinks={"usr/share/doc/libstdc++6": "gcc-14-base"},
        ),
        FakePackage(
            "gcc-14-base", "14.2.0-19", source="gcc-14",
            files={"usr/share/doc/gcc-14-base/copyright": FREE_TEXT.encode()},
        ),
        FakePackage(
            "libfoo1", "1.0-1+b1", source="foo (1.0-1)", depends="libfoo-common | libbar",
            files={"usr/lib/libfoo.so.1": b"foo"},
            symlinks={"usr/share/doc/libfoo1": "libfoo-common"},
        ),
        FakePackage(
            "libfoo-common", "1.0-1", source="foo",
            files={"usr/share/doc/libfoo-common/copyright": FOO_COPYRIGHT.encode()},
        ),
        FakePackage(
            "oddlic", "3", depends="gcc-14-base",
            files={"usr/share/doc/oddlic/copyright": ODD_COPYRIGHT.encode()},
        ),
        FakePackage(
            f"python{PYVER}", "3.13.5-2", depends="libc6",
            files={f"usr/bin/python{PYVER}": b"#!fake interpreter",
                   f"usr/share/doc/python{PYVER}/copyright": FREE_TEXT.encode()},
        ),
    ]  # fmt: skip


def relicense(wheel: Path, headers: list[str]) -> Path:
    """Add METADATA headers to a fixture wheel (and fix its RECORD line)."""
    with zipfile.ZipFile(wheel) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    meta_name = next(i.filename for i, _ in members if i.filename.endswith(".dist-info/METADATA"))
    out: list[tuple[zipfile.ZipInfo, bytes]] = []
    new_meta = b""
    for info, body in members:
        if info.filename == meta_name:
            head, _, rest = body.partition(b"\n\n")
            body = head + b"\n" + "\n".join(headers).encode() + b"\n\n" + rest
            new_meta = body
        out.append((info, body))
    digest = base64.urlsafe_b64encode(hashlib.sha256(new_meta).digest()).rstrip(b"=").decode()
    fixed: list[tuple[zipfile.ZipInfo, bytes]] = []
    for info, body in out:
        if info.filename.endswith(".dist-info/RECORD"):
            lines = [
                f"{meta_name},sha256={digest},{len(new_meta)}" if ln.startswith(meta_name + ",")
                else ln
                for ln in body.decode().splitlines()
            ]
            body = ("\n".join(lines) + "\n").encode()
        fixed.append((info, body))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, body in fixed:
            zf.writestr(info, body)
    wheel.write_bytes(buf.getvalue())
    return wheel


@dataclass
class SbomWorld:
    root: Path
    spec_path: Path
    lock_path: Path

    @property
    def spec(self) -> ImageSpec:
        return load_spec(self.spec_path)

    @property
    def lock(self) -> Lock:
        return read_lock(self.lock_path)

    def build(self, name: str, **kw: Any) -> BuildResult:
        options = BuildOptions(
            out_dir=self.root / name / "out",
            cache=Cache(self.root / "cache"),
            work_dir=self.root / name / "work",
            compiler=host_compiler,
        )
        options = replace(options, **kw)
        return build(self.spec, self.lock, self.lock_path, options)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SbomWorld]:
    repo = build_repo(tmp_path / "repo", fake_packages(), suites=("trixie", "trixie-security"))
    wheels = tmp_path / "wheels"
    built = [
        relicense(
            build_wheel(wheels, "alpha", "1.0", requires=["beta", "Gamma_Pkg>=0.1",
                                                       'missing-dep; extra == "never"',
                                                       'beta; python_version < "3"'],
                        files={"alpha/__init__.py": b"X = 1\n"}),
            ["License-Expression: MIT OR Apache-2.0"],
        ),
        relicense(build_wheel(wheels, "beta", "2.0"),
                  ["Classifier: License :: OSI Approved :: BSD License"]),
        relicense(build_wheel(wheels, "Gamma_Pkg", "0.3.post1",
                              files={"gamma_pkg/__init__.py": b""}),
                  ["License: Apache 2.0"]),
    ]  # fmt: skip
    index_root = write_index(tmp_path / "index", built)
    monkeypatch.setenv("HARDFLOW_DEBIAN_MIRROR", repo.base_url)
    monkeypatch.setenv("HARDFLOW_DEBIAN_SECURITY_MIRROR", repo.base_url)
    with IndexServer(index_root) as server:
        monkeypatch.setenv("UV_DEFAULT_INDEX", server.url)
        monkeypatch.setenv("UV_NO_CACHE", "1")
        spec_path = tmp_path / "sbom.toml"
        spec_path.write_text(
            SPEC.replace("[python]", f'keyring = "{repo.keyring}"\n[python]')
        )
        w = SbomWorld(tmp_path, spec_path, tmp_path / "sbom.lock.json")
        make_lock(w.spec, w.lock_path)
        yield w


def spdx_of(result: BuildResult, lock: Lock) -> dict[str, Any]:
    return document(inventory(read_image(result.image.layout_dir), lock), "spdx")


def cdx_of(result: BuildResult, lock: Lock) -> dict[str, Any]:
    return document(inventory(read_image(result.image.layout_dir), lock), "cyclonedx")


def purl_of(pkg: dict[str, Any]) -> str:
    refs = [r["referenceLocator"] for r in pkg["externalRefs"] if r["referenceType"] == "purl"]
    assert len(refs) == 1
    return str(refs[0])


def validate_spdx(data: bytes, tmp_path: Path) -> list[str]:
    pytest.importorskip("spdx_tools")
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    path = tmp_path / "doc.spdx.json"
    path.write_bytes(data)
    return [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)))]


def validate_cyclonedx(data: bytes) -> object:
    pytest.importorskip("cyclonedx")
    pytest.importorskip("jsonschema")
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())


# --------------------------------------------------------------------------------------------
# the fixture image


def test_documents_validate_against_their_schemas(world: SbomWorld, tmp_path: Path) -> None:
    result = world.build("a")
    spdx = render(spdx_of(result, world.lock))
    cdx = render(cdx_of(result, world.lock))
    assert validate_spdx(spdx, tmp_path) == []
    assert validate_cyclonedx(cdx) is None
    # the validators are not blind: a broken document is rejected
    broken = json.loads(spdx)
    broken["packages"][1]["licenseDeclared"] = "Not-A-Licence"
    assert validate_spdx(json.dumps(broken).encode(), tmp_path)
    bad_cdx = json.loads(cdx)
    bad_cdx["components"][0]["hashes"][0]["content"] = "xyz"
    assert validate_cyclonedx(json.dumps(bad_cdx).encode()) is not None


def test_every_package_with_purl_and_sha256(world: SbomWorld) -> None:
    result = world.build("a")
    lock = world.lock
    spdx = spdx_of(result, lock)
    by_name = {p["name"]: p for p in spdx["packages"]}
    assert len(spdx["packages"]) == 1 + len(lock.debs) + len(lock.wheels)
    for deb in lock.debs:
        pkg = by_name[deb.name]
        assert pkg["versionInfo"] == deb.version
        assert pkg["checksums"] == [{"algorithm": "SHA256", "checksumValue": deb.sha256}]
        assert pkg["packageFileName"] == deb.filename.rsplit("/", 1)[1]
    assert purl_of(by_name["libstdc++6"]) == (
        "pkg:deb/debian/libstdc%2B%2B6@1:14.2.0-19?arch=amd64&distro=debian-13"
    )
    assert purl_of(by_name["libfoo1"]) == (
        "pkg:deb/debian/libfoo1@1.0-1%2Bb1?arch=amd64&distro=debian-13"
    )
    assert "gcc-14 14.2.0-19" in by_name["libstdc++6"]["sourceInfo"]
    assert "foo 1.0-1" in by_name["libfoo1"]["sourceInfo"]
    wheels = {w.name: w for w in lock.wheels}
    assert set(wheels) == {"alpha", "beta", "gamma-pkg"}
    for name, spdx_name in (("alpha", "alpha"), ("beta", "beta"), ("gamma-pkg", "Gamma_Pkg")):
        pkg = by_name[spdx_name]
        assert pkg["checksums"][0]["checksumValue"] == wheels[name].sha256
        assert pkg["packageFileName"] == wheels[name].filename
    assert purl_of(by_name["Gamma_Pkg"]) == "pkg:pypi/gamma-pkg@0.3.post1"
    assert purl_of(by_name["alpha"]) == "pkg:pypi/alpha@1.0"

    cdx = cdx_of(result, lock)
    comps = {c["name"]: c for c in cdx["components"]}
    assert set(comps) == set(by_name) - {"test/sbom"}
    for name, pkg in by_name.items():
        if name == "test/sbom":
            continue
        assert comps[name]["purl"] == purl_of(pkg)
        assert comps[name]["hashes"] == [
            {"alg": "SHA-256", "content": pkg["checksums"][0]["checksumValue"]}
        ]


def test_purls_agree_with_packageurl_python(world: SbomWorld) -> None:
    packageurl = pytest.importorskip("packageurl")
    result = world.build("a")
    inv = inventory(read_image(result.image.layout_dir), world.lock)
    for deb in inv.debs:
        expected = packageurl.PackageURL(
            type="deb", namespace="debian", name=deb.name, version=deb.version,
            qualifiers={"arch": deb.architecture, "distro": "debian-13"},
        ).to_string()  # fmt: skip
        assert deb.purl == expected
    for whl in inv.wheels:
        assert whl.purl == packageurl.PackageURL(
            type="pypi", name=whl.name, version=whl.version
        ).to_string()


def test_image_is_the_root_with_digest_and_relationships(world: SbomWorld) -> None:
    result = world.build("a")
    spdx = spdx_of(result, world.lock)
    image = spdx["packages"][0]
    assert image["SPDXID"] == "SPDXRef-Image"
    assert image["primaryPackagePurpose"] == "CONTAINER"
    assert image["checksums"][0]["checksumValue"] == result.image.manifest_digest[7:]
    assert purl_of(image) == (
        f"pkg:oci/sbom@sha256%3A{result.image.manifest_digest[7:]}?tag=7"
    )
    ids = {p["name"]: p["SPDXID"] for p in spdx["packages"]}
    rels = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
            for r in spdx["relationships"]}  # fmt: skip
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image") in rels
    contained = {b for a, kind, b in rels if a == "SPDXRef-Image" and kind == "CONTAINS"}
    assert contained == {i for n, i in ids.items() if n != "test/sbom"}
    deps = {(a, b) for a, kind, b in rels if kind == "DEPENDS_ON"}
    assert (ids["bash"], ids["libc6"]) in deps
    assert (ids["libfoo1"], ids["libfoo-common"]) in deps  # first installed alternative
    assert (ids["alpha"], ids["beta"]) in deps and (ids["alpha"], ids["Gamma_Pkg"]) in deps
    assert not any(a == ids["beta"] for a, _ in deps)

    cdx = cdx_of(result, world.lock)
    root = cdx["metadata"]["component"]
    assert root["type"] == "container" and root["bom-ref"] == purl_of(image)
    graph = {d["ref"]: d["dependsOn"] for d in cdx["dependencies"]}
    assert sorted(graph[root["bom-ref"]]) == sorted(c["bom-ref"] for c in cdx["components"])
    alpha = next(c for c in cdx["components"] if c["name"] == "alpha")
    assert graph[alpha["bom-ref"]] == ["pkg:pypi/beta@2.0", "pkg:pypi/gamma-pkg@0.3.post1"]


def test_licences_from_copyright_files_and_metadata(world: SbomWorld, tmp_path: Path) -> None:
    result = world.build("a")
    spdx = spdx_of(result, world.lock)
    lic = {p["name"]: p["licenseDeclared"] for p in spdx["packages"]}
    assert lic["libc6"] == "LGPL-2.1-or-later"  # Files: *, not Files: debian/*
    assert lic["bash"] == "GPL-3.0-or-later"
    assert lic["libfoo1"] == "GPL-2.0-or-later OR Artistic-1.0-Perl"  # via the doc symlink
    assert lic["libfoo-common"] == lic["libfoo1"]
    assert lic["oddlic"] == "BSD-3-Clause AND LicenseRef-Debian-Odd-Permissive"
    assert lic["gcc-14-base"] == "NOASSERTION"  # free text: no guessing
    assert lic["libstdc++6"] == "NOASSERTION"  # its doc dir links to gcc-14-base's
    assert lic[f"python{PYVER}"] == "NOASSERTION"
    assert lic["alpha"] == "MIT OR Apache-2.0"
    assert lic["Gamma_Pkg"] == "Apache-2.0"
    assert lic["beta"] == "LicenseRef-PyPI-beta"  # "BSD License" names a family, not a licence
    extracted = {e["licenseId"]: e["extractedText"] for e in spdx["hasExtractedLicensingInfos"]}
    assert "Do what you like, but be odd." in extracted["LicenseRef-Debian-Odd-Permissive"]
    assert "License :: OSI Approved :: BSD License" in extracted["LicenseRef-PyPI-beta"]
    cdx = cdx_of(result, world.lock)
    comps = {c["name"]: c for c in cdx["components"]}
    assert comps["libfoo1"]["licenses"] == [
        {"expression": "GPL-2.0-or-later OR Artistic-1.0-Perl"}
    ]
    assert "licenses" not in comps["gcc-14-base"]


def test_byte_identical_and_digest_derived(world: SbomWorld) -> None:
    a = world.build("a")
    b = world.build("b")
    assert a.image.manifest_digest == b.image.manifest_digest
    for fmt in ("spdx", "cyclonedx"):
        one = render(document(inventory(read_image(a.image.layout_dir), world.lock), fmt))
        two = render(document(inventory(read_image(b.image.layout_dir), world.lock), fmt))
        assert one == two
    c = world.build("c", source_date_epoch=a.source_date_epoch + 86400)
    assert c.image.manifest_digest != a.image.manifest_digest
    sa, sc = spdx_of(a, world.lock), spdx_of(c, world.lock)
    assert sa["documentNamespace"] != sc["documentNamespace"]
    assert sa["creationInfo"]["created"] != sc["creationInfo"]["created"]
    ca, cc = cdx_of(a, world.lock), cdx_of(c, world.lock)
    assert ca["serialNumber"] != cc["serialNumber"]
    assert ca["serialNumber"].startswith("urn:uuid:")
    from hardflow.oci.writer import rfc3339

    assert cc["metadata"]["timestamp"] == rfc3339(c.source_date_epoch)


def test_docker_archive_gives_the_same_sbom(world: SbomWorld) -> None:
    result = world.build("a")
    assert result.image.archive_path is not None
    from_layout = read_image(result.image.layout_dir)
    from_archive = read_image(result.image.archive_path)
    assert from_archive.subject.manifest_digest == result.image.manifest_digest
    for fmt in ("spdx", "cyclonedx"):
        assert render(document(inventory(from_layout, world.lock), fmt)) == render(
            document(inventory(from_archive, world.lock), fmt)
        )


def test_lock_and_image_must_agree(world: SbomWorld) -> None:
    result = world.build("a")
    files = read_image(result.image.layout_dir)
    lock = world.lock
    fewer = replace(lock, debs=tuple(d for d in lock.debs if d.name != "bash"),
                    wheels=tuple(w for w in lock.wheels if w.name != "beta"))  # fmt: skip
    with pytest.raises(LockError, match="in the image but not in the lock: bash"):
        inventory(files, fewer)
    extra = replace(lock, wheels=(*lock.wheels, replace(lock.wheels[0], name="zeta")))
    with pytest.raises(LockError, match="in the lock but not in the image: zeta"):
        inventory(files, extra)
    moved = replace(lock, wheels=tuple(
        replace(w, version="9.9") if w.name == "alpha" else w for w in lock.wheels))
    with pytest.raises(LockError, match=r"alpha 1\.0 ≠ 9\.9"):
        inventory(files, moved)


def test_cli(world: SbomWorld, tmp_path: Path) -> None:
    result = world.build("a")
    runner = CliRunner()
    layout = str(result.image.layout_dir)
    # the image's lock label names no embedded lock
    res = runner.invoke(sbom_command, [layout])
    assert res.exit_code != 0
    assert isinstance(res.exception, LockError) and "--lock" in (res.exception.hint or "")
    res = runner.invoke(sbom_command, [layout, "--lock", str(world.lock_path)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["spdxVersion"] == "SPDX-2.3"
    out = tmp_path / "bom.json"
    res = runner.invoke(sbom_command, [str(result.image.layout_dir.parent), "--format",
                                       "cyclonedx", "--lock", str(world.lock_path), "-o",
                                       str(out), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["debian_packages"] == len(world.lock.debs)
    assert summary["python_packages"] == 3
    assert json.loads(out.read_bytes())["bomFormat"] == "CycloneDX"


def test_tampered_layer_is_refused(world: SbomWorld, tmp_path: Path) -> None:
    from hardflow.errors import ImageError

    result = world.build("a")
    copy = tmp_path / "copy"
    shutil.copytree(result.image.layout_dir, copy)
    blob = copy / "blobs/sha256" / result.image.layers[0].digest[7:]
    blob.unlink()
    blob.write_bytes(result.image.layers[0].path.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ImageError, match="does not match its digest"):
        read_image(copy)


# --------------------------------------------------------------------------------------------
# licence parsing


@pytest.mark.parametrize(
    ("licence", "expected"),
    [
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-2", "GPL-2.0-only"),
        ("LGPL-2.1", "LGPL-2.1-only"),
        ("Expat", "MIT"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("GPL-2+ with OpenSSL exception", "GPL-2.0-or-later WITH OpenSSL-exception"),
        ("GPL-2+ or Artistic, and BSD-2-clause",
         "(GPL-2.0-or-later OR Artistic-1.0-Perl) AND BSD-2-Clause"),
        ("MIT and Zlib or ISC", "(MIT AND Zlib) OR ISC"),
        ("public-domain", "LicenseRef-Debian-public-domain"),
    ],
)  # fmt: skip
def test_dep5_short_names(licence: str, expected: str) -> None:
    text = f"{DEP5_HEAD}\nFiles: *\nCopyright: x\nLicense: {licence}\n"
    assert debian_license(text, "p").expression == expected


def test_free_text_and_missing_files_star() -> None:
    assert debian_license(FREE_TEXT, "p").expression == "NOASSERTION"
    only_some = f"{DEP5_HEAD}\nFiles: debian/*\nCopyright: x\nLicense: GPL-2+\n"
    lic = debian_license(only_some, "p")
    assert lic.expression == "NOASSERTION" and "Files: *" in lic.source


def _meta(*lines: str) -> Any:
    import email

    return email.message_from_string("Name: x\nVersion: 1\n" + "\n".join(lines) + "\n\n")


def test_python_licence_precedence() -> None:
    assert python_license(_meta("License-Expression: mit or apache-2.0",
                                "License: GPL"), "x").expression == "MIT OR Apache-2.0"
    assert python_license(_meta("License: Apache License, Version 2.0"), "x").expression == (
        "Apache-2.0")
    assert python_license(_meta(
        "Classifier: License :: OSI Approved :: MIT License",
        "Classifier: License :: OSI Approved :: Apache Software License"), "x"
    ).expression == "Apache-2.0 OR MIT"
    free = python_license(_meta("License: Copyright me, all rights reserved"), "x")
    assert free.expression == "LicenseRef-PyPI-x"
    assert "all rights reserved" in free.refs[0][1]
    assert python_license(_meta("License: UNKNOWN"), "x").expression == "NOASSERTION"


def test_normalise_expression() -> None:
    assert normalise_expression("mit OR (apache-2.0 AND bsd-3-clause)") == (
        "MIT OR (Apache-2.0 AND BSD-3-Clause)")
    assert normalise_expression("GPL-2.0-or-later WITH classpath-exception-2.0") == (
        "GPL-2.0-or-later WITH Classpath-exception-2.0")
    for bad in ("MIT OR", "(MIT", "MIT Apache-2.0", "Made-Up-1.0", "MIT WITH Nope", ""):
        assert normalise_expression(bad) is None


# --------------------------------------------------------------------------------------------
# the real default image


def _real_lock() -> Lock:
    files = read_image(REAL_IMAGE)
    try:
        return embedded_lock_for(files.subject)
    except LockError:
        pytest.skip("the built default image is older than the embedded lock: rebuild it")


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_IMAGE / "index.json").is_file(), reason="no built default image")
def test_real_default_image(tmp_path: Path) -> None:
    lock = _real_lock()
    inv = inventory(read_image(REAL_IMAGE), lock)
    assert len(inv.debs) == len(lock.debs) and len(inv.wheels) == len(lock.wheels)
    assert any(d.name == "libc6" and d.license.expression == "LGPL-2.1-or-later"
               for d in inv.debs)  # fmt: skip
    assert any(w.name == "apache-airflow" and w.license.expression == "Apache-2.0"
               for w in inv.wheels)  # fmt: skip
    spdx, cdx = render(document(inv, "spdx")), render(document(inv, "cyclonedx"))
    assert validate_spdx(spdx, tmp_path) == []
    assert validate_cyclonedx(cdx) is None
    print(f"real image SBOM: {len(inv.debs)} Debian packages, {len(inv.wheels)} Python")
