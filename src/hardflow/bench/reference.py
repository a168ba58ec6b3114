"""The conventional reference image: the way most Airflow Dockerfiles are written.

    FROM debian:13 (minbase)          → debootstrap --variant=minbase, Debian's python3 + venv
    RUN python3 -m venv /opt/venv
    RUN pip install --only-binary :all: -r requirements.txt   (== pins with --hash, our lock)
    COPY dags/ /opt/airflow/dags/
    USER root (the default)  ENTRYPOINT ["airflow"]  CMD ["standalone"]

It is assembled here without a Dockerfile engine, with the same caching a Dockerfile build
gets: the base layer (debootstrap + venv) is kept and reused when only the requirements change,
the pip layer (every path pip added or changed, plus the DAG) is rebuilt, and pip's download
cache is kept outside the image (as a BuildKit cache mount would). The layers are plain GNU tar
(real owners, modes and set-id bits, as a Dockerfile build would keep them), gzip'd at level 6
and written with hardflow's OCI writers, then loaded into podman.

The Debian mirror comes from :func:`hardflow.lock.mirrors.resolve_mirrors`, the Python index from
the host's pip/uv configuration: nothing here names a host.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from hardflow.contract import AIRFLOW_HOME
from hardflow.errors import BuildError
from hardflow.lock.model import LockedWheel
from hardflow.oci.layer import Layer, gzip_header
from hardflow.oci.writer import ImageConfig, ImageResult, write_docker_archive, write_oci_layout
from hardflow.spec import ImageSpec

VENV = "/opt/venv"
# The reference keeps the image contract's AIRFLOW_HOME (as the official image does), so the
# bench mounts its volume and probes its API the same way for both images.
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
PATH_ENV = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Paths that a build tool mounts or that hold only build-time state: never part of a layer.
_SKIP_TOP = ("dev/", "proc/", "sys/", "run/", "tmp/")
_SKIP_FILES = ("etc/resolv.conf", "etc/hostname", "etc/hosts")
Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class ReferenceInputs:
    """What the reference is built from (same requirement set as the hardflow image)."""

    spec: ImageSpec
    wheels: tuple[LockedWheel, ...]
    mirror: str  # base URL of the Debian archive (from the host's apt sources)
    index_url: str  # the Python index pip uses (from the host's configuration)
    suite: str = "trixie"
    dag_source: bytes = b""
    # The host's CA bundle, given to pip for the build only (as a build secret would be):
    # a host behind a TLS-inspecting proxy needs it; it never lands in a layer.
    ca_bundle: str = ""


def host_ca_bundle(env: Mapping[str, str] | None = None) -> str:
    """The CA bundle the host's pip/requests use, or "" for pip's own default."""
    env = os.environ if env is None else env
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        if env.get(var) and os.path.isfile(env[var]):
            return env[var]
    return ""


@dataclass(frozen=True)
class ReferenceBuild:
    image: ImageResult
    seconds: float  # the timed part of the build
    phases: dict[str, float] = field(default_factory=dict)


def requirements_txt(wheels: Sequence[LockedWheel]) -> str:
    """A pip requirements file of ``name==version --hash=sha256:…`` lines, sorted by name."""
    return "".join(
        f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n"
        for w in sorted(wheels, key=lambda w: w.name)
    )


def debootstrap_argv(
    root: Path, suite: str, mirror: str, keyring: str, packages: Sequence[str] = DEBIAN_PACKAGES
) -> list[str]:
    return [
        "debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
        f"--keyring={keyring}", suite, str(root), mirror,
    ]  # fmt: skip


def pip_argv(index_url: str, cache_dir: str, cert: str = "") -> list[str]:
    return [*_pip_base(index_url, cache_dir), *(["--cert", cert] if cert else [])]


def _pip_base(index_url: str, cache_dir: str) -> list[str]:
    return [
        f"{VENV}/bin/pip", "install", "--disable-pip-version-check", "--no-input",
        "--only-binary", ":all:", "--index-url", index_url, "--cache-dir", cache_dir,
        "--require-hashes", "-r", "/tmp/requirements.txt",
    ]  # fmt: skip


def reference_config(spec: ImageSpec, created: int) -> ImageConfig:
    return ImageConfig(
        user="0:0",  # conventional images often run as root: noted in the report
        env=(
            f"AIRFLOW_HOME={AIRFLOW_HOME}",
            "AIRFLOW__CORE__LOAD_EXAMPLES=False",
            "LANG=C.UTF-8",
            f"PATH={PATH_ENV}",
            "PYTHONUNBUFFERED=1",
        ),
        entrypoint=(f"{VENV}/bin/airflow",),
        cmd=("standalone",),
        workdir=AIRFLOW_HOME,
        exposed_ports=tuple(f"{p}/tcp" for p in spec.ports),
        labels={"org.opencontainers.image.title": "conventional reference for hardflow bench"},
        stop_signal="SIGTERM",
        healthcheck=None,
        volumes=(),
        created=created,
        architecture=spec.debian.architecture,
        history=("debootstrap minbase, python3, python3-venv, venv", "pip install -r, COPY dags"),
    )


def changed_paths(before: dict[str, tuple[int, int, int]], root: Path) -> list[str]:
    """Paths that are new or differ (mtime, size, mode) from ``before`` (a snapshot)."""
    now = snapshot(root)
    return sorted(p for p, sig in now.items() if before.get(p) != sig)


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for rel in _walk(root):
        st = os.lstat(root / rel)
        out[rel] = (st.st_mtime_ns, st.st_size, st.st_mode)
    return out


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = os.path.relpath(dirpath, root)
        for name in (*dirnames, *filenames):
            rel = name if base == "." else f"{base}/{name}"
            if rel.startswith(_SKIP_TOP) or rel in _SKIP_FILES:
                continue
            found.append(rel)
    return sorted(found)


def _run(argv: Sequence[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace", env=env, check=False
        )
    except FileNotFoundError as exc:
        raise BuildError(
            f"{what}: {argv[0]} is not installed ({exc})",
            hint="the bench needs debootstrap on the host: apt-get install -y debootstrap",
        ) from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-3000:]
        raise BuildError(f"{what} failed (exit {proc.returncode}): {tail}")


def _chroot(root: Path, argv: Sequence[str], what: str) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    _run(["chroot", str(root), *argv], what, env)


def tar_layer(root: Path, paths: Sequence[str], name: str, out_dir: Path) -> Layer:
    """GNU tar of ``paths`` (no recursion, real owners and modes), gzip -6 → a Layer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / f"{name}.list"
    listing.write_bytes(b"".join(p.encode() + b"\0" for p in paths))
    tar_path = out_dir / f"{name}.tar"
    _run(
        ["tar", "--create", "--file", str(tar_path), "--numeric-owner", "--directory", str(root),
         "--no-recursion", "--null", "--files-from", str(listing)],
        f"tar of the reference's {name} layer",
    )  # fmt: skip
    diff = hashlib.sha256()
    comp = hashlib.sha256()
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, 8, 0)
    crc = 0
    raw = 0
    gz_tmp = out_dir / f"{name}.tar.gz.tmp"
    size = 0
    with open(tar_path, "rb") as src, open(gz_tmp, "wb") as dst:

        def emit(data: bytes) -> None:
            nonlocal size
            if data:
                comp.update(data)
                dst.write(data)
                size += len(data)

        emit(gzip_header())
        while chunk := src.read(1 << 20):
            diff.update(chunk)
            crc = zlib.crc32(chunk, crc)
            raw += len(chunk)
            emit(deflate.compress(chunk))
        emit(deflate.flush())
        emit(crc.to_bytes(4, "little") + (raw & 0xFFFFFFFF).to_bytes(4, "little"))
    tar_path.unlink()
    listing.unlink()
    final = out_dir / f"{comp.hexdigest()}.tar.gz"
    os.replace(gz_tmp, final)
    return Layer(
        name=name,
        path=final,
        digest="sha256:" + comp.hexdigest(),
        diff_id="sha256:" + diff.hexdigest(),
        size=size,
        uncompressed_size=raw,
        file_count=len(paths),
    )


