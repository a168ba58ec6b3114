"""The embedded core spec: LocalExecutor + PostgreSQL, no Celery, no Kubernetes."""

from __future__ import annotations

from hardflow.lock.model import read_lock
from hardflow.spec import load_embedded, resolve_spec_arg


def test_core_spec_is_locked_and_leaves_out_celery_and_kubernetes() -> None:
    spec, lock_path = resolve_spec_arg("core")
    lock = read_lock(lock_path)
    assert lock.spec_checksum == spec.lock_checksum()
    names = {w.name for w in lock.wheels}
    assert {"apache-airflow", "apache-airflow-providers-postgres", "psycopg2-binary"} <= names
    assert not any("celery" in n or "kubernetes" in n or n in ("redis", "kombu") for n in names)
    assert spec.env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    default = load_embedded()
    # the same image contract as the default image
    for field in ("user", "uid", "gid", "home", "entrypoint", "cmd", "healthcheck", "files"):
        assert getattr(spec, field) == getattr(default, field), field
    default_lock = read_lock(resolve_spec_arg(None)[1])
    assert {d.name for d in lock.debs} == {d.name for d in default_lock.debs}
    assert len(lock.wheels) < len(default_lock.wheels)
