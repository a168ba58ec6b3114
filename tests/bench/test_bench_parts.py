"""Pure parts of the bench: stats, report, targets, process labels, lock changes, reference."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hardflow.bench.builds import layers_changed, pick_alternative, with_wheel
from hardflow.bench.reference import (
    changed_paths,
    debootstrap_argv,
    host_ca_bundle,
    pip_argv,
    requirements_txt,
    snapshot,
    tar_layer,
)
from hardflow.bench.report import render_markdown, targets
from hardflow.bench.run import cpu_calibration, cpu_model
from hardflow.bench.runtime import (
    RunTarget,
    components_healthy,
    parse_vmhwm,
    peak_by_label,
    process_label,
)
from hardflow.bench.stats import ratio, stat
from hardflow.cli.bench import bench
from hardflow.errors import HardflowError, LockError
from hardflow.lock.model import Lock, LockedWheel
from hardflow.oci.layer import Layer
from hardflow.pypi.index import IndexFile


def test_stat_median_min_max() -> None:
    s = stat([3.0, 1.0, 2.0])
    assert (s.median, s.min, s.max) == (2.0, 1.0, 3.0)
    assert s.to_json() == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}
    assert stat([4.0, 1.0]).median == 2.5
    with pytest.raises(HardflowError):
        stat([])
    assert ratio(1.0, 4.0) == 0.25 and ratio(1.0, 0.0) is None and ratio(None, 1.0) is None


def _result(gz: float, ref_gz: float, first: float, ref_first: float, warm: float,
            core_gz: float) -> dict[str, object]:
    def s(v: float) -> dict[str, object]:
        return stat([v, v + 1, v - 1]).to_json()

    return {
        "date": "2026-01-01T00:00:00Z", "runs": 3, "host": {"cpus": 2},
        "images": {
            "hardflow": {
                "reference": "localhost/hf:1",
                "static": {"gzip_bytes": gz, "files": 100, "setid_files": 0},
                "build": {"warm_one_package_s": s(warm), "layers_changed": 1,
                          "changed_package": "idna 3.11 → 3.10",
                          "warm_dag_edit_s": s(warm / 4), "dag_edit_layers_changed": 1},
                "runtime": {"first_start_s": s(first),
                            "peak_rss_bytes": {"airflow scheduler": s(2e8)}},
            },
            "reference": {
                "reference": "localhost/ref:1",
                "static": {"gzip_bytes": ref_gz, "files": 400, "setid_files": 9},
                "runtime": {"first_start_s": s(ref_first),
                            "peak_rss_bytes": {"airflow scheduler": s(3e8)}},
            },
            "core": {"reference": "localhost/core:1", "static": {"gzip_bytes": core_gz}},
        },
        "notes": ["a note"],
    }  # fmt: skip


def test_targets_report_hits_and_misses() -> None:
    met = {t.name: t.met for t in targets(_result(90e6, 200e6, 10, 30, 12, 55e6))}
    assert all(met.values()), met
    missed = {t.name: t.met for t in targets(_result(115e6, 180e6, 10, 15, 35, 80e6))}
    assert missed == {
        "default image compressed (gzip)": False,
        "compressed vs reference": False,
        "first start to healthy vs reference": False,
        "warm one-package rebuild": False,
        "core image compressed (gzip)": False,
        "warm rebuild after a baked DAG edit": False,
    }
    unknown = targets({"images": {"hardflow": {}}})
    assert all(t.met is None for t in unknown)


def test_markdown_table_has_both_images_ratio_and_misses() -> None:
    md = render_markdown(_result(115e6, 180e6, 10, 15, 35, 80e6))
    assert "| size, gzip -6 | 115.0 MB | 180.0 MB | 0.64× | 80.0 MB |" in md
    assert "| regular files | 100 | 400 | 0.25× |" in md
    assert "| setuid/setgid files | 0 | 9 | 0.00× |" in md
    assert "| first start → all components healthy | 10.0 s (9.0–11.0) | 15.0 s (14.0–16.0)" in md
    assert "| airflow scheduler | 200.0 MB" in md
    assert md.count("**MISS**") == 6
    assert "| warm rebuild, one baked DAG edited | 8.8 s (7.8–9.8) |" in md
    assert "idna 3.11 → 3.10" in md and "- a note" in md


def test_the_run_line_names_the_cpu_and_its_calibration() -> None:
    result = _result(115e6, 180e6, 10, 15, 35, 80e6)
    assert "on 2 CPUs, ? GB RAM" in render_markdown(result)  # a result from before the keys
    result["host"] = {
        "cpus": 2, "cpu_model": "AMD EPYC", "cpu_calibration_s": 0.226,
        "calibration_python": "3.11.7", "memory_gb": 23.5, "engine": "podman version 4.3.1",
    }  # fmt: skip
    line = "on 2 CPUs (AMD EPYC), CPU calibration 0.226 s (Python 3.11.7), 23.5 GB RAM, podman"
    assert line in render_markdown(result)


def test_cpu_model_and_calibration() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n"
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert cpu_model("processor\t: 0\nmodel name\t:\n") == ""  # arm64 kernels name none
    assert 0 < cpu_calibration(repeat=1) < 30


def test_process_labels_match_across_images() -> None:
    assert process_label(b"/opt/venv/bin/python3\0/opt/venv/bin/airflow\0scheduler\0") == (
        "airflow scheduler"
    )
    assert process_label(b"/usr/bin/python3.13\0/usr/local/bin/airflow\0scheduler\0") == (
        "airflow scheduler"
    )
    assert process_label(b"airflow scheduler -- DagFileProcessorManager\0") == (
        "airflow scheduler"
    )
    assert process_label(b"airflow task supervisor: [ti-id]\0") == "airflow task supervisor:"
    assert process_label(b"/usr/bin/tini\0-e\0143\0--\0python3.13\0") == "tini"
    assert process_label(b"/usr/bin/python3.13\0-c\0import x\0") == "python -c"
    launcher = b"import sys\nfrom airflow.__main__ import main\nmain()"
    assert process_label(b"/usr/bin/python3.13\0-P\0-c\0" + launcher + b"\0standalone\0") == (
        "airflow standalone"
    )
    assert process_label(b"/usr/bin/python3.13\0/usr/local/lib/hardflow/entrypoint.py\0") == (
        "entrypoint.py"
    )
    assert process_label(b"") == "?"
    assert peak_by_label({1: ("a", 5), 2: ("a", 9), 3: ("b", 1)}) == {"a": 9, "b": 1}
    assert parse_vmhwm("Name:\tx\nVmHWM:\t  1024 kB\n") == 1024 * 1024
    assert parse_vmhwm("Name:\tzombie\n") is None


def test_health_json_needs_every_component() -> None:
    healthy = {k: {"status": "healthy"} for k in
               ("metadatabase", "scheduler", "triggerer", "dag_processor")}  # fmt: skip
    assert components_healthy(healthy)
    assert not components_healthy({**healthy, "triggerer": {"status": "unhealthy"}})
    assert not components_healthy({k: v for k, v in healthy.items() if k != "dag_processor"})
    assert not components_healthy(None)


def test_run_targets_hardened_or_conventional() -> None:
    hard = RunTarget("img", True, "50000:0").options("n", "n-home", 8081)
    conv = RunTarget("ref", False, None).options("n", "n-home", 8082)
    assert hard.read_only and hard.cap_drop_all and hard.no_new_privileges
    assert hard.user == "50000:0" and hard.tmpfs == ("/tmp",)
    assert not (conv.read_only or conv.cap_drop_all or conv.no_new_privileges)
    assert conv.user is None and conv.volumes == {"n-home": "/opt/airflow"}
    assert hard.memory == conv.memory and hard.pids_limit == conv.pids_limit


W = LockedWheel("idna", "3.11", "idna-3.11-py3-none-any.whl", "a" * 64, 10)


def _lock() -> Lock:
    other = LockedWheel("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "b" * 64, 5)
    return Lock("sha256:x", (), (), (W, other))


def test_with_wheel_and_pick_alternative() -> None:
    new = LockedWheel("idna", "3.10", "idna-3.10-py3-none-any.whl", "c" * 64, 9)
    changed = with_wheel(_lock(), new)
    assert [w.version for w in changed.wheels] == ["3.10", "1.17.0"]
    with pytest.raises(LockError):
        with_wheel(_lock(), LockedWheel("nope", "1", "nope-1-py3-none-any.whl", "d" * 64, 1))
    files = [
        IndexFile("idna-3.12-py3-none-any.whl", "u12", "1" * 64),
        IndexFile("idna-3.10-py3-none-any.whl", "u10", "2" * 64),
        IndexFile("idna-3.9-py3-none-any.whl", "u9", "3" * 64),
        IndexFile("idna-3.10.tar.gz", "s", "4" * 64),
        IndexFile("idna-3.11rc1-py3-none-any.whl", "rc", "5" * 64),
        IndexFile("idna-3.8-cp313-cp313-manylinux_2_17_x86_64.whl", "bin", "6" * 64),
    ]
    assert pick_alternative(W, files).url == "u10"
    assert pick_alternative(W, files[:1]).url == "u12"
    with pytest.raises(LockError):
        pick_alternative(W, files[3:])


def test_layers_changed_names_the_differing_layers(tmp_path: Path) -> None:
    def layer(name: str, digest: str) -> Layer:
        return Layer(name, tmp_path, digest, digest, 1, 1, 1)

    a = [layer("base", "sha256:1"), layer("wheels", "sha256:2"), layer("airflow", "sha256:3")]
    b = [layer("base", "sha256:1"), layer("wheels", "sha256:9"), layer("airflow", "sha256:3")]
    assert layers_changed(a, b) == ("wheels",)
    assert layers_changed(a, a[:2]) == ("airflow",)


def test_reference_requirements_and_command_lines() -> None:
    text = requirements_txt(list(reversed(_lock().wheels)))
    assert text.splitlines() == [
        f"idna==3.11 --hash=sha256:{'a' * 64}",
        f"six==1.17.0 --hash=sha256:{'b' * 64}",
    ]
    argv = pip_argv("file:///idx/simple", "/tmp/c", "/tmp/ca.pem")
    assert argv[argv.index("--only-binary") + 1] == ":all:"
    assert argv[argv.index("--index-url") + 1] == "file:///idx/simple"
    assert "--require-hashes" in argv and argv[-2:] == ["--cert", "/tmp/ca.pem"]
    assert "--cert" not in pip_argv("file:///idx/simple", "/tmp/c")
    deb = debootstrap_argv(Path("/r"), "trixie", "file:///mirror", "/k.gpg")
    assert deb[:2] == ["debootstrap", "--variant=minbase"]
    assert deb[-3:] == ["trixie", "/r", "file:///mirror"]
    assert host_ca_bundle({}) == ""


def test_pip_layer_holds_only_what_changed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os").write_text("debian\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/su").write_text("su")
    (root / "usr/bin/su").chmod(0o4755)
    (root / "dev").mkdir()
    before = snapshot(root)
    (root / "opt/venv/lib").mkdir(parents=True)
    (root / "opt/venv/lib/mod.py").write_text("x = 1\n")
    (root / "tmp").mkdir()
    (root / "tmp/requirements.txt").write_text("skip me")
    changed = changed_paths(before, root)
    assert changed == ["opt", "opt/venv", "opt/venv/lib", "opt/venv/lib/mod.py", "tmp"]
    layer = tar_layer(root, changed, "pip", tmp_path / "layers")
    assert layer.path.is_file() and layer.size == layer.path.stat().st_size
    assert layer.digest == "sha256:" + layer.path.name.removesuffix(".tar.gz")
    with tarfile.open(layer.path, "r:gz") as tar:
        assert tar.getnames() == changed
    base = tar_layer(root, sorted(before), "base", tmp_path / "layers")
    with tarfile.open(base.path, "r:gz") as tar:
        su = tar.getmember("usr/bin/su")
        assert su.mode & 0o4000  # a conventional image keeps set-id bits
    gz_check = subprocess.run(["gzip", "-t", str(base.path)], check=False)
    assert gz_check.returncode == 0


def test_bench_render_rewrites_markdown_from_json(tmp_path: Path) -> None:
    src = tmp_path / "r.json"
    src.write_text(json.dumps(_result(115e6, 180e6, 10, 15, 35, 80e6)))
    out = tmp_path / "results"
    res = CliRunner().invoke(bench, ["--render", str(src), "--results", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "latest.md").read_text().count("**MISS**") == 6
    assert json.loads((out / "latest.json").read_text())["runs"] == 3
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    res = CliRunner().invoke(bench, ["--render", str(bad), "--results", str(out)])
    assert res.exit_code != 0 and isinstance(res.exception, HardflowError)


def test_retry_repeats_network_failures_and_notes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from hardflow.bench import run as bench_run
    from hardflow.errors import FetchError

    monkeypatch.setattr("hardflow.bench.run.time.sleep", lambda _s: None)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise FetchError("x.whl: download failed: Temporary failure in name resolution")
        return "built"

    notes: list[str] = []
    assert bench_run._retry("run 1: cold", flaky, notes, lambda _m: None) == "built"
    assert len(calls) == 2 and "name resolution" in notes[0] and notes[0].startswith("run 1")

    def broken() -> str:
        raise FetchError("always down")

    with pytest.raises(FetchError):
        bench_run._retry("run 2: cold", broken, notes, lambda _m: None, attempts=2)


def test_markdown_has_a_column_per_platform_of_the_index() -> None:
    result = _result(115e6, 180e6, 10, 15, 35, 80e6)
    assert "Per platform" not in render_markdown(result)  # no multi-platform build, no table
    result["images"]["platforms"] = {
        "reference": "localhost/multi:1",
        "index_digest": "sha256:" + "ab" * 32,
        "build": {"warm_full_s": {"median": 95.0, "runs": [95.0]}},
        "platforms": {
            "linux/arm64": {"static": {"gzip_bytes": 121e6, "files": 30_000}},
            "linux/amd64": {"static": {"gzip_bytes": 120e6, "files": 29_000}},
        },
    }
    md = render_markdown(result)
    assert "| figure | linux/amd64 | linux/arm64 |" in md
    assert "| size, gzip -6 | 120.0 MB | 121.0 MB |" in md
    assert "| regular files | 29,000 | 30,000 |" in md
    assert "`localhost/multi:1`" in md and "built in 95.0 s" in md


def test_bench_refuses_a_one_platform_spec_as_platforms_spec(tmp_path: Path) -> None:
    from hardflow.bench.run import _platforms
    from hardflow.lock.fetch import Cache

    with pytest.raises(HardflowError, match="expected a spec with several platforms"):
        _platforms("core", tmp_path, Cache(tmp_path / "cache"), lambda _: None)
