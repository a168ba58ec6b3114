"""``hardflow check-dags``: load a DAG folder with Airflow's own DagBag, print one JSON line.

This program is not part of any image: ``hardflow check-dags`` bind-mounts it read-only and
runs it with the image's Python (``python LOADER DAG_FOLDER``), so it works with any image
that has Airflow and a ``python`` on PATH. It uses only the standard library and Airflow, and
keeps to syntax that old interpreters (3.8) accept.

Output: everything Airflow or the DAG files print goes to stderr; stdout carries exactly one
line, ``MARKER`` followed by a JSON object::

    {"schema": 1, "airflow_version": "3.3.2", "python_version": "3.13.5",
     "dagbag": "airflow.dag_processing.dagbag", "dag_folder": "/opt/airflow/dags",
     "dags": [{"dag_id": ..., "file": ..., "tasks": N}],
     "import_errors": [{"file": ..., "message": ...}],
     "warnings": [{"file": ..., "message": ...}],
     "fatal": null | "why nothing could be loaded",
     "fatal_kind": null | "folder" | "airflow" | "dagbag"}

The host side (``hardflow.dagcheck.loader``) classifies the import errors (cycles, duplicate
DAG ids, syntax errors, ...) and maps the container paths back to the host's folder. Exit
status 0 whenever the report was written, even with ``fatal`` set (the host reads it).
"""

from __future__ import annotations

import inspect
import json
import os
import platform
import sys
import traceback

MARKER = "HARDFLOW-DAGCHECK-REPORT "
SCHEMA = 1
# Where DagBag lives: Airflow 3 moved it out of airflow.models (which keeps a DB-backed bag).
DAGBAG_MODULES = ("airflow.dag_processing.dagbag", "airflow.models.dagbag")


def _dagbag_class():
    last_error = None
    for name in DAGBAG_MODULES:
        try:
            module = __import__(name, fromlist=["DagBag"])
        except ImportError as exc:
            last_error = exc
            continue
        cls = getattr(module, "DagBag", None)
        if cls is not None:
            return name, cls
    raise ImportError("no DagBag in " + " or ".join(DAGBAG_MODULES) + ": " + str(last_error))


def _kwargs_for(cls, folder):
    """Constructor arguments that exist in this Airflow version."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {"dag_folder": folder}
    if "include_examples" in params:
        kwargs["include_examples"] = False
    if "read_dags_from_db" in params:
        kwargs["read_dags_from_db"] = False
    return kwargs


def _warnings_of(bag):
    found = []
    captured = getattr(bag, "captured_warnings", None) or {}
    for path in sorted(captured):
        for text in captured[path]:
            found.append({"file": str(path), "message": str(text)})
    return found


def load(folder):
    report = {
        "schema": SCHEMA,
        "airflow_version": None,
        "python_version": platform.python_version(),
        "dagbag": None,
        "dag_folder": folder,
        "dags": [],
        "import_errors": [],
        "warnings": [],
        "fatal": None,
        "fatal_kind": None,
    }
    if not os.path.isdir(folder) or not os.access(folder, os.R_OK | os.X_OK):
        report["fatal"] = (
            f"cannot read the DAG folder {folder} as uid {os.getuid()} gid {os.getgid()}"
        )
        report["fatal_kind"] = "folder"
        return report
    try:
        import airflow

        report["airflow_version"] = str(getattr(airflow, "__version__", "unknown"))
    except Exception:
        report["fatal"] = "cannot import airflow:\n" + traceback.format_exc()
        report["fatal_kind"] = "airflow"
        return report
    try:
        module_name, cls = _dagbag_class()
        report["dagbag"] = module_name
        bag = cls(**_kwargs_for(cls, folder))
    except Exception:
        report["fatal"] = "Airflow's DagBag failed:\n" + traceback.format_exc()
        report["fatal_kind"] = "dagbag"
        return report
    for dag_id in sorted(bag.dags):
        dag = bag.dags[dag_id]
        report["dags"].append(
            {
                "dag_id": str(dag_id),
                "file": str(getattr(dag, "fileloc", "") or ""),
                "tasks": len(getattr(dag, "tasks", ()) or ()),
            }
        )
    for path in sorted(bag.import_errors):
        report["import_errors"].append(
            {"file": str(path), "message": str(bag.import_errors[path])}
        )
    report["warnings"] = _warnings_of(bag)
    return report


def main(argv):
    folder = argv[1] if len(argv) > 1 else os.environ.get(
        "AIRFLOW__CORE__DAGS_FOLDER", "/opt/airflow/dags"
    )
    # Keep stdout for the report alone: DAG files and Airflow's logging may print anything.
    sys.stdout.flush()
    report_fd = os.dup(1)
    os.dup2(2, 1)
    report = load(folder)
    sys.stdout.flush()
    sys.stderr.flush()
    with os.fdopen(report_fd, "w", encoding="utf-8") as out:
        out.write(MARKER + json.dumps(report, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
