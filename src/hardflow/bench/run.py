"""``hardflow bench``: both images built, measured and run side by side in one run.

Order of work (each timed figure ``runs`` times; the medians are reported):

1. per run: hardflow cold build (empty download cache), warm rebuild (nothing changed), warm
   rebuild with one wheel pinned to another version (a copy of the lock in a temp dir);
   reference cold build (debootstrap, venv, pip with an empty cache) and warm rebuild with the
   same one-package change (base layer reused, pip cache kept);
2. the static figures of both images (and of the core spec's image) from their layers;
3. per run, alternating the images: first start, example DAG, restart, peak RSS.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from hardflow.bench.builds import (
    TimedBuild,
    alternative_wheel,
    cold_build,
    dag_edit_builds,
    layers_changed,
    timed_build,
    timed_index_build,
    write_changed_lock,
)
from hardflow.bench.metrics import ImageMetrics, image_path_env, measure_layers
from hardflow.bench.reference import PATH_ENV, ReferenceBuilder, ReferenceInputs, host_ca_bundle
from hardflow.bench.report import SCHEMA, render_markdown, targets
from hardflow.bench.runtime import RunTarget, RuntimeSample, measure_runtime
from hardflow.bench.stats import stat
from hardflow.contract import local_reference
from hardflow.errors import BuildError, FetchError, HardflowError
from hardflow.fsutil import atomic_write
from hardflow.lock.fetch import Cache
from hardflow.lock.mirrors import resolve_mirrors
from hardflow.lock.model import read_lock
from hardflow.pypi.index import index_config_from_host, index_urls
from hardflow.run import engine as eng
from hardflow.spec import ImageSpec, resolve_spec_arg

Say = Callable[[str], None]
BENCH_NAME = "hardflow-bench/airflow"
REFERENCE_NAME = "hardflow-bench/reference-airflow"
DEFAULT_CHANGE = "idna"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class BenchOptions:
    runs: int = 3
    results_dir: Path = Path("bench/results")
    work_dir: Path | None = None
    spec_arg: str | None = None
    core_spec: str | None = "core"
    platforms_spec: str | None = "airflow-multiplatform"
    change_package: str = DEFAULT_CHANGE
    reference: bool = True
    timeout: float = 900.0


CALIBRATION_LOOP = 3_000_000


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` of /proc/cpuinfo's text ("" when it names none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return ""


def cpu_calibration(repeat: int = 5) -> float:
    """Seconds this interpreter takes for a fixed pure-Python loop (the best of ``repeat``).

    Airflow's start is interpreter-bound, so this is the figure that tells two machines'
    start-up times apart: times measured on different machines compare only after dividing by
    it (or as ratios to the reference, measured on the same machine).
    """
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        total = 0
        for i in range(CALIBRATION_LOOP):
            total += i * i
        best = min(best, time.perf_counter() - start)
    return round(best, 3)


def host_info(engine: eng.Engine) -> dict[str, object]:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    version = subprocess.run([engine.path, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()  # fmt: skip
    try:
        model = cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        model = ""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor() or "?",
        "cpu_calibration_s": cpu_calibration(),
        "calibration_python": platform.python_version(),
        "memory_gb": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "engine": version or engine.name,
    }


def _layer_paths(build: TimedBuild) -> list[Path]:
    return [layer.path for layer in build.result.image.layers]


def _stats(values: Sequence[float]) -> dict[str, object]:
    return stat(values).to_json()


def _runtime_json(samples: Sequence[RuntimeSample]) -> dict[str, object]:
    labels = sorted({label for s in samples for label in s.peak_rss})
    rss = {
        label: _stats([s.peak_rss[label] for s in samples if label in s.peak_rss])
        for label in labels
    }
    totals = [sum(v for k, v in s.peak_rss.items() if k.startswith("airflow")) for s in samples]
    return {
        "first_start_s": _stats([s.first_start_s for s in samples]),
        "restart_s": _stats([s.restart_s for s in samples]),
        "dag_s": _stats([s.dag_s for s in samples]),
        "dag_states": [s.dag_state for s in samples],
        "peak_rss_bytes": rss,
        "peak_rss_total_bytes": _stats(totals),
        "samples": [s.to_json() for s in samples],
    }


T = TypeVar("T")


def _retry(what: str, fn: Callable[[], T], notes: list[str], say: Say, attempts: int = 3) -> T:
    """Run ``fn``; a network hiccup (DNS, a reset download) repeats the whole measurement,
    and the repetition is noted in the result."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (FetchError, BuildError) as exc:
            if attempt == attempts:
                raise
            notes.append(
                f"{what}: attempt {attempt} failed and was repeated: "
                f"{exc.message.splitlines()[0][:200]}"
            )
            say(f"{what} failed ({exc.message.splitlines()[0][:120]}); repeating")
            time.sleep(10)
    raise AssertionError("unreachable")


