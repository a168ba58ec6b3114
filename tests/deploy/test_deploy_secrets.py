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
