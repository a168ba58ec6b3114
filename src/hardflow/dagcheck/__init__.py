"""``hardflow check-dags``: will this DAG folder load in that image, and what must change for
Airflow 3?

- :mod:`.model`: findings, DAGs, the report (frozen dataclasses) and the severity policy.
- :mod:`.loader`: the in-image DagBag load's JSON → findings (classification, path mapping).
- :mod:`.ruff`: ruff's AIR3 diagnostics → findings (with the suggested change).
- :mod:`.report`: text rendering.
- :mod:`.run`: the thin I/O shell (engine, ruff).
"""

from hardflow.dagcheck.model import CheckReport, DagCheckInputError, DagInfo, Finding, Severity
from hardflow.dagcheck.run import CheckRequest, check_dags

__all__ = [
    "CheckReport",
    "CheckRequest",
    "DagCheckInputError",
    "DagInfo",
    "Finding",
    "Severity",
    "check_dags",
]
