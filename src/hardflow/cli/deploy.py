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
from hardflow.deploy.k8s import K8sOptions
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
    default=Path("deploy/compose"),
    show_default=True,
    help="Output directory.",
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
    out_dir: Path,
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
            f"999:999 {out_dir}/secrets/postgres_password {out_dir}/secrets/redis_password"
        )
    out.print(f"  start:    cd {out_dir} && docker compose up -d   (or podman-compose up -d)")
    where = "password in secrets/admin_password"
    out.print(f"  API/UI:   http://127.0.0.1:{port}  user {admin_user!r}, {where}")


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
    ConfigMap, NetworkPolicies, the init Job and, for KubernetesExecutor, the pod template."""
    from hardflow.deploy.k8s import write_k8s_project

    top = _topology(
        airflow_image, postgres_image, redis_image,
        workers=workers, project=project, admin_user=admin_user,
    )  # fmt: skip
    opts = _k8s_opts(executor, namespace, postgres_host, storage_class)
    result = write_k8s_project(top, opts, out_dir, podman_play=podman_play)
    if as_json:
        print_json({
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
    if result.podman_play:
        out.print(f"  podman:  {result.podman_play} (mode 0600)")
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
    """Values for the official Apache Airflow Helm chart, running the hardflow image."""
    from hardflow.deploy.helm import write_helm_values

    top = _topology(
        airflow_image, postgres_image, redis_image,
        workers=workers, project=project, admin_user=admin_user,
    )  # fmt: skip
    opts = _k8s_opts(executor, namespace, postgres_host, storage_class)
    result = write_helm_values(top, opts, out_dir)
    if as_json:
        print_json({
            "values": str(result.values), "secrets": str(result.secrets),
            "secret_status": result.secret_status.to_json(),
        })  # fmt: skip
        return
    out.print(f"wrote {result.values}")
    out.print(f"  secrets: {result.secrets} (mode 0600); {result.secrets_note}")
    out.print(
        f"  install: kubectl apply -n {namespace} -f {result.secrets} && helm install airflow "
        f"apache-airflow/airflow -n {namespace} -f {result.values}"
    )
