"""The image contract (``hardflow.contract``) agrees with every place that restates it.

The in-image scripts (``hardflow/image/``) are stdlib-only and cannot import hardflow, and the
embedded specs are TOML: both repeat the contract's values by hand. These tests read them as
text (the scripts through ``ast``, never by importing them) so that changing one side without
the other fails here, naming the file and the value.
"""

from __future__ import annotations

import ast
import tomllib
from functools import cache
from importlib import resources
from typing import Any

import pytest

from hardflow import contract
from hardflow.bench import runtime as bench_runtime
from hardflow.dagcheck import loader as dagcheck_loader
from hardflow.dagcheck import run as dagcheck_run

AIRFLOW_SPECS = ("default", "airflow2", "core")  # the embedded specs of Airflow images
HEALTH_SCRIPT = "image/health.py"


def _text(resource: str) -> str:
    return resources.files("hardflow").joinpath(resource).read_text(encoding="utf-8")


@cache
def _tree(resource: str) -> ast.Module:
    return ast.parse(_text(resource), filename=resource)


def module_constant(resource: str, name: str) -> object:
    """The literal a module-level ``NAME = <literal>`` assigns in an in-image script."""
    for node in _tree(resource).body:
        if isinstance(node, ast.Assign):
            targets, value = list(node.targets), node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(value)
    raise AssertionError(f"{resource}: no module-level constant {name}")


def int_env_defaults(resource: str, variable: str) -> set[int]:
    """Every default of ``int_env(env, VARIABLE, DEFAULT)`` calls in ``resource``."""
    found: set[int] = set()
    for node in ast.walk(_tree(resource)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "int_env"
            and len(node.args) == 3
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == variable
            and isinstance(node.args[2], ast.Constant)
            and isinstance(node.args[2].value, int)
        ):
            found.add(node.args[2].value)
    return found


def loopback_ports(resource: str, path_constant: str) -> set[int]:
    """Ports of the f-strings ``http://127.0.0.1:PORT{PATH_CONSTANT}`` in ``resource``."""
    ports: set[int] = set()
    for node in ast.walk(_tree(resource)):
        if not isinstance(node, ast.JoinedStr) or len(node.values) != 2:
            continue
        head, tail = node.values
        if (
            isinstance(head, ast.Constant)
            and isinstance(head.value, str)
            and head.value.startswith("http://127.0.0.1:")
            and isinstance(tail, ast.FormattedValue)
            and isinstance(tail.value, ast.Name)
            and tail.value.id == path_constant
        ):
            ports.add(int(head.value.removeprefix("http://127.0.0.1:")))
    return ports


@cache
def spec_doc(name: str) -> dict[str, Any]:
    return tomllib.loads(_text(f"specs/{name}.toml"))


# ---------------------------------------------------------------------------------------------
# the in-image scripts


def test_entrypoint_home_and_state_dir_are_the_contracts() -> None:
    home = module_constant("image/entrypoint.py", "DEFAULT_AIRFLOW_HOME")
    state = module_constant("image/entrypoint.py", "STATE_DIR_NAME")
    assert home == contract.AIRFLOW_HOME, "image/entrypoint.py DEFAULT_AIRFLOW_HOME"
    assert f"{home}/{state}" == contract.STATE_DIR, "image/entrypoint.py STATE_DIR_NAME"


def test_entrypoint_serves_the_api_on_the_contract_port() -> None:
    # Airflow 3 reads AIRFLOW__API__PORT, Airflow 2's webserver its own variable: both
    # default to the one port the runner, the deployments and the bench publish.
    for variable in ("AIRFLOW__API__PORT", "AIRFLOW__WEBSERVER__WEB_SERVER_PORT"):
        defaults = int_env_defaults("image/entrypoint.py", variable)
        assert defaults == {contract.API_PORT}, f"image/entrypoint.py default of {variable}"


def test_health_probes_the_contract_port() -> None:
    for path_constant in ("API_HEALTH_PATH", "WEBSERVER_HEALTH_PATH"):
        ports = loopback_ports(HEALTH_SCRIPT, path_constant)
        assert ports == {contract.API_PORT}, f"{HEALTH_SCRIPT}: port of {path_constant}"


def test_entrypoint_and_health_share_the_role_state_file() -> None:
    # The entrypoint records the role there; the health command reads it back.
    written = module_constant("image/entrypoint.py", "DEFAULT_STATE_FILE")
    read = module_constant(HEALTH_SCRIPT, "DEFAULT_STATE_FILE")
    assert written == read


def test_dagcheck_loader_in_the_image_expects_the_contract_dags_dir() -> None:
    text = _text("image/dagcheck_loader.py")
    assert f'"AIRFLOW__CORE__DAGS_FOLDER", "{contract.DAGS_DIR}"' in text
    assert dagcheck_loader.CONTAINER_DAGS == contract.DAGS_DIR


def test_bench_probes_the_path_the_health_command_probes() -> None:
    assert module_constant(HEALTH_SCRIPT, "API_HEALTH_PATH") == bench_runtime.HEALTH_PATH


def test_dagcheck_runs_as_the_contract_user() -> None:
    assert f"{contract.USER_UID}:{contract.USER_GID}" == dagcheck_run.DEFAULT_USER


# ---------------------------------------------------------------------------------------------
# the embedded specs


@pytest.mark.parametrize("name", AIRFLOW_SPECS)
def test_embedded_spec_follows_the_contract(name: str) -> None:
    image = spec_doc(name)["image"]
    where = f"specs/{name}.toml [image]"
    assert image["home"] == contract.AIRFLOW_HOME, f"{where} home"
    assert image["env"]["AIRFLOW_HOME"] == contract.AIRFLOW_HOME, f"{where}.env AIRFLOW_HOME"
    assert image["user"] == "airflow", f"{where} user"
    assert (image["uid"], image["gid"]) == (contract.USER_UID, contract.USER_GID), where
    assert image["ports"] == [contract.API_PORT], f"{where} ports"
    assert image["healthcheck"] == ["CMD", *contract.HEALTH_COMMAND], f"{where} healthcheck"


@pytest.mark.parametrize("name", AIRFLOW_SPECS)
def test_embedded_spec_installs_the_health_command(name: str) -> None:
    installed = {f["dest"]: f for f in spec_doc(name).get("files", [])}
    command = contract.HEALTH_COMMAND[0]
    assert command in installed, f"specs/{name}.toml installs no {command}"
    assert installed[command]["source"] == f"hardflow:{HEALTH_SCRIPT}"
    assert int(installed[command]["mode"], 8) & 0o111, f"{command} is not executable"


def test_default_spec_puts_the_example_dag_in_the_dags_dir() -> None:
    dests = [f["dest"] for f in spec_doc("default")["files"]]
    assert f"{contract.DAGS_DIR}/example_dag.py" in dests


def test_local_reference() -> None:
    assert contract.local_reference("hardflow/airflow:3") == "localhost/hardflow/airflow:3"
    assert contract.local_reference("localhost/a:1") == "localhost/a:1"
