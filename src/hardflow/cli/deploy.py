"""`hardflow deploy compose|k8s|helm-values`: render production topologies.

Rendering only: nothing is started. Secret values are written to files with mode 0600 and are
never printed; a new render into the same directory keeps them.
"""

from __future__ import annotations

from pathlib import Path

import click

from hardflow.cli.console import out, print_json
from hardflow.cli.options import json_option
from hardflow.contract import API_PORT
from hardflow.deploy import secrets as sec
from hardflow.deploy.k8s import K8sOptions
from hardflow.deploy.pinning import Pinning
from hardflow.deploy.topology import Images, Topology


def _topology(
    airflow_image: str | None,
    postgres_image: str | None,
    redis_image: str | None,
    *,
    workers: int,
    project: str,
    admin_user: str,
    api_port: int = API_PORT,
    dags_dir: Path | None = None,
) -> Topology:
    """The deployment the options describe; an image not given is hardflow's own build."""
    default = Images.default()
    images = Images(
        airflow=airflow_image or default.airflow,
        postgres=postgres_image or default.postgres,
        redis=redis_image or default.redis,
    )
    return Topology(
        images=images,
        workers=workers,
        project=project,
        admin_user=admin_user,
        api_port=api_port,
        dags_dir=str(dags_dir.resolve()) if dags_dir else "",
    )


def _pinned(top: Topology) -> tuple[Topology, Pinning]:
    """``top`` with every image pinned by digest where hardflow knows it: a reference given as
    NAME@sha256:... as is, hardflow's own images from their build record (out/NAME-TAG/build.json,
    the digest ``hardflow push`` publishes). See hardflow.deploy.pinning."""
    from dataclasses import replace

    from hardflow.cli.options import default_out
    from hardflow.deploy.pinning import pin_images
    from hardflow.spec import load_embedded

    records = {}
    for role, spec_name in (("airflow", "default"), ("postgres", "postgres"), ("redis", "redis")):
        spec = load_embedded(spec_name)
        records[role] = default_out(spec.name, spec.tag) / "build.json"
    refs = {
        "airflow": top.images.airflow,
        "postgres": top.images.postgres,
        "redis": top.images.redis,
    }
    pinning = pin_images(refs, records)
    images = Images(**pinning.references)
    return replace(top, images=images), pinning


def _pinning_note(pinning: Pinning) -> None:
    colour = "green" if not pinning.unpinned else "yellow"
    out.print(f"  images:  [{colour}]{pinning.note()}[/]")


image_options = [
    click.option("--airflow-image", metavar="REF", help="Airflow image (default: hardflow's)."),
    click.option("--postgres-image", metavar="REF", help="PostgreSQL image (default: hardflow's)."),
    click.option("--redis-image", metavar="REF", help="Redis image (default: hardflow's)."),
    click.option("--project", default="hardflow", show_default=True, help="Project / name prefix."),
    click.option("--admin-user", default="admin", show_default=True, help="Admin user name."),
    json_option(),
]