def _load(engine: eng.Engine, archive: Path | None) -> str:
    if archive is None:
        raise BuildError("the build wrote no docker-archive to load")
    return eng.load_archive(engine, archive)


def run_bench(options: BenchOptions, say: Say = _quiet) -> dict[str, Any]:
    engine = eng.detect_engine()
    spec, lock_path = resolve_spec_arg(options.spec_arg)
    spec = replace(spec, name=BENCH_NAME)  # own tag: never touches the user's image
    lock = read_lock(lock_path)
    if options.work_dir is not None:
        try:  # --work-dir: made if missing, as the user asked for scratch space there
            options.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HardflowError(
                f"--work-dir {options.work_dir}: cannot create it: {exc.strerror or exc}"
            ) from None
    work = Path(tempfile.mkdtemp(prefix="hardflow-bench-", dir=options.work_dir))
    notes: list[str] = []
    try:
        cache = Cache()
        index = index_urls(index_config_from_host())[0]
        new_wheel = alternative_wheel(lock, options.change_package, index, cache)
        old_wheel = next(w for w in lock.wheels if w.name == new_wheel.name)
        changed_lock, changed_path = write_changed_lock(lock, new_wheel, work)
        change = f"{new_wheel.name} {old_wheel.version} → {new_wheel.version}"
        ref_builder: ReferenceBuilder | None = None
        if options.reference:
            ref_builder = ReferenceBuilder(
                ReferenceInputs(
                    spec=spec,
                    wheels=lock.wheels,
                    mirror=resolve_mirrors(spec.debian).main,
                    index_url=index,
                    suite=next(s for s in spec.debian.suites if "-" not in s),
                    dag_source=_example_dag(),
                    ca_bundle=host_ca_bundle(),
                ),
                work / "reference",
                say,
            )

        hf_cold: list[float] = []
        hf_warm: list[float] = []
        hf_one: list[float] = []
        ref_cold: list[float] = []
        ref_one: list[float] = []
        hf_changed: tuple[str, ...] = ()
        hf_dag: list[float] = []
        hf_dag_changed: tuple[str, ...] = ()
        hf_rebuilt: tuple[str, ...] = ()
        ref_changed: tuple[str, ...] = ()
        hf_build: TimedBuild | None = None
        ref_image = None
        for run in range(options.runs):
            say(f"run {run + 1}/{options.runs}: hardflow cold build (empty caches)")
            layer_dir = work / "layer-cache"  # this run's: emptied by the cold build
            cold = _retry(
                f"run {run + 1}: hardflow cold build",
                partial(cold_build, spec, lock, lock_path, work, layer_dir),
                notes,
                say,
            )
            hf_cold.append(cold.seconds)
            say(f"  {cold.seconds:.1f}s; warm rebuild, nothing changed")
            base = timed_build(spec, lock, lock_path, work / "hardflow-warm", cache, layer_dir)
            hf_warm.append(base.seconds)
            say(f"  {base.seconds:.1f}s; warm rebuild with {change}")
            one = timed_build(spec, changed_lock, changed_path, work / "hardflow-one", cache,
                              layer_dir)  # fmt: skip
            hf_one.append(one.seconds)
            hf_changed = layers_changed(base.result.image.layers, one.result.image.layers)
            hf_rebuilt = one.result.layers_built
            say(
                f"  {one.seconds:.1f}s, layers changed: {', '.join(hf_changed) or 'none'} "
                f"(rebuilt: {', '.join(hf_rebuilt) or 'none'})"
            )
            hf_build = base
            say("  DAG folder baked in; warm rebuild after editing one DAG")
            dag_first, dag_edit = dag_edit_builds(
                spec, lock, lock_path, _example_dag(), work, cache, layer_dir
            )
            hf_dag.append(dag_edit.seconds)
            hf_dag_changed = layers_changed(
                dag_first.result.image.layers, dag_edit.result.image.layers
            )
            say(f"  {dag_edit.seconds:.1f}s, layers changed: {', '.join(hf_dag_changed) or 'none'}")
            if ref_builder is not None:
                say(f"run {run + 1}/{options.runs}: reference cold build")
                rc = _retry(
                    f"run {run + 1}: reference cold build",
                    partial(ref_builder.cold, f"{REFERENCE_NAME}:{spec.tag}", "image-cold"),
                    notes,
                    say,
                )
                ref_cold.append(rc.seconds)
                say(f"  {rc.seconds:.1f}s {rc.phases}; warm rebuild with {change}")
                rw = _retry(
                    f"run {run + 1}: reference warm rebuild",
                    partial(
                        ref_builder.warm,
                        changed_lock.wheels,
                        f"{REFERENCE_NAME}:{spec.tag}-changed",
                        "image-warm",
                    ),
                    notes,
                    say,
                )
                ref_one.append(rw.seconds)
                ref_changed = layers_changed(rc.image.layers, rw.image.layers)
                say(f"  {rw.seconds:.1f}s, layers changed: {', '.join(ref_changed)}")
                ref_image = rc.image
        assert hf_build is not None

        say("static figures")
        hf_env = image_path_env([f"{k}={v}" for k, v in spec.env.items()])
        hf_static = measure_layers(_layer_paths(hf_build), hf_env)
        images: dict[str, Any] = {
            "hardflow": {
                "reference": local_reference(spec.reference),
                "static": hf_static.to_json(),
                "layer_sizes": {layer.name: layer.size for layer in hf_build.result.image.layers},
                "build": {
                    "cold_s": _stats(hf_cold),
                    "warm_full_s": _stats(hf_warm),
                    "warm_one_package_s": _stats(hf_one),
                    "layers_changed": len(hf_changed),
                    "layers_changed_names": list(hf_changed),
                    "layers_rebuilt_names": list(hf_rebuilt),
                    "layers_total": len(hf_build.result.image.layers),
                    "changed_package": change,
                    "warm_dag_edit_s": _stats(hf_dag),
                    "dag_edit_layers_changed": len(hf_dag_changed),
                    "dag_edit_layers_changed_names": list(hf_dag_changed),
                },
            }
        }
        if ref_builder is not None and ref_image is not None:
            ref_static = measure_layers([layer.path for layer in ref_image.layers], PATH_ENV)
            images["reference"] = {
                "reference": local_reference(ref_image.reference),
                "static": ref_static.to_json(),
                "build": {
                    "cold_s": _stats(ref_cold),
                    "warm_one_package_s": _stats(ref_one),
                    "layers_changed": len(ref_changed),
                    "layers_total": len(ref_image.layers),
                    "changed_package": change,
                },
            }
        if options.core_spec:
            images["core"] = _core(options.core_spec, work, cache, say)
        if options.platforms_spec:
            images["platforms"] = _platforms(options.platforms_spec, work, cache, say)

        hf_ref = _load(engine, hf_build.result.image.archive_path)
        targets_run = [RunTarget(hf_ref, True, f"{spec.uid}:{spec.gid}")]
        if ref_image is not None:
            targets_run.append(RunTarget(_load(engine, ref_image.archive_path), False, None))
        samples: dict[int, list[RuntimeSample]] = {i: [] for i in range(len(targets_run))}
        for run in range(options.runs):
            order = range(len(targets_run)) if run % 2 == 0 else reversed(range(len(targets_run)))
            for i in order:
                name = f"hardflow-bench-{os.getpid()}-{i}"
                say(f"run {run + 1}/{options.runs}: {targets_run[i].image}")
                sample = measure_runtime(engine, targets_run[i], name, timeout=options.timeout,
                                         say=say)  # fmt: skip
                say(
                    f"  healthy {sample.first_start_s:.1f}s, DAG {sample.dag_s:.1f}s "
                    f"({sample.dag_state}), restart {sample.restart_s:.1f}s"
                )
                samples[i].append(sample)
        images["hardflow"]["runtime"] = _runtime_json(samples[0])
        if ref_image is not None:
            images["reference"]["runtime"] = _runtime_json(samples[1])
        notes += _standard_notes(hf_static, change)
        result: dict[str, Any] = {
            "schema": SCHEMA,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": host_info(engine),
            "runs": options.runs,
            "images": images,
            "notes": notes,
        }
        result["targets"] = [t.to_json() for t in targets(result)]
        write_results(result, options.results_dir)
        return result
    finally:
        if not os.environ.get("HARDFLOW_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)


def _core(spec_arg: str, work: Path, cache: Cache, say: Say) -> dict[str, Any]:
    spec, lock_path = resolve_spec_arg(spec_arg)
    spec = replace(spec, name=spec.name.replace("hardflow/", "hardflow-bench/", 1))
    say(f"core spec: build {spec.reference}")
    built = timed_build(spec, read_lock(lock_path), lock_path, work / "core", cache)
    env = image_path_env([f"{k}={v}" for k, v in spec.env.items()])
    return {
        "reference": local_reference(spec.reference),
        "static": measure_layers(_layer_paths(built), env).to_json(),
        "build": {"warm_full_s": _stats([built.seconds])},
    }


def _platforms(spec_arg: str, work: Path, cache: Cache, say: Say) -> dict[str, Any]:
    """The static figures of every platform of a multi-platform spec (one image index). Its
    host platform shares its layers with the one-platform default (same lock view), so this
    build mostly makes the other platforms' layers."""
    spec, lock_path = resolve_spec_arg(spec_arg)
    if len(spec.architectures) < 2:
        raise HardflowError(
            f"--platforms-spec {spec_arg}: expected a spec with several platforms "
            f"(`platforms = [...]`), found {', '.join(spec.platforms) or 'one platform'}"
        )
    spec = replace(spec, name=spec.name.replace("hardflow/", "hardflow-bench/", 1))
    say(f"platforms: build {spec.reference} for {', '.join(spec.platforms)}")
    timed = timed_index_build(spec, read_lock(lock_path), lock_path, work / "platforms", cache)
    built = timed.result
    env = image_path_env([f"{k}={v}" for k, v in spec.env.items()])
    per_platform = {
        platform: {"static": measure_layers([layer.path for layer in result.image.layers],
                                            env).to_json(),
                   "digest": result.image.manifest_digest}
        for platform, result in built.platforms
    }  # fmt: skip
    return {
        "reference": local_reference(spec.reference),
        "index_digest": built.index_digest,
        "build": {"warm_full_s": _stats([timed.seconds])},
        "platforms": per_platform,
    }


def _example_dag() -> bytes:
    return resources.files("hardflow").joinpath("examples/example_dag.py").read_bytes()


def _standard_notes(hf: ImageMetrics, change: str) -> list[str]:
    return [
        "Both images are measured from their layer tars by the same code; gzip -6 and zstd -3 "
        "are computed here over each layer's uncompressed tar.",
        "Build times include downloads for cold builds (empty caches: hardflow's download "
        "cache, pip's cache and debootstrap's) and exclude them for warm rebuilds, where "
        f"the changed wheel ({change}) is fetched before the clock starts.",
        "The reference's warm rebuild reuses its base layer (debootstrap + venv) and re-runs "
        "pip install with a warm pip cache, as a Dockerfile build with a cache mount would; "
        "restoring the cached base tree is not timed.",
        "The reference runs as root without hardening flags (as conventional images are "
        "usually run); hardflow runs read-only, with every capability dropped, "
        "no-new-privileges and UID 50000.",
        "Time to healthy: from `podman run` to the first answer of /api/v2/monitor/health "
        "with metadatabase, scheduler, triggerer and dag_processor all healthy, polled from "
        "the host every 0.25 s, for both images.",
        "Peak RSS: the largest VmHWM of each process in the container's cgroup, sampled "
        "every 0.5 s from the host's /proc from start to the end of the DAG run.",
    ]


def write_results(result: dict[str, Any], results_dir: Path) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    js = results_dir / "latest.json"
    md = results_dir / "latest.md"
    atomic_write(js, (json.dumps(result, indent=1, sort_keys=True) + "\n").encode())
    atomic_write(md, render_markdown(result).encode())
    return js, md


def spec_for(value: str | None) -> ImageSpec:
    return resolve_spec_arg(value)[0]
