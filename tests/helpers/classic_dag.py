"""The classic Airflow 2 DAG of issue 8, verbatim (Airflow 2 imports and ``schedule_interval``).

A plain module, not a conftest: ``from conftest import ...`` resolves to whichever conftest
pytest imported first when several directories are collected together.
"""

CLASSIC_DAG = """\
from airflow import DAG
from airflow.operators.bash import BashOperator
from datetime import datetime
with DAG('example', start_date=datetime(2020,1,1), schedule_interval='@daily') as dag:
    t = BashOperator(task_id='say', bash_command='echo hello')
"""