def _with_image_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(image_options):
        func = option(func)
    return func


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
@_with_image_options
def compose(
    workers: int,
    out_dir: Path | None,
    official_override: bool,
    port: int,
    dags_dir: Path | None,
    airflow_image: str | None,
    postgres_image: str | None,
    redis_image: str | None,
    project: str,
    admin_user: str,
    as_json: bool,
) -> None:
    """A compose project: PostgreSQL, Redis, API server, scheduler, DAG processor, triggerer,
    N Celery workers and a one-shot init job. Runs with docker compose and podman-compose."""
    from hardflow.deploy.compose import write_compose_project

    if official_override:
        _official_override(airflow_image, postgres_image, redis_image, out_dir or Path("."),
                           as_json)  # fmt: skip
        return
    out_dir = out_dir or Path("deploy/compose")
    top = _topology(
        airflow_image, postgres_image, redis_image,
        workers=workers, project=project, admin_user=admin_user, api_port=port, dags_dir=dags_dir,
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


executor_option = click.option(
    "--executor",
    type=click.Choice(["celery", "kubernetes"]),
    default="celery",
    show_default=True,
    help="CeleryExecutor (Redis + workers) or KubernetesExecutor (a pod per task).",
)
k8s_options = [
    executor_option,
    click.option("--namespace", default="hardflow", show_default=True, help="Namespace."),
    click.option("--workers", default=1, show_default=True, help="Celery worker replicas."),
    click.option(
        "--postgres-host",
        metavar="HOST",
        help="An external PostgreSQL (its Deployment is then left out; the password is the "
        "generated one: create the 'airflow' role and database with it).",
    ),
    click.option("--storage-class", default="", help="StorageClass of the volumes."),
]


def _with_k8s_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(k8s_options):
        func = option(func)
    return func


def _k8s_opts(
    executor: str, namespace: str, postgres_host: str | None, storage_class: str
) -> K8sOptions:
    return K8sOptions(
        executor=executor,
        namespace=namespace,
        storage_class=storage_class,
        postgres_host=postgres_host or "postgres",
        external_database=bool(postgres_host),
    )


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
@_with_k8s_options
@_with_image_options
def k8s(
    out_dir: Path,
    podman_play: bool,
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
) -> None:
    """Plain Kubernetes manifests (Pod Security "restricted"): Deployments, Services, Secrets,
    ConfigMap, NetworkPolicies, the init Job and, for KubernetesExecutor, the pod template.
    Images are pinned by digest where hardflow knows it (NAME@sha256:... given, or the build
    record of hardflow's own build)."""
    from hardflow.deploy.k8s import write_k8s_project

    top = _topology(
        airflow_image, postgres_image, redis_image,
        workers=workers, project=project, admin_user=admin_user,
    )  # fmt: skip
    top, pinning = _pinned(top)
    opts = _k8s_opts(executor, namespace, postgres_host, storage_class)
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
        })  # fmt: skip
        return
    out.print(f"wrote {result.manifests} ({len(result.kinds)} objects)")
    out.print(f"  secrets: {result.secrets} (mode 0600); {result.secrets_note}")
    _pinning_note(pinning)
    if result.podman_play:
        out.print(f"  podman:  {result.podman_play} (mode 0600; images by tag for podman)")
    out.print(f"  apply:   kubectl apply -f {result.secrets} -f {result.manifests}")


@deploy.command("helm-values")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("deploy/helm"),
    show_default=True,
    help="Output directory.",
)
@_with_k8s_options
@_with_image_options
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
) -> None:
    """Values for the official Apache Airflow Helm chart (the pinned release named in the file),
    running the hardflow image restricted and read-only with the chart's defaults."""
    from hardflow.deploy.chart import CHART_REPOSITORY, CHART_VERSION
    from hardflow.deploy.helm import write_helm_values

    top = _topology(
        airflow_image, postgres_image, redis_image,
        workers=workers, project=project, admin_user=admin_user,
    )  # fmt: skip
    top, pinning = _pinned(top)
    opts = _k8s_opts(executor, namespace, postgres_host, storage_class)
    result = write_helm_values(top, opts, out_dir)
    if as_json:
        print_json({
            "chart_version": CHART_VERSION, "image": pinning.references["airflow"],
            "pinned": "airflow" not in pinning.unpinned,
            "values": str(result.values), "secrets": str(result.secrets),
            "secret_status": result.secret_status.to_json(),
        })  # fmt: skip
        return
    out.print(f"wrote {result.values} (for the official chart {CHART_VERSION})")
    out.print(f"  secrets: {result.secrets} (mode 0600); {result.secrets_note}")
    if "airflow" in pinning.unpinned:
        _pinning_note(Pinning(references={}, unpinned=("airflow",)))
    out.print(
        f"  install: kubectl apply -n {namespace} -f {result.secrets} && helm install airflow "
        f"{CHART_REPOSITORY} --version {CHART_VERSION} -n {namespace} -f {result.values}"
    )
