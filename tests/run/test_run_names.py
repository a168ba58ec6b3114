"""Container and volume names are hostile input: they are checked before anything reaches the
engine, reach it only after ``--``, and the runner acts only on what hardflow labelled.

A fake engine (a Python script standing in for podman) keeps a small world of containers and
volumes in a JSON file and records every command line it is given, so each test can say what the
engine was asked to do, and that a foreign container was left alone.
"""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hardflow.errors import EngineError
from hardflow.run import engine as eng
from hardflow.run import runner
from hardflow.run.engine import Engine, RunOptions
from hardflow.run.runner import MANAGED_LABEL, RunRequest
from helpers.podman import free_port

FAKE_ENGINE = r"""
import io, json, sys, tarfile
from pathlib import Path

here = Path(__file__).parent
world_path = here / "world.json"
world = json.loads(world_path.read_text())
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if "--" in args:
    at = args.index("--")
    words, operands = args[:at], args[at + 1:]
else:
    words, operands = args, []
containers, volumes = world["containers"], world["volumes"]


def save():
    world_path.write_text(json.dumps(world))


def find(name):
    # like podman: an exact name, or a prefix of an id
    if name in containers:
        return name
    for key, c in containers.items():
        if c["id"].startswith(name):
            return key
    return None


cmd = words[:2]
if cmd == ["container", "inspect"]:
    key = find(operands[0]) if operands else None
    if key is None:
        sys.exit(125)
    c = containers[key]
    if "--format" in words:
        print(c["id"])
    else:
        print(json.dumps([{"Name": key, "Id": c["id"], "Config": {"Labels": c["labels"]},
                           "State": {"Status": "running" if c["running"] else "exited",
                                     "Running": c["running"], "ExitCode": 0}}]))
elif cmd == ["volume", "inspect"]:
    if operands[0] not in volumes:
        print("[]")
        sys.exit(125)
    print(json.dumps([{"Name": operands[0], "Labels": volumes[operands[0]]}]))
elif cmd == ["volume", "rm"]:
    del volumes[operands[0]]
    save()
elif cmd == ["volume", "create"]:
    labels = dict(w.split("=", 1) for w in words[words.index("--label") + 1:][::2])
    volumes[operands[0]] = labels
    save()
elif words[0] == "stop":
    containers[find(operands[0])]["running"] = False
    save()
elif words[0] == "rm":
    del containers[find(operands[0])]
    save()
elif words[0] == "logs":
    print("a log line of", operands[0])
elif words[0] == "cp":
    name, path = operands[0].split(":", 1)
    data = world["files"].get(path)
    if data is None:
        print(f"Error: could not find {path}: no such file or directory", file=sys.stderr)
        sys.exit(125)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.rsplit("/", 1)[-1])
        info.size = len(data.encode())
        tar.addfile(info, io.BytesIO(data.encode()))
    sys.stdout.buffer.write(buf.getvalue())
elif cmd == ["image", "inspect"]:
    sys.exit(0 if operands[0] in world["images"] else 125)
else:
    sys.exit(0)
"""

OURS = {MANAGED_LABEL: "true"}
HOSTILE_NAMES = [
    "-l",
    "--latest",
    "",
    "a b",
    "../x",
    "x;rm",
    "-home",
    "ä",
    "a" * 129,
    "a\nb",
    "hf\n",
]


class FakeEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        script = root / "podman"
        script.write_text(f"#!{sys.executable}\n{FAKE_ENGINE}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        self.engine = Engine("podman", str(script))
        self.world: dict[str, Any] = {"containers": {}, "volumes": {}, "files": {}, "images": []}
        self.save()

    def save(self) -> None:
        (self.root / "world.json").write_text(json.dumps(self.world))

    def load(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.root / "world.json").read_text())
        return loaded

    def container(
        self, name: str, labels: dict[str, str], *, running: bool = True, cid: str = ""
    ) -> None:
        self.world["containers"][name] = {
            "labels": labels, "running": running, "id": cid or f"{abs(hash(name)):064x}"[:64],
        }  # fmt: skip
        self.save()

    def volume(self, name: str, labels: dict[str, str]) -> None:
        self.world["volumes"][name] = labels
        self.save()

    def calls(self) -> list[list[str]]:
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def verbs(self) -> list[str]:
        """The commands given, without their operands: ``stop``, ``volume rm`` ..."""
        out = []
        for argv in self.calls():
            head = argv[:2] if argv[0] in ("container", "volume", "image") else argv[:1]
            out.append(" ".join(head))
        return out


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(tmp_path)


# --------------------------------------------------------------------------------------------
# names are checked before the engine is asked anything


RUNNER_CALLS: dict[str, Callable[[Engine, str], object]] = {
    "stop_container": lambda e, n: runner.stop_container(e, n),
    "stop_container+volume": lambda e, n: runner.stop_container(e, n, remove_volume=True),
    "show_logs": lambda e, n: runner.show_logs(e, n),
    "admin_password": lambda e, n: runner.admin_password(e, n),
    "attach": lambda e, n: runner.attach(e, n),
    "wait_healthy": lambda e, n: runner.wait_healthy(e, n, 1),
    "start": lambda e, n: runner.start(e, RunRequest(image="localhost/x:1", name=n)),
}


