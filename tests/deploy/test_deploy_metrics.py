"""`hardflow deploy compose|k8s --metrics`: the StatsD exporter, Prometheus and their wiring."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hardflow.cli.deploy import deploy
from hardflow.deploy import metrics as met
from hardflow.deploy.compose import render_compose, service_names, write_compose_project
from hardflow.deploy.k8s import (
    K8sOptions,
    for_podman_play,
    podman_play_options,
    render_manifests,
    write_k8s_project,
)
from hardflow.deploy.topology import AIRFLOW_ROLES, Images, Topology
from hardflow.errors import HardflowError
from hardflow.spec import load_embedded

yaml = pytest.importorskip("yaml")

IMAGES = Images(
    "localhost/a/airflow:1", "localhost/a/postgres:1", "localhost/a/redis:1",
    prometheus="localhost/a/prometheus:1", statsd_exporter="localhost/a/statsd:1",
)  # fmt: skip
TOP = Topology(IMAGES, workers=2, project="hf", metrics=True, prometheus_port=19090)
AIRFLOW_SERVICES = ["airflow-init", *AIRFLOW_ROLES, "celery-worker-1", "celery-worker-2"]


# --------------------------------------------------------------------------- the name mapping
# A small evaluator of Prometheus's relabelling (the actions the mapping uses), to check the
# rules on the series collectd's write_prometheus plugin really exposes (as seen from the image).


def _expand(replacement: str, match: re.Match[str]) -> str:
    def group(m: re.Match[str]) -> str:
        return match.group(int(m.group(1) or m.group(2))) or ""

    return re.sub(r"\$\{(\d+)\}|\$(\d+)", group, replacement)


def relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str]:
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        if action == "labeldrop":
            labels = {k: v for k, v in labels.items() if not re.fullmatch(rule["regex"], k)}
            continue
        assert action == "replace", rule
        value = ";".join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule["regex"], value)
        if match is None:
            continue
        result = _expand(rule["replacement"], match)
        if result:
            labels[rule["target_label"]] = result
        else:
            labels.pop(rule["target_label"], None)
    return labels


def collectd(kind: str, statsd: str) -> dict[str, str]:
    """A series as Prometheus sees it before the mapping: collectd's name and labels, the
    target's instance, and collectd's own host name moved aside (exported_instance)."""
    return {
        "__name__": f"collectd_statsd_{kind}", "statsd": statsd, "instance": "x:9103",
        "exported_instance": "statsd-exporter",
    }  # fmt: skip


TAGS = ",dag_id=example,run_type=manual"


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (collectd("derive_total", "airflow.scheduler_heartbeat"),
         {"__name__": "airflow_scheduler_heartbeat_total"}),
        (collectd("latency", f"airflow.dagrun.duration.success{TAGS}-average"),
         {"__name__": "airflow_dagrun_duration_seconds", "state": "success",
          "dag_id": "example", "run_type": "manual", "stat": "average"}),
        (collectd("latency", f"airflow.dagrun.duration.failed{TAGS}-upper"),
         {"__name__": "airflow_dagrun_duration_seconds", "state": "failed",
          "dag_id": "example", "run_type": "manual", "stat": "upper"}),
        (collectd("gauge", f"airflow.dagrun.duration.success{TAGS}-count"),
         {"__name__": "airflow_dagrun_duration_observations", "state": "success",
          "dag_id": "example", "run_type": "manual"}),
        (collectd("gauge", "airflow.dag_processing.import_errors"),
         {"__name__": "airflow_dag_processing_import_errors"}),
        (collectd("derive_total", "airflow.ti.finish,dag_id=example,task_id=say,state=success"),
         {"__name__": "airflow_ti_finish_total", "dag_id": "example", "task_id": "say",
          "state": "success"}),
        (collectd("latency", "airflow.task.duration,dag_id=d-1,task_id=t.x-sum"),
         {"__name__": "airflow_task_duration_seconds", "dag_id": "d-1", "task_id": "t.x",
          "stat": "sum"}),
        (collectd("latency", "airflow.scheduler.scheduler_loop_duration-lower"),
         {"__name__": "airflow_scheduler_scheduler_loop_duration_seconds", "stat": "lower"}),
        # not an Airflow name: kept as collectd named it, raw name and all
        (collectd("gauge", "other.thing"),
         {"__name__": "collectd_statsd_gauge", "statsd": "other.thing"}),
    ],
)  # fmt: skip
def test_mapping_gives_airflow_names(series: dict[str, str], expected: dict[str, str]) -> None:
    out = relabel(series, met.mapping_rules())
    out.pop("instance")
    assert out == expected
    assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", out["__name__"])


def test_the_queried_names_are_what_the_mapping_makes() -> None:
    beat = relabel(collectd("derive_total", "airflow.scheduler_heartbeat"), met.mapping_rules())
    assert beat["__name__"] == met.HEARTBEAT_METRIC
    run = collectd("latency", f"airflow.dagrun.duration.success{TAGS}-sum")
    assert relabel(run, met.mapping_rules())["__name__"] == met.DAGRUN_DURATION_METRIC


def test_prometheus_config_is_valid_yaml() -> None:
    doc = yaml.safe_load(met.prometheus_config_text("exporter.example"))
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert jobs["airflow"]["static_configs"] == [{"targets": ["exporter.example:9103"]}]
    assert jobs["airflow"]["metric_relabel_configs"] == met.mapping_rules()
    for rule in met.mapping_rules():
        re.compile(rule["regex"])  # every regex compiles


# --------------------------------------------------------------------------- compose


def test_compose_adds_the_two_services() -> None:
    doc = render_compose(TOP)
    services = doc["services"]
    assert list(services) == service_names(TOP)
    assert services["prometheus"]["image"] == IMAGES.prometheus
    assert services["statsd-exporter"]["image"] == IMAGES.statsd_exporter
    assert services["prometheus"]["ports"] == ["127.0.0.1:19090:9090"]
    assert "ports" not in services["statsd-exporter"]
    assert "prometheus-data:/prometheus" in services["prometheus"]["volumes"]
    assert "prometheus-data" in doc["volumes"]
    assert services["prometheus"]["command"] == met.prometheus_args()
    plain = render_compose(Topology(IMAGES))
    assert "prometheus" not in plain["services"] and "prometheus-data" not in plain["volumes"]
    env = plain["services"]["scheduler"]["environment"]
    assert not any(key.startswith("AIRFLOW__METRICS__") for key in env)


@pytest.mark.parametrize("name", ["prometheus", "statsd-exporter"])
def test_compose_metrics_services_are_hardened(name: str) -> None:
    svc = render_compose(TOP)["services"][name]
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert svc["security_opt"] == ["no-new-privileges:true"]
    uid = int(svc["user"].split(":")[0])
    assert uid >= 10000
    test = svc["healthcheck"]["test"]
    assert test[0] == "CMD" and len(test) >= 3 and "curl" not in " ".join(test)
    limits = svc["deploy"]["resources"]["limits"]
    assert limits["memory"] and float(limits["cpus"]) > 0 and limits["pids"] > 0
    assert svc["restart"] == "unless-stopped"
    assert "environment" not in svc and "secrets" not in svc  # nothing secret to give


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_compose_airflow_services_send_statsd(name: str) -> None:
    env = render_compose(TOP)["services"][name]["environment"]
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter"
    assert env["AIRFLOW__METRICS__STATSD_PORT"] == "8125"
    assert env["AIRFLOW__METRICS__STATSD_PREFIX"] == "airflow"
    assert env["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] == "True"  # the tags, for labels
    assert env["AIRFLOW__METRICS__LEGACY_NAMES_ON"] == "False"
    # the client that looks the exporter up again when aardvark-dns did not answer its name
    assert env["AIRFLOW__METRICS__STATSD_CUSTOM_CLIENT_PATH"] == met.STATSD_CLIENT_CLASS
    mount = "./config/hardflow_statsd.py:/opt/airflow/config/hardflow_statsd.py:ro"
    assert mount in render_compose(TOP)["services"][name]["volumes"]


def test_compose_without_metrics_mounts_no_statsd_client(tmp_path: Path) -> None:
    doc = render_compose(Topology(IMAGES))
    assert "hardflow_statsd" not in str(doc) and "STATSD" not in str(doc)
    write_compose_project(Topology(IMAGES), tmp_path, chown=False)
    assert not (tmp_path / "config" / met.STATSD_CLIENT_NAME).exists()


def test_k8s_renders_leave_the_statsd_client_out() -> None:
    docs = render_manifests(TOP, K8sOptions())
    assert "hardflow_statsd" not in str(docs) and "STATSD_HOST" in str(docs)


def test_compose_project_files(tmp_path: Path) -> None:
    project = write_compose_project(TOP, tmp_path, chown=False)
    text = project.compose_file.read_text()
    config = tmp_path / "config" / "prometheus.yml"
    assert (config.stat().st_mode & 0o777) == 0o644
    doc = yaml.safe_load(config.read_text())
    targets = [j["static_configs"][0]["targets"][0] for j in doc["scrape_configs"]]
    assert targets == ["127.0.0.1:9090", "statsd-exporter:9103"]
    mount = "./config/prometheus.yml:/etc/hardflow/prometheus.yml:ro"
    assert mount in yaml.safe_load(text)["services"]["prometheus"]["volumes"]
    for path in project.secret_files:  # no secret reaches the rendered files
        assert path.read_text() not in text and path.read_text() not in config.read_text()
    assert "prometheus" in project.services and "statsd-exporter" in project.services
    client = tmp_path / "config" / met.STATSD_CLIENT_NAME
    assert (client.stat().st_mode & 0o777) == 0o644
    assert client.read_bytes() == met.statsd_client_source()
    module, _, cls = met.STATSD_CLIENT_CLASS.rpartition(".")
    assert f"{module}.py" == client.name and f"class {cls}(StatsClient)" in client.read_text()


def test_compose_passes_the_manifest_audit(tmp_path: Path) -> None:
    audit = pytest.importorskip("hardflow.audit.run")
    from hardflow.audit.model import Level

    project = write_compose_project(TOP, tmp_path, chown=False)
    assert not audit.audit_manifests([project.compose_file]).fails(Level.WARN)


def test_ports_must_differ() -> None:
    with pytest.raises(HardflowError, match="Prometheus port and the API port"):
        Topology(IMAGES, metrics=True, api_port=9090, prometheus_port=9090)
    with pytest.raises(HardflowError, match="Prometheus port"):
        Topology(IMAGES, prometheus_port=0)


# --------------------------------------------------------------------------- Kubernetes


def _by(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("executor", ["celery", "kubernetes"])
def test_k8s_metrics_objects(executor: str) -> None:
    from test_deploy_k8s import assert_restricted, pod_specs

    docs = render_manifests(TOP, K8sOptions(executor=executor))
    for where, spec in pod_specs(docs):
        assert_restricted(where, spec)
    for name, uid in (("prometheus", met.PROMETHEUS_UID), ("statsd-exporter", met.EXPORTER_UID)):
        pod = _by(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid >= 10000
        assert pod["automountServiceAccountToken"] is False
        container = pod["containers"][0]
        assert container["livenessProbe"]["exec"]["command"][0].startswith("/usr/bin/")
        assert "env" not in container
    exporter = _by(docs, "Service", "statsd-exporter")["spec"]["ports"]
    assert {(p["port"], p["protocol"]) for p in exporter} == {(8125, "UDP"), (9103, "TCP")}
    assert _by(docs, "Service", "prometheus")["spec"]["ports"][0]["port"] == 9090
    config = _by(docs, "ConfigMap", "hf-prometheus-config")["data"]["prometheus.yml"]
    assert yaml.safe_load(config) == met.prometheus_config("statsd-exporter")
    server = _by(docs, "Deployment", "prometheus")["spec"]
    assert server["strategy"] == {"type": "Recreate"}  # one writer of the TSDB volume
    assert server["template"]["spec"]["containers"][0]["args"] == met.prometheus_args()
    policy = _by(docs, "NetworkPolicy", "hardflow-statsd-exporter")["spec"]["ingress"]
    assert policy[0]["ports"] == [{"protocol": "UDP", "port": 8125}]
    assert policy[1]["ports"] == [{"protocol": "TCP", "port": 9103}]
    for doc in docs:  # every Airflow container, the pod template too, sends StatsD
        containers = [c for _, spec in pod_specs([doc]) for c in spec["containers"]]
        for c in containers:
            if c["image"] == IMAGES.airflow:
                env = {e["name"]: e.get("value") for e in c["env"]}
                assert env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter", c["name"]


def test_k8s_without_metrics_has_none_of_it() -> None:
    docs = render_manifests(Topology(IMAGES), K8sOptions())
    assert not any("prometheus" in d["metadata"]["name"] for d in docs)
    assert "STATSD" not in str(docs)


def test_k8s_metrics_schemas_and_audit(tmp_path: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    project = write_k8s_project(TOP, K8sOptions(), tmp_path)
    for doc in yaml.safe_load_all(project.manifests.read_text()):
        kv.validate(doc, "1.31", strict=True)
    audit = pytest.importorskip("hardflow.audit.run")
    from hardflow.audit.model import Level

    report = audit.audit_manifests([project.manifests, project.secrets])
    assert not report.fails(Level.WARN), [f for f in report.findings if f.level >= Level.WARN]


def test_k8s_podman_play_names_the_exporter_pod() -> None:
    opts = podman_play_options(K8sOptions())
    docs = for_podman_play(render_manifests(TOP, opts))
    config = _by(docs, "ConfigMap", "hf-prometheus-config")["data"]["prometheus.yml"]
    assert "statsd-exporter-pod-0:9103" in config
    scheduler = _by(docs, "Deployment", "scheduler")["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in scheduler["containers"][0]["env"]}
    assert env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter-pod-0"


# --------------------------------------------------------------------------- CLI and images


def test_cli_metrics(tmp_path: Path) -> None:
    out = tmp_path / "c"
    args = ["compose", "--out", str(out), "--metrics", "--prometheus-port", "19091"]
    result = CliRunner().invoke(deploy, args)
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:19091" in result.output
    doc = yaml.safe_load((out / "compose.yaml").read_text())
    assert doc["services"]["prometheus"]["ports"] == ["127.0.0.1:19091:9090"]
    assert doc["services"]["prometheus"]["image"] == Images.default().prometheus
    result = CliRunner().invoke(
        deploy, ["k8s", "--out", str(tmp_path / "k"), "--metrics", "--json",
                 "--prometheus-image", "r.example/p@sha256:" + "a" * 64],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"prometheus": "r.example/p@sha256:' in result.output
    assert "statsd-exporter" in (tmp_path / "k" / "manifests.yaml").read_text()
    bad = CliRunner().invoke(deploy, ["compose", "--official-override", "--metrics",
                                      "--out", str(tmp_path / "o")])  # fmt: skip
    assert isinstance(bad.exception, HardflowError)


def test_images_default_to_hardflows_builds() -> None:
    images = Images("a", "p", "r")
    assert images.prometheus.endswith("hardflow/prometheus:" + load_embedded("prometheus").tag)
    assert images.statsd_exporter.endswith("hardflow/statsd-exporter:5")


@pytest.mark.parametrize(("spec_name", "uid"), [("prometheus", met.PROMETHEUS_UID),
                                                ("statsd-exporter", met.EXPORTER_UID)])  # fmt: skip
def test_specs_match_the_rendered_users_and_checks(spec_name: str, uid: int) -> None:
    spec = load_embedded(spec_name)
    assert (spec.uid, spec.gid) == (uid, uid)
    health = met.PROMETHEUS_HEALTH if spec_name == "prometheus" else met.EXPORTER_HEALTH
    assert tuple(spec.healthcheck[1:]) == health
    assert "bash" not in spec.debian.packages  # no shell: exec-form entrypoint and check


def test_the_default_image_carries_the_statsd_client() -> None:
    """[metrics] statsd_on imports `statsd`: the default spec asks for it and its lock has it."""
    import json
    from importlib import resources

    assert "statsd" in load_embedded("default").python.requirements
    lock = json.loads(
        resources.files("hardflow.specs").joinpath("default.lock.json").read_text("utf-8")
    )
    assert any(w["name"] == "statsd" for w in lock["wheels"])


def test_the_exporter_keeps_only_the_plugins_it_loads() -> None:
    """The build prunes collectd's other plugins (they link libraries the image lacks); the two
    the exporter's configuration loads stay."""
    from hardflow.build.prune import rule_for

    conf = Path(__file__).parents[2] / "src/hardflow/image/statsd-exporter-collectd.conf"
    loaded = re.findall(r"^LoadPlugin (\S+)$", conf.read_text(), re.MULTILINE)
    assert sorted(loaded) == ["statsd", "write_prometheus"]
    assert re.search(r"^AutoLoadPlugin false$", conf.read_text(), re.MULTILINE)
    for plugin in loaded:
        assert rule_for(f"usr/lib/collectd/{plugin}.so") is None
    for plugin in ("disk", "virt", "write_http", "python"):
        rule = rule_for(f"usr/lib/collectd/{plugin}.so")
        assert rule is not None and rule.name == "collectd-unloaded-plugins"
