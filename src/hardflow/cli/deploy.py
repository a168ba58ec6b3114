"""`hardflow deploy compose|k8s|helm-values`: render production topologies.

Rendering only: nothing is started. Secret values are written to files with mode 0600 and are
never printed; a new render into the same directory keeps them.
"""

from __future__ import annotations

from pathlib import Path

import click

from hardflow.cli.console import out, print_json
from hardflow.cli.deploy_options import (
    MetricsChoice,
    k8s_opts,
    oidc_json,
    oidc_note,
    pinned,
    pinning_note,
    topology,
    with_image_options,
    with_k8s_options,
    with_metrics_options,
    with_oidc_options,
)
from hardflow.contract import API_PORT
from hardflow.deploy import secrets as sec
from hardflow.deploy.metrics import PROMETHEUS_PORT
from hardflow.deploy.oidc import OidcSettings
from hardflow.deploy.pinning import Pinning
from hardflow.deploy.topology import Images
from hardflow.errors import HardflowError


@click.group()
def deploy() -> None:
    """Render hardened production topologies: compose, Kubernetes, Helm values."""


@deploy.command()
@click.option("--workers", default=1, show_default=True, help="Number of Celery workers.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output directory (default: deploy/compose; with --official-override: the current "
    "directory, where the official docker-compose.yaml is).",
)
@click.option(
    "--official-override",
    is_flag=True,
    help="Write docker-compose.override.yaml instead: the official Airflow 3.3 "
    "docker-compose.yaml, unchanged, on hardflow's images (read-only, health checks the "
    "images have, airflow-init on the image's entrypoint).",
)
@click.option("--port", default=API_PORT, show_default=True, help="API server port on 127.0.0.1.")
@click.option(
    "--dags",
    "dags_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Host directory mounted read-only as the DAG folder (default: the image's DAGs).",
)
@click.option(
    "--prometheus-port",
    default=PROMETHEUS_PORT,
    show_default=True,
    help="With --metrics: Prometheus's port on 127.0.0.1.",
)
@with_metrics_options
@with_image_options
@with_oidc_options
def compose(
    workers: int,
    out_dir: Path | None,
    official_override: bool,
    port: int,
    dags_dir: Path | None,
    prometheus_port: int,
    metrics: bool,
    prometheus_image: str | None,
    statsd_exporter_image: str | None,
    airflow_image: str | None,
    postgres_image: str | None,
    redis_image: str | None,
    project: str,
    admin_user: str,
    as_json: bool,
    oidc: OidcSettings | None,
) -> None:
    """A compose project: PostgreSQL, Redis, API server, scheduler, DAG processor, triggerer,
    N Celery workers and a one-shot init job. Runs with docker compose and podman-compose."""
    from hardflow.deploy.compose import write_compose_project

    if official_override:
        if metrics or oidc:
            raise HardflowError(
                "--metrics and --oidc-issuer render hardflow's own topology: expected them "
                "without --official-override"
            )
        _official_override(airflow_image, postgres_image, redis_image, out_dir or Path("."),
                           as_json)  # fmt: skip
        return
    out_dir = out_dir or Path("deploy/compose")
    choice = MetricsChoice(metrics, prometheus_image, statsd_exporter_image, prometheus_port)
    top = topology(
        airflow_image, postgres_image, redis_image,
        workers=workers, project=project, admin_user=admin_user, api_port=port, dags_dir=dags_dir,
        metrics=choice, oidc=oidc,
    )  # fmt: skip
    result = write_compose_project(top, out_dir)
    if as_json:
        print_json({
            "compose_file": str(result.compose_file),
            "services": list(result.services),
            "secrets_dir": str(result.secret_files[0].parent),
            "secrets_reused": result.secrets_reused,
            "secrets_owned": result.secrets_owned,
            "secrets": result.secret_status.to_json(),
            "api_url": f"http://127.0.0.1:{port}",
            "admin_user": admin_user,
            "prometheus_url": f"http://127.0.0.1:{prometheus_port}" if metrics else None,
            "oidc": oidc_json(oidc, f"http://127.0.0.1:{port}"),
        })  # fmt: skip
        return
    out.print(f"wrote {result.compose_file} ({len(result.services)} services)")
    out.print(f"  secrets:  {result.secret_files[0].parent}/ (mode 0600); {result.secrets_note}")
    if not result.secrets_owned:
        out.print(
            "  [yellow]not root: the secret files stay yours. With rootless podman run[/] "
            f"podman unshare chown 50000:0 {out_dir}/secrets/* && podman unshare chown "
            f"{sec.POSTGRES_UID}:{sec.POSTGRES_GID} {out_dir}/secrets/postgres_password && "
            f"podman unshare chown {sec.REDIS_UID}:{sec.REDIS_GID} {out_dir}/secrets/redis_password"
        )
    out.print(f"  start:    cd {out_dir} && docker compose up -d   (or podman-compose up -d)")
    where = "password in secrets/admin_password"
    out.print(f"  API/UI:   http://127.0.0.1:{port}  user {admin_user!r}, {where}")
    if metrics:
        out.print(f"  metrics:  http://127.0.0.1:{prometheus_port}  (Prometheus; no login)")
    oidc_note(oidc, f"http://127.0.0.1:{port}")


