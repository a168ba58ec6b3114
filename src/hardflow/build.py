"""The build pipeline: spec + lock → fetch → assemble → layers → OCI image (+ docker-archive).

Each stage is a function of the previous stage's value. Nothing is written to the output
directory until every input has been verified and every layer written; the OCI layout and the
archive are then moved into place atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__
from .fetch import Artifact, Cache, http_get
from .layers import Layer, write_layer
from .lock import Lock, LockedDeb, LockedWheel, atomic_write, check_matches
from .mirrors import Mirrors, resolve_mirrors
from .oci import ImageConfig, ImageResult, write_docker_archive, write_oci_layout
from .progress import NullProgress, Progress
from .pypi.index import IndexConfig, index_config_from_host, index_urls, wheel_url
from .rootfs import Compiler, DebInput, RootFS, WheelInput, assemble
from .spec import ImageSpec

SOURCE_URL = "https://github.com/hardflow/hardflow"


@dataclass(frozen=True)
class BuildOptions:
    out_dir: Path
    cache: Cache
    source_date_epoch: int | None = None  # default: from the lock
    work_dir: Path | None = None  # where staging goes (default: a temp dir beside out_dir)
    docker_archive: bool = True
    jobs: int = 8
    compiler: Compiler | None = None  # default: the image's own interpreter in a chroot


@dataclass(frozen=True)
class BuildResult:
    image: ImageResult
    spec_checksum: str
    lock_checksum: str
    source_date_epoch: int
    debian_packages: int
    python_packages: int
    files: int
    setuid_cleared: tuple[str, ...]
    pyc_compiled: int
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, object]:
        img = self.image
        return {
            "reference": img.reference,
            "manifest_digest": img.manifest_digest,
            "config_digest": img.config_digest,
            "oci_layout": str(img.layout_dir),
            "docker_archive": str(img.archive_path) if img.archive_path else None,
            "compressed_size": img.compressed_size,
            "uncompressed_size": img.uncompressed_size,
            "files": self.files,
            "debian_packages": self.debian_packages,
            "python_packages": self.python_packages,
            "source_date_epoch": self.source_date_epoch,
            "spec_checksum": self.spec_checksum,
            "layers": [
                {
                    "name": layer.name,
                    "digest": layer.digest,
                    "diff_id": layer.diff_id,
                    "size": layer.size,
                    "uncompressed_size": layer.uncompressed_size,
                    "files": layer.file_count,
                }
                for layer in img.layers
            ],
            "setuid_cleared": list(self.setuid_cleared),
            "notes": list(self.notes),
            "timings_seconds": {k: round(v, 2) for k, v in self.timings.items()},
        }


def fetch_inputs(
    spec: ImageSpec, lock: Lock, cache: Cache, progress: Progress, jobs: int = 8
) -> tuple[list[DebInput], list[WheelInput]]:
    """Every locked .deb and wheel as a verified cache path (sha256 checked before use).

    Mirrors and indexes are worked out only when something is missing from the cache (so
    ``--offline`` needs no apt sources), once, before the download threads start.
    """
    lock_ = threading.Lock()
    resolved: dict[str, object] = {}

    def sources() -> tuple[Mirrors, IndexConfig]:
        # Worked out once, on the first download (never when everything is cached, so
        # --offline needs no apt sources), under a lock: the download threads share it.
        with lock_:
            if not resolved:
                resolved["mirrors"] = resolve_mirrors(spec.debian)
                config = index_config_from_host()
                index_urls(config)  # warm uv's answer
                resolved["indexes"] = config
        return resolved["mirrors"], resolved["indexes"]  # type: ignore[return-value]

    def deb_art(d: LockedDeb) -> Artifact:
        return Artifact(
            f"{d.name}_{d.version}_{d.architecture}.deb",
            d.sha256,
            d.size,
            lambda: [f"{sources()[0].for_suite(d.suite)}/{d.filename}"],
        )

    def wheel_art(w: LockedWheel) -> Artifact:
        return Artifact(
            w.filename,
            w.sha256,
            w.size,
            lambda: [wheel_url(sources()[1], w.name, w.filename, _download, sha256=w.sha256)],
        )

    deb_arts = [deb_art(d) for d in lock.debs]
    wheel_arts = [wheel_art(w) for w in lock.wheels]
    task = progress.task(f"download + verify ({len(deb_arts) + len(wheel_arts)} files)",
                         total=len(deb_arts) + len(wheel_arts))

    def get(art: Artifact) -> Path:
        path = cache.get(art)
        task.advance()
        return path

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        deb_paths = list(pool.map(get, deb_arts))
        wheel_paths = list(pool.map(get, wheel_arts))
    task.finish()
    return (
        [DebInput(d, p) for d, p in zip(lock.debs, deb_paths, strict=True)],
        [WheelInput(w, p) for w, p in zip(lock.wheels, wheel_paths, strict=True)],
    )


def _download(url: str, headers: Mapping[str, str]) -> bytes:
    return http_get(url, headers=headers)


def image_config(spec: ImageSpec, sde: int, rootfs: RootFS, lock: Lock) -> ImageConfig:
    env = dict(spec.env)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin")
    history = tuple(
        f"hardflow {__version__}: {layer.name} ({len(layer.paths)} paths)"
        for layer in rootfs.layers
    )
    return ImageConfig(
        user=f"{spec.uid}:{spec.gid}",
        env=tuple(f"{k}={v}" for k, v in sorted(env.items())),
        entrypoint=spec.entrypoint,
        cmd=spec.cmd,
        workdir=spec.workdir,
        exposed_ports=tuple(f"{p}/tcp" for p in spec.ports),
        labels=image_labels(spec, sde, lock),
        stop_signal=spec.stop_signal,
        healthcheck=spec.healthcheck or None,
        volumes=(),
        created=sde,
        architecture=spec.debian.architecture,
        history=history,
    )


def image_labels(spec: ImageSpec, sde: int, lock: Lock) -> dict[str, str]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sde))
    labels = {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.version": spec.tag,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": spec.checksum(),
        "org.opencontainers.image.source": SOURCE_URL,
        "org.opencontainers.image.base.name": "scratch",
        "dev.hardflow.lock.checksum": lock.spec_checksum,
        "dev.hardflow.builder": f"hardflow {__version__}",
    }
    labels.update(spec.labels)
    return labels


def build(
    spec: ImageSpec,
    lock: Lock,
    lock_path: Path,
    options: BuildOptions,
    progress: Progress | None = None,
) -> BuildResult:
    progress = progress or NullProgress()
    check_matches(lock, spec.lock_checksum(), lock_path)
    sde = options.source_date_epoch if options.source_date_epoch is not None else (
        lock.source_date_epoch
    )
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    debs, wheels = fetch_inputs(spec, lock, options.cache, progress, options.jobs)
    timings["fetch"] = time.monotonic() - t0

    parent = options.work_dir or options.out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".hardflow-build-", dir=parent))
    try:
        t = time.monotonic()
        tasks: dict[str, object] = {}

        def on_progress(phase: str, done: int, total: int) -> None:
            task = tasks.get(phase)
            if task is None:
                task = tasks[phase] = progress.task(phase, total=total)
            task.advance(1)  # type: ignore[attr-defined]

        rootfs = assemble(spec, debs, wheels, work / "rootfs", on_progress, options.compiler)
        for task in tasks.values():
            task.finish()  # type: ignore[attr-defined]
        timings["assemble"] = time.monotonic() - t

        t = time.monotonic()
        total_bytes = sum(
            (rootfs.root / p).lstat().st_size
            for layer in rootfs.layers
            for p in layer.paths
            if (rootfs.root / p).is_file() and not (rootfs.root / p).is_symlink()
        )
        bar = progress.task("write layers (gzip)", total=total_bytes, bytes_=True)
        blobs = work / "blobs"
        blobs.mkdir()
        layers: list[Layer] = [
            write_layer(rootfs.root, spec_, rootfs.owners, sde, blobs, bar.advance)
            for spec_ in rootfs.layers
        ]
        bar.finish()
        timings["layers"] = time.monotonic() - t

        t = time.monotonic()
        config = image_config(spec, sde, rootfs, lock)
        annotations = {
            k: v for k, v in config.labels.items() if k.startswith("org.opencontainers.image.")
        }
        out = options.out_dir
        image = write_oci_layout(layers, config, annotations, spec.reference, out / "oci")
        # the work directory goes away: point the result at the blobs in the layout
        image = replace(image, layers=tuple(
            replace(layer, path=image.layout_dir / "blobs/sha256" / layer.digest.split(":")[1])
            for layer in image.layers
        ))
        if options.docker_archive:
            archive = write_docker_archive(image, out / "docker-archive.tar")
            image = replace(image, archive_path=archive)
        timings["write"] = time.monotonic() - t
        timings["total"] = time.monotonic() - t0
        result = BuildResult(
            image=image,
            spec_checksum=spec.checksum(),
            lock_checksum=lock.spec_checksum,
            source_date_epoch=sde,
            debian_packages=len(lock.debs),
            python_packages=len(lock.wheels),
            files=sum(layer.file_count for layer in layers),
            setuid_cleared=rootfs.setuid_cleared,
            pyc_compiled=rootfs.pyc_compiled,
            timings=timings,
            notes=rootfs.notes,
        )
        # SBOMs (SPDX, CycloneDX) and provenance beside the layout, for every build
        from .provenance import write_supply_chain

        t = time.monotonic()
        write_supply_chain(result, lock, spec, out)
        timings["supply_chain"] = time.monotonic() - t
        atomic_write(out / "build.json", (json.dumps(result.summary(), indent=2) + "\n").encode())
        return result
    finally:
        if not os.environ.get("HARDFLOW_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)
