"""The example DAG shipped in the image, checked by its syntax tree: Airflow is not installed on
the host; the image's end-to-end tests run it for real."""

from __future__ import annotations

import ast
from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[2] / "src" / "hardflow" / "examples" / "example_dag.py"


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def keywords(call: ast.Call) -> dict[str, object]:
    out: dict[str, object] = {}
    for kw in call.keywords:
        assert kw.arg is not None
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            out[kw.arg] = ast.unparse(kw.value)
    return out


def test_example_dag_shape() -> None:
    tree = ast.parse(DAG_FILE.read_text())
    imports = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert ("airflow.sdk", "DAG") in imports
    assert ("airflow.providers.standard.operators.bash", "BashOperator") in imports
    (dag,) = calls(tree, "DAG")
    args = keywords(dag)
    assert args["dag_id"] == "example"
    assert args["schedule"] == "@daily"
    assert args["catchup"] is False
    start = str(args["start_date"])
    assert "2020, 1, 1" in start and "UTC" in start
    (task,) = calls(tree, "BashOperator")
    assert keywords(task) == {"task_id": "say", "bash_command": "echo hello"}
