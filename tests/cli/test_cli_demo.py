"""`hardflow demo` and the library behind it (:mod:`hardflow.demo`): build only when the
output directory or the engine lacks the current image, replace an earlier demo container, run
the example DAG, report and fail unless the run succeeded and its log shows the greeting.

The engine, the runner and the build are fakes that record what they were asked to do."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow import demo
from hardflow.cli import cli
from hardflow.cli.options import default_out
from hardflow.contract import API_PORT, local_reference
from hardflow.errors import EngineError
from hardflow.run.airflow_api import DagRunResult, TaskResult
from hardflow.run.engine import Engine
from hardflow.run.runner import RunRequest, RunResult
from hardflow.spec import resolve_spec_arg

ENGINE = Engine("podman", "/usr/bin/podman")
SAID = "[2025-01-01, 00:00:01] INFO - hello"
ECHOED = "[2025-01-01, 00:00:00] INFO - Running command: ['bash', '-c', 'echo hello']"


@dataclass
class World:
    """What the engine holds and what the demo did to it."""

    images: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    log: str = f"{ECHOED}\n{SAID}\n"
    state: str = "success"
    password: str | None = "pw"
    events: list[str] = field(default_factory=list)
    requests: list[RunRequest] = field(default_factory=list)

    def image_exists(self, engine: Engine, ref: str) -> bool:
        return ref in self.images

    def container_exists(self, engine: Engine, name: str) -> bool:
        return name in self.containers

    def start(self, engine: Engine, req: RunRequest, on_progress: Any) -> RunResult:
        assert req.image in self.images, "started an image the engine does not hold"
        self.requests.append(req)
        self.containers.add(req.name)
        self.events.append(f"start {req.name}")
        on_progress("waiting for health")
        return RunResult(req.name, f"http://127.0.0.1:{req.port}", "vol", "admin",
                         self.password, 4.2)  # fmt: skip

    def stop_container(self, engine: Engine, name: str, **kw: Any) -> int:
        assert kw == {"remove": True, "remove_volume": True}
        self.containers.discard(name)
        self.events.append(f"stop {name}")
        return 0

    def trigger_dag(self, url: str, user: str, pw: str, dag_id: str, timeout: float,
                    **kw: Any) -> DagRunResult:  # fmt: skip
        self.events.append(f"trigger {dag_id} as {user}/{pw} within {timeout:.0f}s")
        task = TaskResult("say", self.state, 1, self.log)
        return DagRunResult(dag_id, "manual__1", self.state, (task,), 9.87)

    def build_and_load(self, engine: Engine, image: demo.DemoImage, progress: Any) -> str:
        self.events.append(f"build {image.out_dir}")
        self.images.add(image.reference)
        return "sha256:" + "ab" * 32


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    monkeypatch.chdir(tmp_path)  # the default output directory is relative: out/NAME-TAG
    w = World()
    monkeypatch.setattr("hardflow.run.engine.detect_engine", lambda *_a: ENGINE)
    for name in ("image_exists", "container_exists", "start", "stop_container", "trigger_dag",
                 "build_and_load"):  # fmt: skip
        monkeypatch.setattr(f"hardflow.demo.{name}", getattr(w, name))
    return w


def _default_image() -> demo.DemoImage:
    spec, lock_path = resolve_spec_arg(None)
    return demo.DemoImage.load(spec, lock_path, default_out(spec.name, spec.tag))


def _write_current_build(image: demo.DemoImage) -> None:
    image.out_dir.mkdir(parents=True)
    summary = {"spec_checksum": image.spec.checksum(), "lock_checksum": image.lock.spec_checksum}
    (image.out_dir / demo.BUILD_SUMMARY).write_text(json.dumps(summary))


def test_first_demo_builds_loads_runs_and_reports(world: World) -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    image = _default_image()
    assert world.events == [
        f"build {image.out_dir}", "start hardflow-demo",
        "trigger example as admin/pw within 600s",
    ]  # fmt: skip
    (req,) = world.requests
    assert req.image == local_reference(image.spec.reference) and req.port == API_PORT
    assert f"built and loaded {image.reference} (sha256:abababababab)" in result.stderr
    assert result.stdout.splitlines() == [
        f"Airflow healthy in 4.2s at http://127.0.0.1:{API_PORT}",
        "DAG run example/manual__1: success in 9.9s",
        f"  task say: success  {SAID}",
        "  still running: `hardflow password --name hardflow-demo` for the admin password, "
        "`hardflow stop --name hardflow-demo` to stop it",
    ]


def test_a_current_build_in_the_engine_is_not_rebuilt(world: World) -> None:
    image = _default_image()
    _write_current_build(image)
    world.images.add(image.reference)
    world.containers.add("hardflow-demo")  # an earlier demo: replaced, volume and all
    result = CliRunner().invoke(cli, ["demo", "--json", "--stop", "--port", "18081"])
    assert result.exit_code == 0, result.output
    assert world.events == [
        "stop hardflow-demo", "start hardflow-demo",
        "trigger example as admin/pw within 600s", "stop hardflow-demo",
    ]  # fmt: skip
    assert result.stderr == ""
    assert json.loads(result.stdout) == {
        "url": "http://127.0.0.1:18081", "seconds_to_healthy": 4.2, "dag_id": "example",
        "run_id": "manual__1", "state": "success", "seconds_to_success": 9.87,
        "log_has_hello": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    "summary", ["{not json", "[1, 2]", '{"spec_checksum": "sha256:old", "lock_checksum": "x"}']
)
def test_a_stale_or_damaged_build_summary_means_a_build(world: World, summary: str) -> None:
    image = _default_image()
    image.out_dir.mkdir(parents=True)
    (image.out_dir / demo.BUILD_SUMMARY).write_text(summary)
    world.images.add(image.reference)
    assert not demo.build_is_current(image)
    assert demo.needs_build(ENGINE, image)
    result = CliRunner().invoke(cli, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    assert world.events[0] == f"build {image.out_dir}"


def test_a_current_build_missing_from_the_engine_means_a_build(world: World) -> None:
    image = _default_image()
    _write_current_build(image)
    assert demo.build_is_current(image)
    assert demo.needs_build(ENGINE, image)
    world.images.add(image.reference)
    assert not demo.needs_build(ENGINE, image)


@pytest.mark.parametrize(
    ("state", "log"), [("failed", f"{SAID}\n"), ("success", "nothing to see\n")]
)
def test_a_failed_run_or_a_silent_log_fails_the_demo(world: World, state: str, log: str) -> None:
    world.state, world.log = state, log
    result = CliRunner().invoke(cli, ["demo", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["state"] == state and report["log_has_hello"] is (demo.GREETING in log)


def test_no_generated_password_is_an_error_naming_the_container(world: World) -> None:
    world.password = None
    result = CliRunner().invoke(cli, ["demo", "--name", "d2"])
    assert isinstance(result.exception, EngineError)
    assert "d2: no generated admin password" in str(result.exception)
    assert "trigger" not in " ".join(world.events)


def test_greeting_prefers_what_the_task_said_over_the_command_it_ran() -> None:
    def task(log: str) -> TaskResult:
        return TaskResult("say", "success", 1, log)

    assert demo.greeting(task(f"{ECHOED}\n  {SAID}  \n")) == SAID
    assert demo.greeting(task(f"{ECHOED}\n")) == ECHOED
    assert demo.greeting(task("other\n")) == ""


def test_build_and_load_builds_into_the_output_directory_and_loads_the_archive(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec, lock_path = resolve_spec_arg(None)
    image = demo.DemoImage.load(spec, lock_path, tmp_path / "out")
    seen: dict[str, Any] = {}

    def fake_build(spec_: Any, lock: Any, lock_path_: Path, options: Any, progress: Any) -> Any:
        seen["out_dir"], seen["lock"] = options.out_dir, lock
        archive = tmp_path / "out" / "image.tar" if seen.get("archive", True) else None
        return SimpleNamespace(
            image=SimpleNamespace(archive_path=archive, manifest_digest="sha256:" + "c" * 64)
        )

    monkeypatch.setattr("hardflow.build.pipeline.build", fake_build)
    monkeypatch.setattr("hardflow.lock.fetch.Cache", lambda *a, **k: object())
    monkeypatch.setattr("hardflow.demo.load_archive",
                        lambda engine, path: seen.setdefault("loaded", path))  # fmt: skip
    digest = demo.build_and_load(ENGINE, image, progress=None)  # type: ignore[arg-type]
    assert digest == "sha256:" + "c" * 64
    assert seen["out_dir"] == tmp_path / "out" and seen["lock"] == image.lock
    assert seen["loaded"] == tmp_path / "out" / "image.tar"
    seen.clear()
    seen["archive"] = False
    with pytest.raises(EngineError, match="no docker-archive"):
        demo.build_and_load(ENGINE, image, progress=None)  # type: ignore[arg-type]
    assert "loaded" not in seen
