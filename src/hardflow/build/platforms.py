"""Multi-platform builds: one rootfs and layer set per platform, one OCI image index.

Each platform is the one-platform build of its view of the spec and the lock
(:meth:`ImageSpec.for_architecture`, :meth:`Lock.for_architecture`): the same stages, layer
cache and checks, with the whole spec's checksum as the revision label. No code of a foreign
architecture runs: its bytecode is compiled by the host architecture's interpreter of the same
Debian Python (:class:`~hardflow.build.bytecode.CrossCompiler`), taken from the host
platform's Debian layers (built, or from the layer cache, even when the host platform itself
is not asked for).

Output: ``oci/`` holds the image index (one manifest per platform, in the spec's order);
``docker-archive.tar`` holds the host's platform (else the first one asked for), and the SBOMs
and provenance beside the layout are that platform's; every other platform's are in
``platforms/<os>-<arch>/``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from hardflow.build.baked import BakedFolder, collect
from hardflow.build.bytecode import CrossCompiler, host_architecture
from hardflow.build.elfcheck import check_shared_libraries
from hardflow.build.layercache import StageOutput, stage_key
from hardflow.build.layers import extract_layer
from hardflow.build.pipeline import (
    BuildOptions,
    BuildResult,
    Stages,
    build,
    compiler_id,
    fetch_inputs,
    image_config,
)
from hardflow.errors import BuildError, HardflowError
from hardflow.fsutil import atomic_write
from hardflow.lock.model import Lock, check_matches
from hardflow.oci.layer import Layer
from hardflow.oci.writer import (
    ImageConfig,
    ImageResult,
    PlatformImage,
    write_docker_archive,
    write_oci_index,
)
from hardflow.progress import NullProgress, Progress
from hardflow.spec import ImageSpec, oci_platform
from hardflow.supply.provenance import write_supply_chain

PLATFORMS_DIR = "platforms"


def build_image(
    spec: ImageSpec,
    lock: Lock,
    lock_path: Path,
    options: BuildOptions,
    progress: Progress | None = None,
) -> BuildResult:
    """Build ``spec``: a one-platform spec as :func:`~hardflow.build.pipeline.build` does
    (the same bytes as ever), a multi-platform one into an image index."""
    if not spec.platforms and options.architectures in ((), spec.architectures):
        return build(spec, lock, lock_path, options, progress)
    progress = progress or NullProgress()
    check_matches(lock, spec.lock_checksum(), lock_path)
    if options.compression not in ("gzip", "zstd"):
        raise BuildError(f"unknown layer compression {options.compression!r}")
    sde = options.source_date_epoch
    return build_platforms(spec, lock, options,
                           lock.source_date_epoch if sde is None else sde, progress)  # fmt: skip


def selected_architectures(spec: ImageSpec, options: BuildOptions) -> tuple[str, ...]:
    """The architectures to build, in the spec's order (``options.architectures``: a subset
    of the spec's; SpecError names a platform the spec lacks)."""
    for arch in options.architectures:
        spec.for_architecture(arch)
    wanted = options.architectures or spec.architectures
    return tuple(a for a in spec.architectures if a in wanted)


def platform_dir(out: Path, arch: str) -> Path:
    """Where a platform's SBOMs and provenance go when it is not the archive's."""
    return out / PLATFORMS_DIR / oci_platform(arch).replace("/", "-")


