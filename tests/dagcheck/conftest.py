"""Shared inputs of the check-dags tests."""

from __future__ import annotations

# The classic Airflow 2 DAG of issue 8, verbatim.
CLASSIC_DAG = """\
from airflow import DAG
from airflow.operators.bash import BashOperator
from datetime import datetime
with DAG('example', start_date=datetime(2020,1,1), schedule_interval='@daily') as dag:
    t = BashOperator(task_id='say', bash_command='echo hello')
"""
