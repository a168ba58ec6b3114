"""Options and helpers shared by the `hardflow deploy` commands: images, metrics, Kubernetes
settings, and the topology they describe (split from ``cli/deploy.py`` to keep it thin)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from hardflow.cli.console import out
from hardflow.cli.options import json_option
from hardflow.contract import API_PORT
from hardflow.deploy.k8s import K8sOptions
from hardflow.deploy.metrics import PROMETHEUS_PORT
from hardflow.deploy.oidc import DEFAULT_GROUPS_CLAIM, DEFAULT_SCOPES, OidcSettings
from hardflow.deploy.pinning import Pinning
from hardflow.deploy.topology import Images, Topology
from hardflow.errors import HardflowError


@dataclass(frozen=True)
class MetricsChoice:
    """The --metrics options: on or off, the two images, Prometheus's host port (compose)."""

    enabled: bool = False
    prometheus_image: str | None = None
    exporter_image: str | None = None
    port: int = PROMETHEUS_PORT


def topology(
    airflow_image: str | None,
    postgres_image: str | None,
    redis_image: str | None,
    *,
    workers: int,
    project: str,
    admin_user: str,
    api_port: int = API_PORT,
    dags_dir: Path | None = None,
    metrics: MetricsChoice | None = None,
    oidc: OidcSettings | None = None,
) -> Topology:
    """The deployment the options describe; an image not given is hardflow's own build."""
    default = Images.default()
    metrics = metrics or MetricsChoice()
    images = Images(
        airflow=airflow_image or default.airflow,
        postgres=postgres_image or default.postgres,
        redis=redis_image or default.redis,
        prometheus=metrics.prometheus_image or default.prometheus,
        statsd_exporter=metrics.exporter_image or default.statsd_exporter,
    )
    return Topology(
        images=images,
        workers=workers,
        project=project,
        admin_user=admin_user,
        api_port=api_port,
        dags_dir=str(dags_dir.resolve()) if dags_dir else "",
        metrics=metrics.enabled,
        prometheus_port=metrics.port,
        oidc=oidc,
    )


def pinned(top: Topology) -> tuple[Topology, Pinning]:
    """``top`` with every image pinned by digest where hardflow knows it: a reference given as
    NAME@sha256:... as is, hardflow's own images from their build record (out/NAME-TAG/build.json,
    the digest ``hardflow push`` publishes). See hardflow.deploy.pinning."""
    from dataclasses import replace

    from hardflow.cli.options import default_out
    from hardflow.deploy.pinning import pin_images
    from hardflow.spec import load_embedded

    roles = [("airflow", "default"), ("postgres", "postgres"), ("redis", "redis")]
    if top.metrics:
        roles += [("prometheus", "prometheus"), ("statsd_exporter", "statsd-exporter")]
    records = {}
    for role, spec_name in roles:
        spec = load_embedded(spec_name)
        records[role] = default_out(spec.name, spec.tag) / "build.json"
    refs = {role: getattr(top.images, role) for role, _ in roles}
    pinning = pin_images(refs, records)
    images = replace(top.images, **pinning.references)
    return replace(top, images=images), pinning


def pinning_note(pinning: Pinning) -> None:
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


def with_image_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(image_options):
        func = option(func)
    return func


metrics_options = [
    click.option(
        "--metrics",
        is_flag=True,
        help="Add a StatsD exporter and Prometheus: every Airflow component sends its metrics "
        "(StatsD), Prometheus scrapes them under Airflow names (e.g. "
        "airflow_scheduler_heartbeat_total, airflow_dagrun_duration_seconds).",
    ),
    click.option(
        "--prometheus-image", metavar="REF", help="Prometheus image (default: hardflow's)."
    ),
    click.option(
        "--statsd-exporter-image",
        metavar="REF",
        help="StatsD exporter image (default: hardflow's).",
    ),
]


def with_metrics_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(metrics_options):
        func = option(func)
    return func


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


def with_k8s_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(k8s_options):
        func = option(func)
    return func


def k8s_opts(
    executor: str, namespace: str, postgres_host: str | None, storage_class: str
) -> K8sOptions:
    return K8sOptions(
        executor=executor,
        namespace=namespace,
        storage_class=storage_class,
        postgres_host=postgres_host or "postgres",
        external_database=bool(postgres_host),
    )