@pytest.mark.parametrize("call", sorted(RUNNER_CALLS))
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_runner_rejects_bad_names_before_the_engine_runs(
    fake: FakeEngine, call: str, name: str
) -> None:
    with pytest.raises(EngineError) as info:
        RUNNER_CALLS[call](fake.engine, name)
    message = info.value.message
    assert "--name" in message and repr(name) in message
    assert fake.calls() == []


ENGINE_CALLS: dict[str, Callable[[Engine, str], object]] = {
    "container_exists": eng.container_exists,
    "container_labels": eng.container_labels,
    "container_state": eng.container_state,
    "probe_health": eng.probe_health,
    "exec_in": lambda e, n: eng.exec_in(e, n, ["/bin/true"]),
    "read_file": lambda e, n: eng.read_file(e, n, "/etc/x"),
    "stop": eng.stop,
    "wait": eng.wait,
    "remove": lambda e, n: eng.remove(e, n, force=True),
    "logs": eng.logs,
    "volume_exists": eng.volume_exists,
    "volume_labels": eng.volume_labels,
    "volume_create": eng.volume_create,
    "volume_remove": eng.volume_remove,
    "run_container": lambda e, n: eng.run_container(e, RunOptions(image="i", name=n)),
}


@pytest.mark.parametrize("call", sorted(ENGINE_CALLS))
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_engine_rejects_bad_names_before_running(fake: FakeEngine, call: str, name: str) -> None:
    with pytest.raises(EngineError, match=r"invalid (container|volume) name"):
        ENGINE_CALLS[call](fake.engine, name)
    assert fake.calls() == []


def test_longest_container_name_leaves_room_for_its_volume() -> None:
    longest = "a" * (eng.NAME_MAX - len(runner.VOLUME_SUFFIX))
    assert runner.check_container_name(longest) == longest
    eng.check_name(runner.volume_name(longest), "volume")
    with pytest.raises(EngineError, match="its volume"):
        runner.check_container_name(longest + "a")


@pytest.mark.parametrize("ref", ["-x", "--privileged", "", "a b", "img\n"])
def test_image_references_that_look_like_options_are_refused(ref: str) -> None:
    with pytest.raises(EngineError, match="invalid image reference"):
        eng.run_argv(Engine("podman", "podman"), RunOptions(image=ref, name="c"))
    with pytest.raises(EngineError, match="invalid image reference"):
        eng.save_argv(Engine("podman", "podman"), ref, Path("/tmp/x.tar"))


def test_run_argv_puts_the_image_after_the_end_of_options() -> None:
    argv = eng.run_argv(Engine("podman", "podman"), RunOptions(image="img:1", name="c",
                                                               command=("-x", "y")))  # fmt: skip
    assert argv[-4:] == ["--", "img:1", "-x", "y"]


# --------------------------------------------------------------------------------------------
# positional names come after "--"


def test_every_engine_call_passes_the_name_after_double_dash(fake: FakeEngine) -> None:
    fake.container("hf1", OURS)
    fake.volume("hf1-home", OURS)
    fake.world["files"]["/opt/airflow/simple_auth_manager_passwords.json.generated"] = (
        '{"admin": "pw"}'
    )
    fake.save()
    assert runner.show_logs(fake.engine, "hf1") == "a log line of hf1\n"
    assert runner.admin_password(fake.engine, "hf1") == "pw"
    runner.stop_container(fake.engine, "hf1", timeout=1, remove_volume=True)
    calls = fake.calls()
    assert calls
    for argv in calls:
        assert "--" in argv, argv
        operand = argv[argv.index("--") + 1]
        assert operand.split(":", 1)[0] in ("hf1", "hf1-home"), argv
    changes = [v for v in fake.verbs() if not v.endswith("inspect")]
    assert changes[-3:] == ["stop", "rm", "volume rm"]
    world = fake.load()
    assert world["containers"] == {} and world["volumes"] == {}


# --------------------------------------------------------------------------------------------
# only what hardflow labelled is stopped, removed or read


@pytest.mark.parametrize(
    "call", ["stop_container", "stop_container+volume", "show_logs", "admin_password", "attach"]
)
def test_a_foreign_container_is_left_alone(fake: FakeEngine, call: str) -> None:
    fake.container("theirs", {"com.example.owner": "someone"})
    fake.volume("theirs-home", {})
    fake.world["files"]["/opt/airflow/.hardflow/admin_password"] = "their-secret"
    fake.save()
    with pytest.raises(EngineError) as info:
        RUNNER_CALLS[call](fake.engine, "theirs")
    message = info.value.message
    assert "theirs" in message and "not started by hardflow" in message
    assert "their-secret" not in message
    # it was only inspected: never stopped, removed, followed or copied from
    assert set(fake.verbs()) == {"container inspect"}
    assert fake.load()["containers"]["theirs"]["running"] is True
    assert "theirs-home" in fake.load()["volumes"]


