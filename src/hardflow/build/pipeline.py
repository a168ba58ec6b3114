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
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hardflow import __version__
from hardflow.build.baked import (
    BakedFolder,
    assemble_baked,
    collect,
    dropped_note,
    hardflow_view,
    stage_parts,
)
from hardflow.build.elfcheck import check_shared_libraries
from hardflow.build.layercache import (
    LayerCache,
    StageOutput,
    builder_fingerprint,
    clashes,
    stage_key,
)
from hardflow.build.layers import LayerSpec, extract_layer, recompress, write_layer
from hardflow.build.rootfs import (
    STAGE_DIR,
    WHEEL_LAYERS,
    Compiler,
    DebInput,
    Stage,
    StageTree,
    WheelInput,
    assemble_debian,
    assemble_hardflow,
    assemble_wheels,
    compile_stages,
    debian_release,
    finish,
    layer_order,
    wheel_layer,
)
from hardflow.errors import ArchiveError, BuildError
from hardflow.fsutil import atomic_write
from hardflow.lock.fetch import Artifact, Cache, find_links_artifact, http_get
from hardflow.lock.mirrors import Mirrors, resolve_mirrors
from hardflow.lock.model import Lock, LockedDeb, LockedWheel, check_matches
from hardflow.oci.layer import COMPRESSIONS, Compression, Layer
from hardflow.oci.writer import ImageConfig, ImageResult, write_docker_archive, write_oci_layout
from hardflow.progress import NullProgress, Progress
from hardflow.pypi.index import IndexConfig, index_config_from_host, index_urls, wheel_url
from hardflow.spec import ImageSpec
from hardflow.supply.provenance import write_supply_chain

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
    compression: Compression = "gzip"  # of the OCI layout's layers; "zstd" on request
    layer_cache: bool = True  # reuse finished layers from the cache (False: rebuild all)
    layer_cache_dir: Path | None = None  # default: inside the download cache
    wheel_layers: int = WHEEL_LAYERS  # third-party wheels are spread over this many layers
    # the Debian architectures to build of a multi-platform spec (default: all of them)
    architectures: tuple[str, ...] = ()


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
    compression: Compression = "gzip"
    layers_built: tuple[str, ...] = ()  # layers made in this build
    layers_cached: tuple[str, ...] = ()  # layers taken from the layer cache
    # a multi-platform build: the image index's digest and every platform's own result
    # (``image`` is then the platform of the docker-archive: the host's when it was built)
    index_digest: str = ""
    platforms: tuple[tuple[str, BuildResult], ...] = ()

    def summary(self) -> dict[str, object]:
        data = self._summary()
        if self.platforms:  # added with multi-platform builds: absent from one-platform ones
            data["index_digest"] = self.index_digest
            data["platforms"] = {
                platform: {k: v for k, v in result._summary().items()
                           if k not in ("oci_layout", "docker_archive", "timings_seconds")}
                for platform, result in self.platforms
            }  # fmt: skip
        return data

    def _summary(self) -> dict[str, object]:
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
            "lock_checksum": self.lock_checksum,
            "compression": self.compression,
            "layers_built": list(self.layers_built),
            "layers_cached": list(self.layers_cached),
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
        if w.from_find_links:  # a wheel of the spec's [python] find-links folders
            return find_links_artifact(w, spec.python.find_links)
        return Artifact(
            w.filename,
            w.sha256,
            w.size,
            lambda: [wheel_url(sources()[1], w.name, w.filename, _download, sha256=w.sha256)],
        )

    deb_arts = [deb_art(d) for d in lock.debs]
    wheel_arts = [wheel_art(w) for w in lock.wheels]
    task = progress.task(
        f"download + verify ({len(deb_arts) + len(wheel_arts)} files)",
        total=len(deb_arts) + len(wheel_arts),
    )

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


def image_config(
    spec: ImageSpec, sde: int, layers: Sequence[Layer], lock: Lock, revision: str = ""
) -> ImageConfig:
    """The config of ``spec``'s image. ``revision``: the spec checksum for the revision
    label (default: ``spec``'s; a platform of a multi-platform spec gives the whole spec's)."""
    env = dict(spec.env)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin")
    history = tuple(
        f"hardflow {__version__}: {layer.name} ({layer.file_count} entries)" for layer in layers
    )
    return ImageConfig(
        user=f"{spec.uid}:{spec.gid}",
        env=tuple(f"{k}={v}" for k, v in sorted(env.items())),
        entrypoint=spec.entrypoint,
        cmd=spec.cmd,
        workdir=spec.workdir,
        exposed_ports=tuple(f"{p}/tcp" for p in spec.ports),
        labels=image_labels(spec, sde, lock, revision),
        stop_signal=spec.stop_signal,
        healthcheck=spec.healthcheck or None,
        volumes=(),
        created=sde,
        architecture=spec.debian.architecture,
        history=history,
    )