oidc_options = [
    click.option(
        "--oidc-issuer",
        metavar="URL",
        help="Log in through this OpenID Connect provider: its issuer exactly as its discovery "
        "document (URL/.well-known/openid-configuration) names it, trailing slash included. "
        "FAB auth manager, OAuth login, roles from groups.",
    ),
    click.option("--oidc-client-id", metavar="ID", help="With --oidc-issuer: the client id."),
    click.option(
        "--oidc-client-secret-file",
        metavar="FILE",
        type=click.Path(path_type=Path, dir_okay=False),
        help="With --oidc-issuer: the file holding the client secret (copied into the "
        "deployment's secrets; never into a config or the environment).",
    ),
    click.option(
        "--role-map",
        "role_map",
        metavar="GROUP=ROLE",
        multiple=True,
        help="With --oidc-issuer (repeatable): members of GROUP get Airflow role ROLE (Admin, Op, "
        "User, Viewer, Public, or a custom role). A user in no mapped group cannot log in.",
    ),
    click.option(
        "--groups-claim",
        default=DEFAULT_GROUPS_CLAIM,
        show_default=True,
        help="With --oidc-issuer: the ID token (or userinfo) claim that lists the groups.",
    ),
    click.option(
        "--oidc-scope",
        "oidc_scopes",
        metavar="SCOPE",
        multiple=True,
        help=f"With --oidc-issuer (repeatable): the scopes to request (default: "
        f"{' '.join(DEFAULT_SCOPES)}).",
    ),
]


def oidc_settings(
    issuer: str | None,
    client_id: str | None,
    secret_file: Path | None,
    role_map: tuple[str, ...],
    groups_claim: str,
    scopes: tuple[str, ...],
) -> OidcSettings | None:
    """The --oidc-* options as settings (None without --oidc-issuer), checked together."""
    from hardflow.deploy.oidc import settings

    if not issuer:
        given = [name for name, value in (
            ("--oidc-client-id", client_id), ("--oidc-client-secret-file", secret_file),
            ("--role-map", role_map), ("--oidc-scope", scopes),
            ("--groups-claim", groups_claim != DEFAULT_GROUPS_CLAIM),
        ) if value]  # fmt: skip
        if given:
            raise HardflowError(f"{', '.join(given)}: expected --oidc-issuer URL with them")
        return None
    missing = [name for name, value in (
        ("--oidc-client-id", client_id), ("--oidc-client-secret-file", secret_file),
        ("--role-map GROUP=ROLE", role_map),
    ) if not value]  # fmt: skip
    if missing:
        raise HardflowError(f"--oidc-issuer needs {', '.join(missing)} too")
    assert client_id and secret_file  # for mypy: checked above
    return settings(
        issuer, client_id, secret_file, role_map, groups_claim, scopes or DEFAULT_SCOPES
    )


def with_oidc_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add the --oidc-* options; the command receives them as one ``oidc`` argument."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        oidc_issuer: str | None,
        oidc_client_id: str | None,
        oidc_client_secret_file: Path | None,
        role_map: tuple[str, ...],
        groups_claim: str,
        oidc_scopes: tuple[str, ...],
        **kwargs: Any,
    ) -> None:
        kwargs["oidc"] = oidc_settings(
            oidc_issuer, oidc_client_id, oidc_client_secret_file, role_map, groups_claim,
            oidc_scopes,
        )  # fmt: skip
        func(*args, **kwargs)

    command: Callable[..., None] = wrapper
    for option in reversed(oidc_options):
        command = option(command)
    return command


def oidc_json(oidc: OidcSettings | None, api_url: str) -> dict[str, object] | None:
    from hardflow.deploy.oidc import callback_url

    if oidc is None:
        return None
    return {
        "issuer": oidc.issuer,
        "client_id": oidc.client_id,
        "redirect_uri": callback_url(api_url),
        "role_map": {group: list(roles) for group, roles in oidc.role_map.items()},
        "groups_claim": oidc.groups_claim,
        "custom_roles": list(oidc.custom_roles),
    }


def oidc_note(oidc: OidcSettings | None, api_url: str) -> None:
    from hardflow.deploy.oidc import callback_url

    if oidc is None:
        return
    out.print(f"  login:   OpenID Connect at {oidc.issuer}; register the redirect URI "
              f"{callback_url(api_url)}")  # fmt: skip
    roles = ", ".join(f"{g} -> {'/'.join(r)}" for g, r in oidc.role_map.items())
    out.print(f"  roles:   {roles} (groups claim {oidc.groups_claim!r}; anyone else is refused)")
    if oidc.custom_roles:
        out.print(
            f"  [yellow]custom roles must exist in Airflow: {', '.join(oidc.custom_roles)}[/]"
        )