def test_a_foreign_volume_is_not_removed_and_nothing_is_stopped(fake: FakeEngine) -> None:
    fake.container("hf2", OURS)
    fake.volume("hf2-home", {"com.example.owner": "someone"})
    with pytest.raises(EngineError, match="volume hf2-home exists but was not started by"):
        runner.stop_container(fake.engine, "hf2", remove_volume=True)
    world = fake.load()
    assert world["containers"]["hf2"]["running"] is True
    assert "hf2-home" in world["volumes"]
    assert not {"stop", "rm", "volume rm"} & set(fake.verbs())


def test_start_refuses_to_mount_a_foreign_volume(fake: FakeEngine) -> None:
    fake.world["images"] = ["localhost/x:1"]
    fake.volume("hf3-home", {})
    with pytest.raises(EngineError, match="volume hf3-home exists but was not started by"):
        runner.start(fake.engine, RunRequest(image="localhost/x:1", name="hf3", port=free_port()))
    assert "run" not in fake.verbs()


def test_start_creates_the_volume_with_the_label(fake: FakeEngine) -> None:
    fake.world["images"] = ["localhost/x:1"]
    fake.save()
    # the fake "run" starts nothing, so waiting finds no container: enough to see the volume
    with pytest.raises(EngineError):
        runner.start(fake.engine, RunRequest(image="localhost/x:1", name="hf4", port=free_port()))
    assert fake.load()["volumes"]["hf4-home"] == OURS
    run = next(argv for argv in fake.calls() if argv[0] == "run")
    assert f"{MANAGED_LABEL}=true" in run


def test_start_says_a_reused_volume_keeps_its_baked_dags(fake: FakeEngine, tmp_path: Path) -> None:
    """The engine copies the image's AIRFLOW_HOME into a volume only when it is made: reusing
    one is said, with the way to start from the image's DAGs again (not with --dags)."""
    fake.world["images"] = ["localhost/x:1"]
    fake.volume("hf5-home", OURS)
    said: list[str] = []
    with pytest.raises(EngineError):  # the fake "run" starts nothing
        runner.start(fake.engine, RunRequest(image="localhost/x:1", name="hf5", port=free_port()),
                     said.append)  # fmt: skip
    assert any("reusing volume hf5-home" in m and "--volume" in m for m in said), said
    said.clear()
    with pytest.raises(EngineError):
        runner.start(fake.engine, RunRequest(image="localhost/x:1", name="hf5", port=free_port(),
                                             dags=tmp_path), said.append)  # fmt: skip
    assert not any("reusing volume" in m for m in said), said


def test_bench_containers_count_as_hardflows(fake: FakeEngine) -> None:
    fake.container("bench-a", {runner.BENCH_LABEL: "true"})
    assert runner.show_logs(fake.engine, "bench-a") == "a log line of bench-a\n"


def test_an_id_prefix_is_not_a_name(fake: FakeEngine) -> None:
    """Engines resolve id prefixes too: --name c must not reach the container whose id is c..."""
    fake.container("hardflow", OURS, cid="c" * 64)
    with pytest.raises(EngineError, match="no container named c"):
        runner.stop_container(fake.engine, "c")
    assert fake.load()["containers"]["hardflow"]["running"] is True
    assert eng.container_labels(fake.engine, "c") is None


def test_missing_container_is_named(fake: FakeEngine) -> None:
    with pytest.raises(EngineError, match="no container named nope"):
        runner.show_logs(fake.engine, "nope")


def test_negative_tail_is_refused(fake: FakeEngine) -> None:
    with pytest.raises(EngineError, match="--tail"):
        runner.show_logs(fake.engine, "hf", tail=-1)
    assert fake.calls() == []


# --------------------------------------------------------------------------------------------
# parsing inspect output (pure)


def test_parse_labels_podman_and_docker_shapes() -> None:
    podman = [{"Name": "hf", "Config": {"Labels": {MANAGED_LABEL: "true"}}}]
    assert eng.parse_labels("container", "hf", json.dumps(podman)) == OURS
    docker = [{"Name": "/hf", "Config": {"Labels": None}}]
    assert eng.parse_labels("container", "hf", json.dumps(docker)) == {}
    volume = [{"Name": "hf-home", "Labels": {"a": "b"}}]
    assert eng.parse_labels("volume", "hf-home", json.dumps(volume)) == {"a": "b"}
    assert eng.parse_labels("container", "hf", "[]") is None
    assert eng.parse_labels("container", "hf", json.dumps([{"Name": "other"}])) is None
    with pytest.raises(EngineError, match="could not parse"):
        eng.parse_labels("container", "hf", "not json")


def test_engine_stderr_with_a_url_password_is_redacted(fake: FakeEngine) -> None:
    script = Path(fake.engine.path)
    script.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "print('Error: cannot reach postgresql://airflow:Hunter2-secret@db:5432/af', "
        "file=sys.stderr)\nsys.exit(125)\n"
    )
    with pytest.raises(EngineError) as info:
        eng.stop(fake.engine, "hf", timeout=1)
    assert "Hunter2-secret" not in info.value.message
    assert "postgresql://airflow:***@db:5432/af" in info.value.message