def _official_override(
    airflow_image: str | None, postgres_image: str | None, redis_image: str | None,
    out_dir: Path, as_json: bool,
) -> None:  # fmt: skip
    from hardflow.deploy.compose_official import write_official_override

    default = Images.default()
    images = Images(
        airflow=airflow_image or default.airflow,
        postgres=postgres_image or default.postgres,
        redis=redis_image or default.redis,
    )
    result = write_official_override(images, out_dir)
    if as_json:
        print_json({
            "override_file": str(result.path), "services": list(result.services),
            "uncovered": list(result.uncovered),
        })  # fmt: skip
        return
    out.print(f"wrote {result.path} ({len(result.services)} services of the official file)")
    if result.uncovered:
        out.print(
            f"  [yellow]not covered (they keep the official settings): "
            f"{', '.join(result.uncovered)}[/]"
        )
    out.print(f"  start: cd {out_dir} && docker compose up -d   (or podman-compose up -d)")


@deploy.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("deploy/k8s"),
    show_default=True,
    help="Output directory.",
)
@click.option(
    "--podman-play",
    is_flag=True,
    help="Also write podman-play.yaml: the same manifests adapted to `podman kube play`.",
)
@with_metrics_options
@with_k8s_options
@with_image_options
@with_oidc_options
def k8s(
    out_dir: Path,
    podman_play: bool,
    metrics: bool,
    prometheus_image: str | None,
    statsd_exporter_image: str | None,
    executor: str,
    namespace: str,
    workers: int,
    postgres_host: str | None,
    storage_class: str,
    airflow_image: str | None,
    postgres_image: str | None,
    redis_image: str | None,
    project: str,
    admin_user: str,
    as_json: bool,
    oidc: OidcSettings | None,
) -> None:
    """Plain Kubernetes manifests (Pod Security "restricted"): Deployments, Services, Secrets,
    ConfigMap, NetworkPolicies, the init Job and, for KubernetesExecutor, the pod template.
    Images are pinned by digest where hardflow knows it (NAME@sha256:... given, or the build
    record of hardflow's own build)."""
    from hardflow.deploy.k8s import write_k8s_project

    top = topology(
        airflow_image, postgres_image, redis_image,
        workers=workers, project=project, admin_user=admin_user,
        metrics=MetricsChoice(metrics, prometheus_image, statsd_exporter_image), oidc=oidc,
    )  # fmt: skip
    top, pinning = pinned(top)
    opts = k8s_opts(executor, namespace, postgres_host, storage_class)
    result = write_k8s_project(top, opts, out_dir, podman_play=podman_play)
    if as_json:
        print_json({
            "images": dict(pinning.references),
            "unpinned": list(pinning.unpinned),
            "manifests": str(result.manifests),
            "secrets": str(result.secrets),
            "podman_play": str(result.podman_play) if result.podman_play else None,
            "kinds": list(result.kinds),
            "secrets_reused": result.secrets_reused,
            "secret_status": result.secret_status.to_json(),
            "oidc": oidc_json(oidc, f"http://127.0.0.1:{API_PORT}"),
        })  # fmt: skip
        return
    out.print(f"wrote {result.manifests} ({len(result.kinds)} objects)")
    out.print(f"  secrets: {result.secrets} (mode 0600); {result.secrets_note}")
    pinning_note(pinning)
    if result.podman_play:
        out.print(f"  podman:  {result.podman_play} (mode 0600; images by tag for podman)")
    out.print(f"  apply:   kubectl apply -f {result.secrets} -f {result.manifests}")
    oidc_note(oidc, "https://AIRFLOW-HOST")
    if metrics:
        out.print(
            f"  metrics: kubectl -n {namespace} port-forward svc/prometheus "
            f"{PROMETHEUS_PORT}  (then http://127.0.0.1:{PROMETHEUS_PORT})"
        )


@deploy.command("helm-values")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("deploy/helm"),
    show_default=True,
    help="Output directory.",
)
@with_k8s_options
@with_image_options
@with_oidc_options
def helm_values(
    out_dir: Path,
    executor: str,
    namespace: str,
    workers: int,
    postgres_host: str | None,
    storage_class: str,
    airflow_image: str | None,
    postgres_image: str | None,
    redis_image: str | None,
    project: str,
    admin_user: str,
    as_json: bool,
    oidc: OidcSettings | None,
) -> None:
    """Values for the official Apache Airflow Helm chart (the pinned release named in the file),
    running the hardflow image restricted and read-only with the chart's defaults."""
    from hardflow.deploy.chart import CHART_REPOSITORY, CHART_VERSION
    from hardflow.deploy.helm import write_helm_values

    top = topology(
        airflow_image, postgres_image, redis_image,
        workers=workers, project=project, admin_user=admin_user, oidc=oidc,
    )  # fmt: skip
    top, pinning = pinned(top)
    opts = k8s_opts(executor, namespace, postgres_host, storage_class)
    result = write_helm_values(top, opts, out_dir)
    if as_json:
        print_json({
            "chart_version": CHART_VERSION, "image": pinning.references["airflow"],
            "pinned": "airflow" not in pinning.unpinned,
            "values": str(result.values), "secrets": str(result.secrets),
            "secret_status": result.secret_status.to_json(),
            "oidc": oidc_json(oidc, "https://AIRFLOW-HOST"),
        })  # fmt: skip
        return
    out.print(f"wrote {result.values} (for the official chart {CHART_VERSION})")
    out.print(f"  secrets: {result.secrets} (mode 0600); {result.secrets_note}")
    oidc_note(oidc, "https://AIRFLOW-HOST")
    if "airflow" in pinning.unpinned:
        pinning_note(Pinning(references={}, unpinned=("airflow",)))
    out.print(
        f"  install: kubectl apply -n {namespace} -f {result.secrets} && helm install airflow "
        f"{CHART_REPOSITORY} --version {CHART_VERSION} -n {namespace} -f {result.values}"
    )
