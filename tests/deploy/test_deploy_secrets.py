"""Secret files: mode 0600 in a 0700 directory, owned by their reader, kept across renders."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from hardflow.deploy import secrets as sec


def test_credentials_are_random_and_reuse_existing() -> None:
    a = sec.Credentials.generate()
    b = sec.Credentials.generate()
    assert a.postgres_password != b.postgres_password
    assert a.fernet_key != b.fernet_key
    kept = sec.Credentials.generate({"postgres_password": "old-one"})
    assert kept.postgres_password == "old-one"
    assert kept.redis_password != "old-one"


def test_fernet_key_is_32_urlsafe_bytes() -> None:
    import base64

    assert len(base64.urlsafe_b64decode(sec.fernet_key())) == 32


def test_urls_carry_the_password_quoted() -> None:
    creds = sec.Credentials.generate({"postgres_password": "p@ss/w:rd", "redis_password": "r#1"})
    ep = sec.Endpoints()
    conn = urlsplit(sec.sql_alchemy_conn(creds, ep))
    assert conn.scheme == "postgresql+psycopg2"
    assert (conn.hostname, conn.port, conn.path) == ("postgres", 5432, "/airflow")
    assert unquote(conn.password or "") == "p@ss/w:rd"
    assert sec.result_backend(creds, ep).startswith("db+postgresql://airflow:")
    broker = urlsplit(sec.broker_url(creds, ep))
    assert (broker.scheme, broker.hostname, unquote(broker.password or "")) == (
        "redis", "redis", "r#1",
    )  # fmt: skip


def test_every_secret_has_one_reader() -> None:
    files = sec.secret_files(sec.Credentials.generate(), sec.Endpoints())
    owners = {f.name: f.owner for f in files}
    assert owners["postgres_password"] == sec.POSTGRES
    assert owners["redis_password"] == sec.REDIS
    assert owners["fernet_key"] == sec.AIRFLOW
    assert set(sec.AIRFLOW_FILE_VARIABLES.values()) <= set(owners)


def test_written_files_are_private(tmp_path: Path) -> None:
    files = sec.secret_files(sec.Credentials.generate(), sec.Endpoints())
    written = sec.write_secret_files(tmp_path / "s", files, chown=False)
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    by_name = {f.name: f.value for f in files}
    assert (tmp_path / "s" / "fernet_key").read_text() == by_name["fernet_key"]
    assert not list((tmp_path / "s").glob(".*tmp*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_files_are_owned_by_their_reader(tmp_path: Path) -> None:
    files = sec.secret_files(sec.Credentials.generate(), sec.Endpoints())
    sec.write_secret_files(tmp_path, files)
    pg = (tmp_path / "postgres_password").stat()
    af = (tmp_path / "admin_password").stat()
    assert (pg.st_uid, pg.st_gid) == (sec.POSTGRES_UID, sec.POSTGRES_GID)
    assert (af.st_uid, af.st_gid) == (sec.AIRFLOW_UID, sec.AIRFLOW_GID)


def test_read_existing_round_trip(tmp_path: Path) -> None:
    creds = sec.Credentials.generate()
    sec.write_secret_files(tmp_path, sec.secret_files(creds, sec.Endpoints()), chown=False)
    assert sec.Credentials.generate(sec.read_existing(tmp_path)) == creds


# ---------------------------------------------------------------------------------------------
# re-renders say exactly what was kept and what was made anew


def test_outcome_names_kept_and_regenerated_secrets() -> None:
    creds, fresh = sec.reuse_credentials({})
    assert not fresh.earlier_render and "no earlier render" in fresh.summary()
    found = {"postgres_password": "pg", "fernet_key": "", "jwt_secret": "j"}
    creds, status = sec.reuse_credentials(found, source="out/secrets/")
    assert creds.postgres_password == "pg" and creds.jwt_secret == "j"
    assert creds.fernet_key  # made anew
    assert status.kept == ("postgres_password", "jwt_secret")
    assert dict(status.regenerated) == {
        "redis_password": "missing", "fernet_key": "empty", "api_secret_key": "missing",
        "admin_password": "missing",
    }  # fmt: skip
    assert not status.all_kept
    text = status.summary()
    assert "kept postgres_password, jwt_secret from out/secrets/" in text
    assert "fernet_key (empty)" in text and "redis_password (missing)" in text
    assert status.to_json()["regenerated"][0] == {"name": "redis_password", "reason": "missing"}


def test_compose_rerender_after_an_emptied_secret_says_so(tmp_path: Path) -> None:
    from hardflow.deploy.compose import write_compose_project
    from hardflow.deploy.topology import Images, Topology

    top = Topology(Images("a:1", "p:1", "r:1"))
    first = write_compose_project(top, tmp_path, chown=False)
    assert not first.secret_status.earlier_render
    pg = (tmp_path / "secrets" / "postgres_password").read_text()
    (tmp_path / "secrets" / "fernet_key").write_text("")
    (tmp_path / "secrets" / "jwt_secret").unlink()
    again = write_compose_project(top, tmp_path, chown=False)
    assert not again.secrets_reused  # not "secrets kept": two were made anew
    assert dict(again.secret_status.regenerated) == {"fernet_key": "empty", "jwt_secret": "missing"}
    assert "postgres_password" in again.secret_status.kept
    assert "regenerated fernet_key (empty), jwt_secret (missing)" in again.secrets_note
    assert (tmp_path / "secrets" / "postgres_password").read_text() == pg
    assert (tmp_path / "secrets" / "fernet_key").read_text()  # a value again
    third = write_compose_project(top, tmp_path, chown=False)
    assert third.secrets_reused and third.secret_status.regenerated == ()
    assert third.secrets_note.startswith("secrets kept postgres_password")


def test_k8s_and_helm_rerenders_name_what_they_regenerated(tmp_path: Path) -> None:
    import yaml

    from hardflow.deploy.helm import write_helm_values
    from hardflow.deploy.k8s import K8sOptions, write_k8s_project
    from hardflow.deploy.topology import Images, Topology

    top = Topology(Images("a:1", "p:1", "r:1"), project="hf")
    k8s = write_k8s_project(top, K8sOptions(), tmp_path / "k")
    text = k8s.secrets.read_text()
    (entry,) = [line for line in text.splitlines() if line.strip().startswith("jwt_secret:")]
    k8s.secrets.write_text(text.replace(entry, entry.split(":")[0] + ': ""'))
    again = write_k8s_project(top, K8sOptions(), tmp_path / "k")
    assert dict(again.secret_status.regenerated) == {"jwt_secret": "empty"}
    assert not again.secrets_reused and "jwt_secret (empty)" in again.secrets_note

    helm = write_helm_values(top, K8sOptions(), tmp_path / "h")
    docs = list(yaml.safe_load_all(helm.secrets.read_text()))
    conn = next(d for d in docs if d["metadata"]["name"] == "hf-metadata")["stringData"]
    fernet = next(d for d in docs if d["metadata"]["name"] == "hf-fernet-key")
    fernet["stringData"]["fernet-key"] = ""
    helm.secrets.write_text(yaml.safe_dump_all(docs))
    redo = write_helm_values(top, K8sOptions(), tmp_path / "h")
    assert dict(redo.secret_status.regenerated) == {"fernet_key": "empty"}
    assert "postgres_password" in redo.secret_status.kept  # read back from the URL
    after = list(yaml.safe_load_all(redo.secrets.read_text()))
    assert next(d for d in after if d["metadata"]["name"] == "hf-metadata")["stringData"] == conn


def test_backing_service_users_are_their_images_users() -> None:
    """The uid/gid the renders run PostgreSQL and Redis as are their specs' own, and >= 10000
    (a uid that cannot coincide with a host account: checkov CKV_K8S_40)."""
    from hardflow.deploy import secrets as sec
    from hardflow.spec import load_embedded

    for name, uid, gid in (
        ("postgres", sec.POSTGRES_UID, sec.POSTGRES_GID),
        ("redis", sec.REDIS_UID, sec.REDIS_GID),
    ):
        spec = load_embedded(name)
        assert (spec.uid, spec.gid) == (uid, gid), name
        assert uid >= 10000 and gid >= 10000, name
