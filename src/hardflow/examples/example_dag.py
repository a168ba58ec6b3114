# mypy: disable-error-code="import-not-found"
"""The example DAG shipped in hardflow images at /opt/airflow/dags: say hello once a day."""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    dag_id="example",
    start_date=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
    schedule="@daily",
    catchup=False,
    tags=["hardflow"],
):
    BashOperator(task_id="say", bash_command="echo hello")
