"""Secrets of a rendered topology: generated once, written as files with mode 0600, never shown.

Each secret has one consumer (a user id in one image), so each file can be owned by the user that
reads it: bind-mounted secret files keep the host's owner and mode, and a 0600 file owned by
another user could not be read inside the container. Values already present in the output
directory are kept on a new render, so re-rendering never changes a database password under a
database that was initialised with it; a value that went missing or empty is made anew, and the
render says so by name (:class:`SecretsOutcome`).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hardflow.errors import HardflowError
from hardflow.fsutil import atomic_write

AIRFLOW_UID = 50000
AIRFLOW_GID = 0
# The users of hardflow's PostgreSQL and Redis images (their specs' [image] uid/gid): at or above
# 10000, so they cannot coincide with a host account (checkov CKV_K8S_40).
POSTGRES_UID = 15432
POSTGRES_GID = 15432
REDIS_UID = 16379
REDIS_GID = 16379


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


AIRFLOW = Owner(AIRFLOW_UID, AIRFLOW_GID)
POSTGRES = Owner(POSTGRES_UID, POSTGRES_GID)
REDIS = Owner(REDIS_UID, REDIS_GID)


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def password() -> str:
    # URL-safe alphabet: the value goes into connection URLs and Redis's config unquoted
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Credentials:
    """The random values of one topology; everything else is derived from them."""

    postgres_password: str
    redis_password: str
    fernet_key: str
    api_secret_key: str
    jwt_secret: str
    admin_password: str

    @classmethod
    def generate(cls, existing: Mapping[str, str] | None = None) -> Credentials:
        """New random values, except those given in ``existing`` (by file name)."""
        existing = existing or {}
        makers: dict[str, Callable[[], str]] = {
            "postgres_password": password,
            "redis_password": password,
            "fernet_key": fernet_key,
            "api_secret_key": token,
            "jwt_secret": token,
            "admin_password": password,
        }
        values = {name: existing.get(name) or make() for name, make in makers.items()}
        return cls(**values)


@dataclass(frozen=True)
class Endpoints:
    """Where the Airflow components find the database and the broker."""

    postgres_host: str = "postgres"
    postgres_port: int = 5432
    database: str = "airflow"
    db_user: str = "airflow"
    redis_host: str = "redis"
    redis_port: int = 6379


@dataclass(frozen=True)
class SecretFile:
    name: str
    value: str
    owner: Owner


def sql_alchemy_conn(creds: Credentials, ep: Endpoints) -> str:
    pw = quote(creds.postgres_password, safe="")
    return (
        f"postgresql+psycopg2://{ep.db_user}:{pw}@{ep.postgres_host}:{ep.postgres_port}"
        f"/{ep.database}"
    )


def result_backend(creds: Credentials, ep: Endpoints) -> str:
    pw = quote(creds.postgres_password, safe="")
    return f"db+postgresql://{ep.db_user}:{pw}@{ep.postgres_host}:{ep.postgres_port}/{ep.database}"


def broker_url(creds: Credentials, ep: Endpoints) -> str:
    return f"redis://:{quote(creds.redis_password, safe='')}@{ep.redis_host}:{ep.redis_port}/0"


# Airflow variables (``*_FILE`` indirection of the image's entrypoint) and the file behind each.
AIRFLOW_FILE_VARIABLES: dict[str, str] = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_FILE": "sql_alchemy_conn",
    "AIRFLOW__CELERY__BROKER_URL_FILE": "celery_broker_url",
    "AIRFLOW__CELERY__RESULT_BACKEND_FILE": "celery_result_backend",
    "AIRFLOW__CORE__FERNET_KEY_FILE": "fernet_key",
    "AIRFLOW__API__SECRET_KEY_FILE": "api_secret_key",
    "AIRFLOW__API_AUTH__JWT_SECRET_FILE": "jwt_secret",
    "_AIRFLOW_WWW_USER_PASSWORD_FILE": "admin_password",
}


def secret_files(creds: Credentials, ep: Endpoints) -> tuple[SecretFile, ...]:
    """Every file of the topology, each with the one user that reads it."""
    return (
        SecretFile("postgres_password", creds.postgres_password, POSTGRES),
        SecretFile("redis_password", creds.redis_password, REDIS),
        SecretFile("sql_alchemy_conn", sql_alchemy_conn(creds, ep), AIRFLOW),
        SecretFile("celery_broker_url", broker_url(creds, ep), AIRFLOW),
        SecretFile("celery_result_backend", result_backend(creds, ep), AIRFLOW),
        SecretFile("fernet_key", creds.fernet_key, AIRFLOW),
        SecretFile("api_secret_key", creds.api_secret_key, AIRFLOW),
        SecretFile("jwt_secret", creds.jwt_secret, AIRFLOW),
        SecretFile("admin_password", creds.admin_password, AIRFLOW),
    )


CREDENTIAL_FILES = (
    "postgres_password", "redis_password", "fernet_key", "api_secret_key", "jwt_secret",
    "admin_password",
)  # fmt: skip


@dataclass(frozen=True)
class SecretsOutcome:
    """What a render did with the credentials of an earlier render in the same place.

    ``kept``: reused as they were. ``regenerated``: (name, why) for each credential an earlier
    render should have left but did not ("missing") or left empty ("empty"); a new random value
    was made. With no earlier render at all, both are empty and everything is new.
    """

    kept: tuple[str, ...] = ()
    regenerated: tuple[tuple[str, str], ...] = ()
    source: str = ""  # where the earlier values were read from

    @property
    def earlier_render(self) -> bool:
        return bool(self.kept or self.regenerated)

    @property
    def all_kept(self) -> bool:
        return bool(self.kept) and not self.regenerated

    def summary(self) -> str:
        """One line for people: exactly which secrets were kept and which were made anew."""
        if not self.earlier_render:
            return "secrets generated (no earlier render here)"
        where = f" from {self.source}" if self.source else ""
        kept = f"kept {', '.join(self.kept)}{where}" if self.kept else f"nothing kept{where}"
        if not self.regenerated:
            return f"secrets {kept}"
        made = ", ".join(f"{name} ({why})" for name, why in self.regenerated)
        return f"secrets {kept}; regenerated {made}"

    def to_json(self) -> dict[str, object]:
        return {
            "kept": list(self.kept),
            "regenerated": [{"name": n, "reason": why} for n, why in self.regenerated],
            "source": self.source or None,
        }


def reuse_credentials(
    found: Mapping[str, str], wanted: Iterable[str] = CREDENTIAL_FILES, source: str = ""
) -> tuple[Credentials, SecretsOutcome]:
    """Credentials keeping every non-empty value of ``found`` (credential name → value, ""
    for an empty one), and the account of what was kept and what was made anew."""
    usable = {name: value for name, value in found.items() if value}
    creds = Credentials.generate(usable)
    if not found:
        return creds, SecretsOutcome(source=source)
    kept, regenerated = [], []
    for name in wanted:
        if name in usable:
            kept.append(name)
        else:
            regenerated.append((name, "empty" if name in found else "missing"))
    return creds, SecretsOutcome(tuple(kept), tuple(regenerated), source)


def scan_existing(directory: Path) -> dict[str, str]:
    """The credential files an earlier render left in ``directory``: name → value ("" when
    the file is empty); files that are not there are left out."""
    found: dict[str, str] = {}
    for name in CREDENTIAL_FILES:
        path = directory / name
        try:
            found[name] = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise HardflowError(
                f"cannot read the existing secret {path}: {exc}",
                hint="fix its permissions, or remove the secrets directory to generate new ones "
                "(the database volume then needs to be removed too)",
            ) from None
    return found


def read_existing(directory: Path) -> dict[str, str]:
    """Credential values kept from an earlier render into ``directory`` (empty if none)."""
    return {name: value for name, value in scan_existing(directory).items() if value}


def write_secret_files(
    directory: Path, files: Iterable[SecretFile], *, chown: bool | None = None
) -> list[Path]:
    """Write each file with mode 0600 (directory 0700), atomically; chown to its consumer.

    ``chown`` defaults to "when running as root": then every file is owned by the user id that
    reads it inside its container. Without root the files stay the caller's (rootless engines
    map the caller to root in the container: see the deploy README for `podman unshare chown`).
    """
    do_chown = os.geteuid() == 0 if chown is None else chown
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    written: list[Path] = []
    for f in files:
        path = directory / f.name
        atomic_write(path, f.value.encode("utf-8"), mode=0o600)
        if do_chown:
            # the renamed file itself, never what a symlink put there since would point at
            os.chown(path, f.owner.uid, f.owner.gid, follow_symlinks=False)
        written.append(path)
    return written