@dataclass(frozen=True)
class _Built:
    arch: str
    spec: ImageSpec
    lock: Lock
    stages: Stages
    outputs: tuple[StageOutput, ...]
    layers: tuple[Layer, ...]
    config: ImageConfig

    @property
    def annotations(self) -> dict[str, str]:
        labels = self.config.labels
        return {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")}


class _HostInterpreter:
    """The host architecture's image tree, whose interpreter compiles the foreign platforms'
    bytecode: unpacked from the host platform's Debian layers on first use."""

    def __init__(self, spec: ImageSpec, lock: Lock, options: BuildOptions, sde: int,
                 work: Path, progress: Progress) -> None:  # fmt: skip
        self.spec, self.lock, self.options, self.sde = spec, lock, options, sde
        self.work, self.progress = work, progress
        self.host = host_architecture()
        self.debian: StageOutput | None = None
        self._root: Path | None = None

    def _views(self) -> tuple[ImageSpec, Lock]:
        try:
            return self.spec.for_architecture(self.host), self.lock.for_architecture(self.host)
        except HardflowError:
            raise BuildError(
                f"cannot build {', '.join(oci_platform(a) for a in self.spec.architectures)} "
                f"on this {oci_platform(self.host)} machine: the bytecode of a foreign "
                f"platform is compiled by the {self.host} interpreter of the same Debian "
                "Python, and the spec has no such platform",
                hint=f"add {oci_platform(self.host)!r} to the spec's 'platforms' and run "
                "`hardflow lock` (build with --platform to leave it out of the image)",
            ) from None

    def cache_id(self) -> str:
        """Names the compiler in the foreign platforms' stage keys: the host's packages."""
        _, lock = self._views()
        return "cross:" + stage_key({
            "host": self.host, "compiler": compiler_id(self.options.compiler),
            "debs": sorted([d.name, d.version, d.architecture, d.sha256] for d in lock.debs),
        })  # fmt: skip

    def root(self) -> Path:
        if self._root is not None:
            return self._root
        if self.debian is None:  # the host platform is not built: its Debian stage alone
            spec, lock = self._views()
            debs, _ = fetch_inputs(spec, replace(lock, wheels=()), self.options.cache,
                                   self.progress, self.options.jobs)  # fmt: skip
            stages = Stages(spec, self.sde, self.options, self.work / f"host-{self.host}",
                            self.progress)  # fmt: skip
            self.debian, _ = stages.debian(debs)
        root = self.work / "cross-compiler"
        for layer in self.debian.layers:
            extract_layer(layer, root)
        self._root = root
        return root


def _build_one(
    spec: ImageSpec,
    lock: Lock,
    arch: str,
    options: BuildOptions,
    sde: int,
    work: Path,
    baked: tuple[BakedFolder, ...],
    host: _HostInterpreter,
    progress: Progress,
) -> _Built:
    view, view_lock = spec.for_architecture(arch), lock.for_architecture(arch)
    debs, wheels = fetch_inputs(view, view_lock, options.cache, progress, options.jobs)
    compiler = options.compiler
    if arch != host.host:
        compiler = CrossCompiler(host.root, host.cache_id(), options.compiler)
    stages = Stages(view, sde, replace(options, compiler=compiler), work / arch, progress)
    outputs = tuple(stages.run(debs, wheels, baked))
    if arch == host.host:
        host.debian = outputs[0]
    layers = tuple(layer for out in outputs for layer in out.layers)
    check_shared_libraries(view, list(layers), options.cache, options.layer_cache_dir, progress)
    config = image_config(view, sde, layers, view_lock, revision=spec.checksum())
    return _Built(arch, view, view_lock, stages, outputs, layers, config)


def build_platforms(
    spec: ImageSpec, lock: Lock, options: BuildOptions, sde: int, progress: Progress
) -> BuildResult:
    """Build every selected platform of ``spec`` into one OCI image index (see the module)."""
    arches = selected_architectures(spec, options)
    t0 = time.monotonic()
    baked = collect(spec)
    parent = options.work_dir or options.out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".hardflow-build-", dir=parent))
    try:
        host = _HostInterpreter(spec, lock, options, sde, work, progress)
        built: dict[str, _Built] = {}
        for arch in sorted(arches, key=lambda a: a != host.host):  # the host's first
            built[arch] = _build_one(spec, lock, arch, options, sde, work, baked, host, progress)
        t = time.monotonic()
        out = options.out_dir
        images = [PlatformImage(built[a].layers, built[a].config, built[a].annotations)
                  for a in arches]  # fmt: skip
        index = write_oci_index(images, spec.reference, out / "oci")
        blobs = index.layout_dir / "blobs/sha256"
        results: dict[str, ImageResult] = {
            arch: replace(image, layers=tuple(
                replace(layer, path=blobs / layer.digest.split(":")[1]) for layer in image.layers
            ))
            for arch, image in zip(arches, index.images, strict=True)
        }  # fmt: skip
        main = host.host if host.host in arches else arches[0]
        notes: list[str] = []
        if options.docker_archive:
            archive_layers = None
            if options.compression != "gzip":
                archive_layers = built[main].stages.gzip_copies(results[main].layers)
            archive = write_docker_archive(results[main], out / "docker-archive.tar",
                                           archive_layers)  # fmt: skip
            results[main] = replace(results[main], archive_path=archive)
            notes.append(f"docker-archive.tar holds {oci_platform(main)} (an archive holds one "
                         "platform); oci/ holds them all")  # fmt: skip
        write_seconds = time.monotonic() - t
        per: dict[str, BuildResult] = {}
        for arch in arches:
            b = built[arch]
            t = time.monotonic()
            target = out if arch == main else platform_dir(out, arch)
            target.mkdir(parents=True, exist_ok=True)
            memo = b.stages.cache.store.root / "sbom-layers" if options.layer_cache else None
            write_supply_chain(results[arch], sde, b.lock, b.spec, target, memo,
                               platform=oci_platform(arch))  # fmt: skip
            per[arch] = BuildResult(
                image=results[arch],
                spec_checksum=spec.checksum(),
                lock_checksum=lock.spec_checksum,
                source_date_epoch=sde,
                debian_packages=len(b.lock.debs),
                python_packages=len(b.lock.wheels),
                files=sum(layer.file_count for layer in b.layers),
                setuid_cleared=tuple(sorted(p for o in b.outputs for p in o.setuid_cleared)),
                pyc_compiled=sum(o.pyc_compiled for o in b.outputs),
                timings={"supply_chain": time.monotonic() - t},
                notes=tuple(n for o in b.outputs for n in o.notes) + tuple(b.stages.notes),
                compression=options.compression,
                layers_built=tuple(b.stages.built),
                layers_cached=tuple(b.stages.cached),
            )
        result = replace(
            per[main],
            timings={"write": write_seconds, "total": time.monotonic() - t0},
            notes=per[main].notes + tuple(notes),
            index_digest=index.index_digest,
            platforms=tuple((oci_platform(a), per[a]) for a in arches),
        )
        atomic_write(out / "build.json", (json.dumps(result.summary(), indent=2) + "\n").encode())
        return result
    finally:
        if not os.environ.get("HARDFLOW_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)
