"""The bench result as JSON (``bench/results/latest.json``) and as a Markdown table.

The JSON is the record; the Markdown is rendered from the JSON alone, so a committed result can
be re-rendered (``hardflow bench --render``) without running anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hardflow.bench.stats import ratio

SCHEMA = "hardflow-bench/1"
MB = 1_000_000
# The targets for the default image (and the core spec).
TARGET_COMPRESSED_MB = 100.0
TARGET_COMPRESSED_RATIO = 0.5
TARGET_FIRST_START_RATIO = 0.5
TARGET_WARM_ONE_PACKAGE_S = 15.0
TARGET_WARM_DAG_EDIT_S = 5.0  # issue 14: editing a baked DAG rebuilds one small layer
TARGET_CORE_COMPRESSED_MB = 60.0


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    limit: float
    unit: str

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value <= self.limit

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": None if self.value is None else round(self.value, 3),
            "limit": self.limit,
            "unit": self.unit,
            "met": self.met,
        }


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _median(doc: Mapping[str, Any], *path: str) -> float | None:
    value = _get(doc, *path)
    if isinstance(value, Mapping):
        value = value.get("median")
    return float(value) if isinstance(value, int | float) else None


def targets(result: Mapping[str, Any]) -> list[Target]:
    hf = _get(result, "images", "hardflow") or {}
    ref = _get(result, "images", "reference") or {}
    core = _get(result, "images", "core") or {}
    gz = _median(hf, "static", "gzip_bytes")
    ref_gz = _median(ref, "static", "gzip_bytes")
    core_gz = _median(core, "static", "gzip_bytes")
    first = _median(hf, "runtime", "first_start_s")
    ref_first = _median(ref, "runtime", "first_start_s")
    return [
        Target("default image compressed (gzip)", None if gz is None else gz / MB,
               TARGET_COMPRESSED_MB, "MB"),
        Target("compressed vs reference", ratio(gz, ref_gz), TARGET_COMPRESSED_RATIO, "×"),
        Target("first start to healthy vs reference", ratio(first, ref_first),
               TARGET_FIRST_START_RATIO, "×"),
        Target("warm one-package rebuild", _median(hf, "build", "warm_one_package_s"),
               TARGET_WARM_ONE_PACKAGE_S, "s"),
        Target("core image compressed (gzip)", None if core_gz is None else core_gz / MB,
               TARGET_CORE_COMPRESSED_MB, "MB"),
        Target("warm rebuild after a baked DAG edit", _median(hf, "build", "warm_dag_edit_s"),
               TARGET_WARM_DAG_EDIT_S, "s"),
    ]  # fmt: skip


def _fmt_stat(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, Mapping):
        med, lo, hi = value.get("median"), value.get("min"), value.get("max")
        if med is None:
            return "—"
        if lo is None or hi is None or len(value.get("runs", [])) <= 1:
            return _fmt_num(float(med), unit)
        return f"{_fmt_num(float(med), unit)} ({_bare(float(lo), unit)}–{_bare(float(hi), unit)})"
    return _fmt_num(float(value), unit)


def _bare(value: float, unit: str) -> str:
    """A range bound: the number without its unit."""
    return _fmt_num(value, unit).removesuffix(" MB").removesuffix(" s")


def _fmt_num(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value / MB:.1f} MB"
    if unit == "s":
        return f"{value:.1f} s"
    if unit == "":
        return f"{value:.1f}" if value != int(value) else f"{int(value):,}"
    return f"{int(value):,}"


def _fmt_ratio(a: float | None, b: float | None) -> str:
    r = ratio(a, b)
    return "—" if r is None else f"{r:.2f}×"


_ROWS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("size, uncompressed", ("static", "uncompressed_bytes"), "MB"),
    ("size, gzip -6", ("static", "gzip_bytes"), "MB"),
    ("size, zstd -3", ("static", "zstd_bytes"), "MB"),
    ("layers", ("static", "layers"), "n"),
    ("regular files", ("static", "files"), "n"),
    ("Debian packages", ("static", "debian_packages"), "n"),
    ("setuid/setgid files", ("static", "setid_files"), "n"),
    ("binaries in the PATH", ("static", "path_binaries"), "n"),
    ("Python distributions", ("static", "python_distributions"), "n"),
    ("cold build (empty cache)", ("build", "cold_s"), "s"),
    ("warm rebuild, nothing changed", ("build", "warm_full_s"), "s"),
    ("warm rebuild, one package changed", ("build", "warm_one_package_s"), "s"),
    ("layers changed by that rebuild", ("build", "layers_changed"), "n"),
    ("warm rebuild, one baked DAG edited", ("build", "warm_dag_edit_s"), "s"),
    ("layers changed by that rebuild", ("build", "dag_edit_layers_changed"), "n"),
    ("first start → all components healthy", ("runtime", "first_start_s"), "s"),
    ("restart (existing DB) → healthy", ("runtime", "restart_s"), "s"),
    ("example DAG: trigger → success", ("runtime", "dag_s"), "s"),
    ("peak RSS, all Airflow processes (sum)", ("runtime", "peak_rss_total_bytes"), "MB"),
)


def render_markdown(result: Mapping[str, Any]) -> str:
    hf = _get(result, "images", "hardflow") or {}
    ref = _get(result, "images", "reference") or {}
    core = _get(result, "images", "core") or {}
    lines = [
        "# hardflow bench",
        "",
        f"Run {result.get('date', '?')} on {_host(result)}; every timed figure is the median "
        f"of {result.get('runs', '?')} run(s), (min–max) where more than one.",
        "",
        f"- **hardflow**: `{hf.get('reference', '?')}` (built by hardflow, run hardened: "
        "read-only root, all capabilities dropped, no-new-privileges, UID 50000)",
        f"- **reference**: `{ref.get('reference', '?')}` (Debian 13 minbase + python3 venv + "
        "pip install of the same locked requirements; runs as root, as such images often do)",
    ]
    if core:
        lines.append(
            f"- **core**: `{core.get('reference', '?')}` (LocalExecutor + PostgreSQL "
            "spec: no Celery, no Kubernetes)"
        )
    lines += ["", "| figure | hardflow | reference | hardflow / reference | core |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for label, path, unit in _ROWS:
        a, b, c = _get(hf, *path), _get(ref, *path), _get(core, *path)
        if a is None and b is None:
            continue
        lines.append(
            f"| {label} | {_fmt_stat(a, unit)} | {_fmt_stat(b, unit)} | "
            f"{_fmt_ratio(_median(hf, *path), _median(ref, *path))} | {_fmt_stat(c, unit)} |"
        )
    lines += _platform_rows(_get(result, "images", "platforms") or {})
    change = _get(hf, "build", "changed_package")
    if change:
        lines += ["", f"One-package change: {change}."]
    rss_a = _get(hf, "runtime", "peak_rss_bytes") or {}
    rss_b = _get(ref, "runtime", "peak_rss_bytes") or {}
    if rss_a or rss_b:
        lines += [
            "",
            "Peak RSS per process (largest VmHWM of a process with that label):",
            "",
            "| process | hardflow | reference | ratio |",
            "|---|---:|---:|---:|",
        ]
        for label in sorted(set(rss_a) | set(rss_b)):
            a, b = rss_a.get(label), rss_b.get(label)
            lines.append(
                f"| {label} | {_fmt_stat(a, 'MB')} | {_fmt_stat(b, 'MB')} | "
                f"{_fmt_ratio(_median(rss_a, label), _median(rss_b, label))} |"
            )
    lines += [
        "",
        "Targets (a miss is reported, not hidden):",
        "",
        "| target | value | limit | met |",
        "|---|---:|---:|:---:|",
    ]
    for t in targets(result):
        value = "—" if t.value is None else f"{t.value:.2f} {t.unit}"
        met = "n/a" if t.met is None else ("yes" if t.met else "**MISS**")
        lines.append(f"| {t.name} | {value} | {t.limit:g} {t.unit} | {met} |")
    notes = result.get("notes") or []
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_PLATFORM_ROWS: tuple[tuple[str, str, str], ...] = (
    ("size, uncompressed", "uncompressed_bytes", "MB"),
    ("size, gzip -6", "gzip_bytes", "MB"),
    ("size, zstd -3", "zstd_bytes", "MB"),
    ("regular files", "files", "n"),
    ("Debian packages", "debian_packages", "n"),
    ("Python distributions", "python_distributions", "n"),
)


def _platform_rows(multi: Mapping[str, Any]) -> list[str]:
    """The multi-platform spec's image index: the static figures of each platform."""
    platforms = multi.get("platforms")
    if not isinstance(platforms, Mapping) or not platforms:
        return []
    names = sorted(platforms)
    lines = [
        "",
        f"Per platform: `{multi.get('reference', '?')}`, one image index "
        f"(`{str(multi.get('index_digest', '?'))[:19]}…`), built in "
        f"{_fmt_stat(_get(multi, 'build', 'warm_full_s'), 's')} after the runs above:",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, key, unit in _PLATFORM_ROWS:
        cells = [_fmt_stat(_get(platforms, name, "static", key), unit) for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _host(result: Mapping[str, Any]) -> str:
    host = result.get("host") or {}
    if not isinstance(host, Mapping):
        return "?"
    cpu = f"{host.get('cpus', '?')} CPUs"
    if host.get("cpu_model"):
        cpu += f" ({host['cpu_model']})"
    if host.get("cpu_calibration_s") is not None:
        cpu += (
            f", CPU calibration {host['cpu_calibration_s']} s "
            f"(Python {host.get('calibration_python', '?')})"
        )
    return f"{cpu}, {host.get('memory_gb', '?')} GB RAM, {host.get('engine', '?')}"
