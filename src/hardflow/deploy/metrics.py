"""``hardflow deploy compose|k8s --metrics``: Airflow's metrics in Prometheus.

The route of the official Airflow chart: every Airflow component sends StatsD (UDP) to a StatsD
exporter, and Prometheus scrapes the exporter. The exporter is hardflow's ``statsd-exporter``
image: Debian's collectd with only its ``statsd`` and ``write_prometheus`` plugins (Debian packages
no statsd_exporter, and its Prometheus leaves the OTLP receiver out). collectd names every series
after itself (``collectd_statsd_derive_total{statsd="airflow.scheduler_heartbeat"}``), so the
scrape job carries the mapping: :func:`mapping_rules`, Prometheus ``metric_relabel_configs`` that
give each series its Airflow name and turn Airflow's tags (sent in the InfluxDB line style,
``name,dag_id=x,state=y``) into labels. For example:

- ``airflow.scheduler_heartbeat`` (counter) → ``airflow_scheduler_heartbeat_total``
- ``airflow.dagrun.duration.success`` (timer, dag_id and run_type tags) →
  ``airflow_dagrun_duration_seconds{state="success", dag_id=..., run_type=..., stat=...}`` with
  ``stat`` one of average, lower, upper, sum (seconds) over the exporter's interval, and
  ``airflow_dagrun_duration_observations`` (how many runs ended in that interval)
- ``airflow.dag_processing.import_errors`` (gauge) → ``airflow_dag_processing_import_errors``

Pure apart from reading the packaged StatsD client module (:func:`statsd_client_source`): the
renderers (:mod:`compose`, :mod:`k8s`) place these values in their documents.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from hardflow.contract import CONFIG_DIR
from hardflow.deploy.yamlout import dump

# The two services (compose service / Kubernetes Deployment and Service names).
EXPORTER = "statsd-exporter"
PROMETHEUS = "prometheus"

STATSD_PORT = 8125  # UDP: Airflow → exporter
EXPORTER_PORT = 9103  # TCP: the exporter's /metrics, scraped by Prometheus
PROMETHEUS_PORT = 9090  # TCP: Prometheus's UI and HTTP API
STATSD_PREFIX = "airflow"

# The users of the images (their specs' [image] uid/gid), at or above 10000.
PROMETHEUS_UID = PROMETHEUS_GID = 19090
EXPORTER_UID = EXPORTER_GID = 19125

PROMETHEUS_DATA = "/prometheus"
PROMETHEUS_CONFIG = "/etc/hardflow/prometheus.yml"
PROMETHEUS_CONFIG_NAME = "prometheus.yml"
# Exec-form health checks: neither image has a shell.
PROMETHEUS_HEALTH = (
    "/usr/bin/promtool", "check", "healthy", f"--url=http://127.0.0.1:{PROMETHEUS_PORT}",
)  # fmt: skip
EXPORTER_HEALTH = ("/usr/bin/python3.13", "/usr/local/lib/hardflow/statsd-exporter-health.py")
SCRAPE_INTERVAL = "15s"
RETENTION = "15d"

# What the e2e test and the README query.
HEARTBEAT_METRIC = "airflow_scheduler_heartbeat_total"
DAGRUN_DURATION_METRIC = "airflow_dagrun_duration_seconds"

# Airflow's metric tags that become labels (Airflow 3.3: ti.stats_tags, dag run and pool tags).
TAG_LABELS = (
    "dag_id", "task_id", "run_type", "state", "pool_name", "operator_name", "queue",
    "team_name", "prior_state", "executor", "map_index",
)  # fmt: skip
# The timer statistics collectd's statsd plugin reports (TimerLower/Upper/Sum and the average).
TIMER_STATS = ("average", "lower", "upper", "sum")
MAX_NAME_PARTS = 6  # airflow.a.b.c.d.e.f: the longest dotted Airflow name mapped


# compose --metrics: Airflow's StatsD client, with the exporter's name looked up again when it
# did not resolve (hardflow/image/hardflow_statsd.py says why), mounted into $AIRFLOW_HOME/config
# (on Airflow's sys.path). Kubernetes renders leave it out: cluster DNS has no such gap.
STATSD_CLIENT_NAME = "hardflow_statsd.py"
STATSD_CLIENT_PATH = f"{CONFIG_DIR}/{STATSD_CLIENT_NAME}"
STATSD_CLIENT_CLASS = "hardflow_statsd.ResolvingStatsClient"


def statsd_client_source() -> bytes:
    """The module behind :data:`STATSD_CLIENT_CLASS` (package data, run inside the image)."""
    return resources.files("hardflow").joinpath("image", STATSD_CLIENT_NAME).read_bytes()


def airflow_env(statsd_host: str) -> dict[str, str]:
    """The ``[metrics]`` settings of every Airflow component (nothing secret)."""
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": statsd_host,
        "AIRFLOW__METRICS__STATSD_PORT": str(STATSD_PORT),
        "AIRFLOW__METRICS__STATSD_PREFIX": STATSD_PREFIX,
        # the tags (dag_id, task_id, state, ...) ride in the name: name,tag=value,...
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
        # no second copy of each metric under a name holding the DAG, task or host name
        # (ti.finish.<dag_id>.<task_id>.<state>): the tags carry them, as labels
        "AIRFLOW__METRICS__LEGACY_NAMES_ON": "False",
    }


def prometheus_args(config_file: str = PROMETHEUS_CONFIG) -> list[str]:
    """The server's arguments (the image's entrypoint is tini → prometheus)."""
    return [
        f"--config.file={config_file}",
        f"--storage.tsdb.path={PROMETHEUS_DATA}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address=:{PROMETHEUS_PORT}",
    ]


def _replace(sources: list[str], regex: str, target: str, replacement: str) -> dict[str, Any]:
    return {
        "source_labels": sources,
        "regex": regex,
        "target_label": target,
        "replacement": replacement,
        "action": "replace",
    }


def mapping_rules() -> list[dict[str, Any]]:
    """``metric_relabel_configs`` turning collectd's statsd series into Airflow-named ones.

    Series that match no rule keep collectd's name, so nothing sent is lost. Prometheus's
    regexes are anchored at both ends; ``;`` joins the source labels.
    """
    stats = "|".join(TIMER_STATS)
    name = r"[A-Za-z0-9_]+"
    rules: list[dict[str, Any]] = [
        # __tmp_s: the StatsD name without the timer statistic collectd appended
        _replace(["statsd"], "(.+)", "__tmp_s", "$1"),
        _replace(
            ["__name__", "statsd"], f"collectd_statsd_latency;(.+)-({stats})", "__tmp_s", "$1"
        ),
        _replace(["__name__", "statsd"], f"collectd_statsd_latency;(.+)-({stats})", "stat", "$2"),
        _replace(["__name__", "statsd"], "collectd_statsd_gauge;(.+)-count", "__tmp_s", "$1"),
        _replace(["__name__", "statsd"], "collectd_statsd_gauge;(.+)-count", "__tmp_k", "count"),
        # the suffix by kind: counter, timer, a timer's observation count, gauge (none)
        _replace(["__name__"], "collectd_statsd_derive_total", "__tmp_x", "_total"),
        _replace(["__name__"], "collectd_statsd_latency", "__tmp_x", "_seconds"),
        _replace(["__tmp_k"], "count", "__tmp_x", "_observations"),
        # airflow.NAME[,tag=value...]: the dotted name and the tags
        _replace(["__tmp_s"], rf"{STATSD_PREFIX}\.([^,]+)(,.*)?", "__tmp_n", "$1"),
        _replace(["__tmp_s"], rf"{STATSD_PREFIX}\.([^,]+)(,.*)?", "__tmp_t", "$2"),
    ]
    for parts in range(1, MAX_NAME_PARTS + 1):
        regex = r"\.".join([f"({name})"] * parts) + ";(.*)"
        joined = "_".join(f"${{{i}}}" for i in range(1, parts + 1))
        rules.append(
            _replace(
                ["__tmp_n", "__tmp_x"],
                regex,
                "__name__",
                f"{STATSD_PREFIX}_{joined}${{{parts + 1}}}",
            )
        )
    # dagrun.duration.<state>: one metric, the state as a label (as the official chart maps it)
    for kind, suffix in (("_seconds", "_seconds"), ("_observations", "_observations")):
        regex = rf"dagrun\.duration\.({name});{kind}"
        rules.append(
            _replace(["__tmp_n", "__tmp_x"], regex, "__name__", f"airflow_dagrun_duration{suffix}")
        )
        rules.append(_replace(["__tmp_n", "__tmp_x"], regex, "state", "$1"))
    rules += [_replace(["__tmp_t"], f".*,{tag}=([^,]*).*", tag, "$1") for tag in TAG_LABELS]
    # a mapped series no longer needs collectd's raw name label
    rules.append(_replace(["__name__"], f"{STATSD_PREFIX}_.+", "statsd", ""))
    # and the exporter's own host name ("instance" of collectd, "exported_instance" here)
    rules.append({"regex": "__tmp_.*|exported_instance", "action": "labeldrop"})
    return rules


def prometheus_config(exporter_host: str) -> dict[str, Any]:
    """The Prometheus configuration: itself, and the StatsD exporter with the Airflow mapping."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": PROMETHEUS,
                "static_configs": [{"targets": [f"127.0.0.1:{PROMETHEUS_PORT}"]}],
            },
            {
                "job_name": "airflow",
                # the exporter stamps each sample with the end of its aggregation interval
                "honor_timestamps": True,
                "static_configs": [{"targets": [f"{exporter_host}:{EXPORTER_PORT}"]}],
                "metric_relabel_configs": mapping_rules(),
            },
        ],
    }


CONFIG_HEADER = """\
Prometheus configuration rendered by `hardflow deploy --metrics`: it scrapes itself and the
StatsD exporter (collectd), and maps the exporter's series to Airflow metric names
(metric_relabel_configs; see hardflow.deploy.metrics)."""


def prometheus_config_text(exporter_host: str) -> str:
    return dump(prometheus_config(exporter_host), CONFIG_HEADER)