def image_labels(spec: ImageSpec, sde: int, lock: Lock, revision: str = "") -> dict[str, str]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sde))
    labels = {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.version": spec.tag,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": revision or spec.checksum(),
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
    if options.compression not in COMPRESSIONS:
        raise BuildError(
            f"unknown layer compression {options.compression!r} "
            f"(expected one of {', '.join(COMPRESSIONS)})"
        )
    sde = (
        options.source_date_epoch
        if options.source_date_epoch is not None
        else (lock.source_date_epoch)
    )
    if spec.platforms or options.architectures not in ((), spec.architectures):
        raise BuildError(
            f"{spec.source or spec.reference}: a spec of several platforms is built by "
            "hardflow.build.platforms.build_image (one image index), not build()"
        )
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    baked = collect(spec)  # the DAG and plugin folders, read before anything is built
    debs, wheels = fetch_inputs(spec, lock, options.cache, progress, options.jobs)
    timings["fetch"] = time.monotonic() - t0

    parent = options.work_dir or options.out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".hardflow-build-", dir=parent))
    try:
        t = time.monotonic()
        stages = Stages(spec, sde, options, work, progress)
        outputs = stages.run(debs, wheels, baked)
        timings["assemble"] = stages.assemble_seconds
        timings["layers"] = time.monotonic() - t - stages.assemble_seconds
        layers = [layer for out in outputs for layer in out.layers]
        timings["libraries"] = check_shared_libraries(
            spec, layers, options.cache, options.layer_cache_dir, progress
        ).seconds  # every DT_NEEDED library is in the image (raises LinkError)

        t = time.monotonic()
        config = image_config(spec, sde, layers, lock)
        annotations = {
            k: v for k, v in config.labels.items() if k.startswith("org.opencontainers.image.")
        }
        out = options.out_dir
        image = write_oci_layout(layers, config, annotations, spec.reference, out / "oci")
        # the work directory goes away: point the result at the blobs in the layout
        image = replace(
            image,
            layers=tuple(
                replace(layer, path=image.layout_dir / "blobs/sha256" / layer.digest.split(":")[1])
                for layer in image.layers
            ),
        )
        notes = [note for o in outputs for note in o.notes] + stages.notes
        if options.docker_archive:
            archive_layers = None
            if options.compression != "gzip":
                archive_layers = stages.gzip_copies(image.layers)
                notes.append(
                    "docker-archive.tar carries the same layers gzip-compressed (a "
                    "docker-archive has no media types; same diff_ids, same image ID)"
                )
            archive = write_docker_archive(image, out / "docker-archive.tar", archive_layers)
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
            setuid_cleared=tuple(sorted(p for o in outputs for p in o.setuid_cleared)),
            pyc_compiled=sum(o.pyc_compiled for o in outputs),
            timings=timings,
            notes=tuple(notes),
            compression=options.compression,
            layers_built=tuple(stages.built),
            layers_cached=tuple(stages.cached),
        )
        # SBOMs (SPDX, CycloneDX) and provenance beside the layout, for every build
        t = time.monotonic()
        # what each layer holds for the SBOMs is kept by digest beside the layer cache, so a
        # rebuild reads only its new layers (--no-layer-cache reads them all)
        memo = stages.cache.store.root / "sbom-layers" if options.layer_cache else None
        write_supply_chain(result.image, sde, lock, spec, out, memo)
        timings["supply_chain"] = time.monotonic() - t
        atomic_write(out / "build.json", (json.dumps(result.summary(), indent=2) + "\n").encode())
        return result
    finally:
        if not os.environ.get("HARDFLOW_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)


def compiler_id(compiler: Compiler | None) -> str:
    """Names the bytecode compiler in the stage keys (its output is part of the layers)."""
    if compiler is None:
        return "chroot:target-interpreter"
    cache_id = getattr(compiler, "cache_id", None)
    if isinstance(cache_id, str):  # a CrossCompiler: the host interpreter's packages
        return cache_id
    return f"{getattr(compiler, '__module__', '?')}.{getattr(compiler, '__qualname__', '?')}"


class Stages:
    """Runs the stages of one build: each from the layer cache when its key is there, else
    built (and stored). The layers come out in image order."""

    def __init__(
        self, spec: ImageSpec, sde: int, options: BuildOptions, work: Path, progress: Progress
    ) -> None:
        self.spec = spec
        self.sde = sde
        self.options = options
        self.work = work
        self.progress = progress
        store = options.cache if options.layer_cache_dir is None else Cache(options.layer_cache_dir)
        self.cache = LayerCache(store)
        self.built: list[str] = []
        self.cached: list[str] = []
        self.notes: list[str] = []
        self.assemble_seconds = 0.0
        self.common: dict[str, Any] = {
            "builder": builder_fingerprint(),
            "sde": sde,
            "compression": options.compression,
            "compiler": compiler_id(options.compiler),
            "python": spec.python.version,
            "interpreter": spec.python.interpreter_path,
        }
        self._phases: dict[str, Any] = {}

    # -- cache -------------------------------------------------------------------------------

    def _lookup(self, key: str) -> StageOutput | None:
        if not self.options.layer_cache:
            return None
        found = self.cache.get(key)
        if found.problem:
            self.notes.append(found.problem)
            self.progress.log(found.problem)
        return found.output

    def _on_progress(self, phase: str, done: int, total: int) -> None:
        task = self._phases.get(phase)
        if task is None:
            task = self._phases[phase] = self.progress.task(phase, total=total or None)
        task.advance(1)

    def _finish_phases(self) -> None:
        for task in self._phases.values():
            task.finish()
        self._phases.clear()

    # -- the stages ----------------------------------------------------------------------------

    def run(
        self,
        debs: Sequence[DebInput],
        wheels: Sequence[WheelInput],
        baked: tuple[BakedFolder, ...] = (),
    ) -> list[StageOutput]:
        spec = self.spec
        debian, base_root = self.debian(debs)

        base = {"base": [layer.diff_id for layer in debian.layers]}
        groups: dict[str, list[WheelInput]] = {}
        for whl in wheels:
            groups.setdefault(wheel_layer(whl.locked.name, self.options.wheel_layers),
                              []).append(whl)  # fmt: skip
        order = layer_order(self.options.wheel_layers)
        plans: list[tuple[str, str, list[WheelInput]]] = []
        for name in order:
            if name in groups:
                key = stage_key({
                    **self.common, **base, "stage": name,
                    "wheels": sorted([w.locked.name, w.locked.filename, w.locked.sha256]
                                     for w in groups[name]),
                })  # fmt: skip
                plans.append((name, key, groups[name]))
        # the hardflow layer does not depend on the baked folders (nor on where they are)
        view, dropped = hardflow_view(spec)
        if dropped:
            self.notes.append(dropped_note(spec, dropped))
        hardflow_key = stage_key({**self.common, **base, "stage": "hardflow",
                                  "spec": view.checksum()})  # fmt: skip
        plans.append(("hardflow", hardflow_key, []))

        found: dict[str, StageOutput] = {}
        for name, key, _ in plans:
            hit = self._lookup(key)
            if hit is not None:
                found[name] = hit
        missing = [p for p in plans if p[0] not in found]
        if missing:
            if base_root is None:
                t = time.monotonic()
                base_root = self.work / "base"
                for layer in debian.layers:
                    extract_layer(layer, base_root)
                self.assemble_seconds += time.monotonic() - t
            found.update(self._build_upper(missing, base_root))
        rebuilt = {name for name, _, _ in missing}
        for name, _, _ in plans:
            target = self.built if name in rebuilt else self.cached
            target.extend(layer.name for layer in found[name].layers)
        outputs = [debian, *(found[name] for name, _, _ in plans)]
        clash = clashes([found[name] for name, _, _ in plans if name != "hardflow"])
        if clash:
            path, a, b = clash[0]
            raise ArchiveError(
                f"the wheels of layers {a} and {b} both ship /{path}"
                + (f" (and {len(clash) - 1} more files)" if len(clash) > 1 else ""),
                hint="two locked packages ship the same file; drop one of them",
            )
        if baked:
            outputs.append(self._baked(baked))
        return outputs

    def debian(self, debs: Sequence[DebInput]) -> tuple[StageOutput, Path | None]:
        """The Debian stage (``debian-base``, ``python-runtime``): from the layer cache, or
        built, and then also its tree (``work/base``, else None)."""
        deb_key = stage_key({
            **self.common, "stage": "debian",
            "release": list(debian_release(self.spec)),
            "debs": sorted([d.locked.name, d.locked.version, d.locked.architecture,
                            d.locked.sha256] for d in debs),
        })  # fmt: skip
        debian = self._lookup(deb_key)
        if debian is None:
            base_root = self.work / "base"
            return self._build_debian(deb_key, debs, base_root), base_root
        self.cached.extend(layer.name for layer in debian.layers)
        return debian, None

    def _baked(self, folders: tuple[BakedFolder, ...]) -> StageOutput:
        """The baked layer: from the cache, or written from the folders (no lower layer is
        unpacked for it)."""
        key = stage_key({**self.common, **stage_parts(self.spec, folders)})
        hit = self._lookup(key)
        if hit is not None:
            self.cached.extend(layer.name for layer in hit.layers)
            return hit
        t = time.monotonic()
        stage = assemble_baked(self.spec, folders, self.work / "baked")
        self.assemble_seconds += time.monotonic() - t
        layers = self._write_layers([(stage, spec_) for spec_ in stage.layers])
        self.built.extend(layer.name for layer in layers)
        return self.cache.put(StageOutput(key=key, layers=tuple(layers)))

    def _build_debian(self, key: str, debs: Sequence[DebInput], root: Path) -> StageOutput:
        t = time.monotonic()
        tree = assemble_debian(self.spec, debs, root, self._on_progress)
        (count,) = compile_stages(root, [tree], self.spec, self._on_progress,
                                  self.options.compiler)  # fmt: skip
        stage = finish(tree, ("debian-base", "python-runtime"), count)
        self._finish_phases()
        self.assemble_seconds += time.monotonic() - t
        layers = self._write_layers([(stage, spec_) for spec_ in stage.layers])
        self.built.extend(layer.name for layer in layers)
        output = StageOutput(
            key=key,
            layers=tuple(layers),
            setuid_cleared=stage.setuid_cleared,
            pyc_compiled=stage.pyc_compiled,
            dropped_files=stage.dropped_files,
            notes=stage.notes,
        )
        return self.cache.put(output)

    def _build_upper(
        self, plans: Sequence[tuple[str, str, list[WheelInput]]], base_root: Path
    ) -> dict[str, StageOutput]:
        t = time.monotonic()
        trees: list[StageTree] = []
        for name, _, group in plans:
            staging = base_root / STAGE_DIR / name
            if name == "hardflow":
                trees.append(assemble_hardflow(hardflow_view(self.spec)[0], staging))
            else:
                trees.append(
                    assemble_wheels(
                        self.spec,
                        name,
                        group,
                        staging,
                        self.work / "wheel-links",
                        self._on_progress,
                    )
                )
        counts = compile_stages(base_root, trees, self.spec, self._on_progress,
                                self.options.compiler)  # fmt: skip
        stages = [
            finish(tree, (name,), count)
            for tree, (name, _, _), count in zip(trees, plans, counts, strict=True)
        ]
        self._finish_phases()
        self.assemble_seconds += time.monotonic() - t
        jobs = [(stage, spec_) for stage in stages for spec_ in stage.layers]
        layers = iter(self._write_layers(jobs))
        results: dict[str, StageOutput] = {}
        for (name, key, _), stage in zip(plans, stages, strict=True):
            stage_layers = tuple(next(layers) for _ in stage.layers)
            files = tuple(
                p
                for spec_ in stage.layers
                for p in spec_.paths
                if (stage.root / p).is_file() or (stage.root / p).is_symlink()
            )
            output = StageOutput(
                key=key,
                layers=stage_layers,
                files=files,
                setuid_cleared=stage.setuid_cleared,
                pyc_compiled=stage.pyc_compiled,
                dropped_files=stage.dropped_files,
                notes=stage.notes,
            )
            results[name] = self.cache.put(output)
        return results

    def _write_layers(self, jobs: Sequence[tuple[Stage, LayerSpec]]) -> list[Layer]:
        """Write the layers, a few at a time (compression runs outside the GIL)."""
        total = sum(
            (stage.root / p).lstat().st_size
            for stage, spec_ in jobs
            for p in spec_.paths
            if (stage.root / p).is_file() and not (stage.root / p).is_symlink()
        )
        bar = self.progress.task(
            f"write layers ({self.options.compression})", total=total, bytes_=True
        )
        blobs = self.work / "blobs"
        lock_ = threading.Lock()

        def advance(n: int) -> None:
            with lock_:
                bar.advance(n)

        def one(job: tuple[Stage, LayerSpec]) -> Layer:
            stage, spec_ = job
            return write_layer(stage.root, spec_, stage.owners, self.sde, blobs, advance,
                               self.options.compression)  # fmt: skip

        workers = max(1, min(len(jobs), os.cpu_count() or 1, 4))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            layers = list(pool.map(one, jobs))
        bar.finish()
        return layers

    def gzip_copies(self, layers: Sequence[Layer]) -> list[Layer]:
        """The layers gzip-compressed (for the docker-archive), through the layer cache."""

        def one(layer: Layer) -> Layer:
            key = stage_key({"builder": self.common["builder"], "stage": "recompress",
                             "from": layer.digest, "to": "gzip"})  # fmt: skip
            hit = self._lookup(key)
            if hit is None:
                copy = recompress(layer, "gzip", self.work / "blobs-gzip")
                hit = self.cache.put(StageOutput(key=key, layers=(copy,)))
            return replace(hit.layers[0], name=layer.name)

        workers = max(1, min(len(layers), os.cpu_count() or 1, 4))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, layers))