@dataclass
class ReferenceBuilder:
    """Builds the reference; keeps the base tree and layer between builds (the layer cache)."""

    inputs: ReferenceInputs
    work: Path
    say: Say = _quiet
    base_layer: Layer | None = None
    base_snapshot: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def base_tree(self) -> Path:
        return self.work / "base-tree"

    @property
    def pip_cache(self) -> Path:
        return self.work / "pip-cache"

    def cold(self, reference: str, out_name: str = "image-cold") -> ReferenceBuild:
        """Everything from nothing: empty pip cache, fresh debootstrap."""
        for p in (self.base_tree, self.pip_cache, self.work / "layers"):
            shutil.rmtree(p, ignore_errors=True)
        self.pip_cache.mkdir(parents=True)
        spec = self.inputs.spec
        root = self.work / "root"
        shutil.rmtree(root, ignore_errors=True)
        phases: dict[str, float] = {}
        t = time.monotonic()
        self.say("reference: debootstrap (minbase, python3, python3-venv)")
        _run(
            debootstrap_argv(root, self.inputs.suite, self.inputs.mirror, spec.debian.keyring),
            "debootstrap of the reference image",
        )
        for sub in ("var/lib/apt/lists", "var/cache/apt"):
            for p in (root / sub).glob("*"):
                if p.is_file() or p.is_symlink():
                    p.unlink()
                elif p.is_dir() and p.name != "partial":
                    shutil.rmtree(p)
        phases["debootstrap"] = time.monotonic() - t
        t = time.monotonic()
        _chroot(root, ["python3", "-m", "venv", VENV], "python3 -m venv in the reference")
        phases["venv"] = time.monotonic() - t
        t = time.monotonic()
        layer_dir = self.work / "layers"
        self.base_layer = tar_layer(root, _walk(root), "base", layer_dir)
        phases["base_layer"] = time.monotonic() - t
        # untimed: keep a copy of the base tree (a Dockerfile engine keeps its snapshot)
        self.base_snapshot = snapshot(root)
        _run(["cp", "-a", str(root), str(self.base_tree)], "copy of the reference base tree")
        return self._pip_and_image(root, self.inputs.wheels, reference, phases, out_name)

    def warm(
        self, wheels: Sequence[LockedWheel], reference: str, out_name: str = "image-warm"
    ) -> ReferenceBuild:
        """Base layer reused, pip layer rebuilt with the download cache kept."""
        if self.base_layer is None or not self.base_tree.is_dir():
            raise BuildError("a warm reference build needs a cold build first")
        root = self.work / "root"
        shutil.rmtree(root, ignore_errors=True)
        _run(["cp", "-a", str(self.base_tree), str(root)], "restore of the reference base tree")
        return self._pip_and_image(root, tuple(wheels), reference, {}, out_name)

    def _pip_and_image(
        self,
        root: Path,
        wheels: Sequence[LockedWheel],
        reference: str,
        phases: dict[str, float],
        out_name: str,
    ) -> ReferenceBuild:
        assert self.base_layer is not None
        t = time.monotonic()
        (root / "tmp/requirements.txt").write_text(requirements_txt(wheels))
        resolv = root / "etc/resolv.conf"
        saved = resolv.read_bytes() if resolv.is_file() and not resolv.is_symlink() else None
        if resolv.is_symlink():
            resolv.unlink()
        if Path("/etc/resolv.conf").is_file():
            shutil.copyfile("/etc/resolv.conf", resolv)
        cache_in_root = root / "tmp/pip-cache"
        os.replace(self.pip_cache, cache_in_root)
        cert = ""
        if self.inputs.ca_bundle:
            shutil.copyfile(self.inputs.ca_bundle, root / "tmp/host-ca.pem")
            cert = "/tmp/host-ca.pem"
        try:
            self.say(f"reference: pip install of {len(wheels)} locked wheels")
            argv = pip_argv(self.inputs.index_url, "/tmp/pip-cache", cert)
            _chroot(root, argv, "pip install")
        finally:
            (root / "tmp/host-ca.pem").unlink(missing_ok=True)
            os.replace(cache_in_root, self.pip_cache)
            (root / "tmp/requirements.txt").unlink(missing_ok=True)
            if saved is not None:
                resolv.write_bytes(saved)
        dags = root / AIRFLOW_HOME.lstrip("/") / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        (dags / "example_dag.py").write_bytes(self.inputs.dag_source)
        phases["pip"] = time.monotonic() - t
        t = time.monotonic()
        paths = changed_paths(self.base_snapshot, root)
        pip_layer = tar_layer(root, paths, "pip", self.work / "layers")
        config = reference_config(self.inputs.spec, int(time.time()))
        out = self.work / out_name
        image = write_oci_layout([self.base_layer, pip_layer], config, {}, reference, out / "oci")
        image = replace(image, archive_path=write_docker_archive(image, out / "docker-archive.tar"))
        phases["layers_and_image"] = time.monotonic() - t
        return ReferenceBuild(image=image, seconds=sum(phases.values()), phases=phases)
