"""A stand-in ``airflow`` package for running the in-image loader on the host.

It has the shape the loader relies on: ``airflow.__version__`` and a ``DagBag`` whose
``dags``, ``import_errors`` and ``captured_warnings`` are filled by importing each ``*.py``
file of the folder, with real tracebacks; ``airflow.DAG`` and ``airflow.operators.bash`` are
just enough for the classic DAG (on the Airflow 3 layout, ``schedule_interval`` fails as it
does in Airflow 3). Airflow 3 keeps DagBag in
``airflow.dag_processing.dagbag``; Airflow 2 in ``airflow.models.dagbag`` (``layout``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

DAGBAG_SOURCE = '''
import os, runpy, traceback, warnings

CURRENT = []


class DAG:
    def __init__(self, dag_id, tasks=1, **kwargs):
        if AIRFLOW3 and "schedule_interval" in kwargs:
            raise TypeError("DAG.__init__() got an unexpected keyword argument 'schedule_interval'")
        self.dag_id = dag_id
        self.tasks = [object()] * tasks if not kwargs else []
        self.fileloc = None

    def __enter__(self):
        CURRENT.append(self)
        return self

    def __exit__(self, *exc):
        CURRENT.pop()


class BashOperator:
    def __init__(self, task_id, bash_command):
        CURRENT[-1].tasks.append(self)

class DagBag:
    def __init__(self, dag_folder=None, {extra}):
        if locals().get("include_examples"):
            raise RuntimeError("the loader asked for Airflow's example DAGs")
        self.dags = {{}}
        self.import_errors = {{}}
        self.captured_warnings = {{}}
        for name in sorted(os.listdir(dag_folder)):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dag_folder, name)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    ns = runpy.run_path(path)
                except Exception:
                    self.import_errors[path] = traceback.format_exc()
                    continue
            if caught:
                self.captured_warnings[path] = tuple(
                    "%s:%s: %s: %s" % (w.filename, w.lineno, w.category.__name__, w.message)
                    for w in caught
                )
            for value in ns.values():
                if isinstance(value, DAG):
                    value.fileloc = path
                    if value.dag_id in self.dags:
                        self.import_errors[path] = (
                            "AirflowDagDuplicatedIdException: Ignoring DAG %s from %s - also "
                            "found in %s" % (value.dag_id, path, self.dags[value.dag_id].fileloc)
                        )
                        continue
                    self.dags[value.dag_id] = value
'''


def make_fake_airflow(
    root: Path, *, version: str = "3.3.2", layout: str = "3", broken: bool = False
) -> Path:
    """Write the package under ``root``; return the directory to put on PYTHONPATH."""
    pkg = root / "airflow"
    pkg.mkdir(parents=True)
    init = f"__version__ = {version!r}\n"
    if broken:
        init += "raise RuntimeError('this airflow cannot be imported')\n"
    sub = "dag_processing" if layout == "3" else "models"
    init += f"from airflow.{sub}.dagbag import DAG\n"
    (pkg / "__init__.py").write_text(init)
    (pkg / "operators").mkdir()
    (pkg / "operators" / "__init__.py").write_text("")
    (pkg / "operators" / "bash.py").write_text(f"from airflow.{sub}.dagbag import BashOperator\n")
    extra = "safe_mode=True" if layout == "3" else "include_examples=True, read_dags_from_db=False"
    (pkg / sub).mkdir()
    (pkg / sub / "__init__.py").write_text("")
    source = textwrap.dedent(DAGBAG_SOURCE).format(extra=extra)
    (pkg / sub / "dagbag.py").write_text(f"AIRFLOW3 = {layout == '3'}\n" + source)
    return root
