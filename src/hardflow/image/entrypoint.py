#!/usr/bin/python3
"""Container entrypoint of hardflow images (stdlib only; runs on the image's Python, 3.11+).

The entrypoint runs as the child of tini (PID 1).  It prepares the environment, waits for the
metadata database (and the Celery broker), optionally migrates the database and provisions an
admin user, then replaces itself with the Airflow process (``os.execvp``): no wrapper is left
running, Airflow receives the signals tini forwards.

Everything here must work under a read-only root file system, with any UID and GID 0: the only
places written are ``$AIRFLOW_HOME`` and ``/tmp``.

The same file serves Airflow 3 and Airflow 2 images.  The major version is read from the
installed ``apache-airflow`` distribution's metadata (``importlib.metadata`` reads the
dist-info only, Airflow is never imported).  On Airflow 2 the web role is ``webserver`` (an
``api-server`` command is mapped to it), the admin user is created through FAB
(``airflow users create``), the generated secrets are the Fernet key and
``[webserver] secret_key``, and health is probed on the webserver's ``/health``.

Secrets and the environment Airflow inherits
--------------------------------------------
Every task Airflow runs inherits the environment of the process this script execs, so that
environment is kept free of secrets that only provisioning needs:

- ``_AIRFLOW_WWW_USER_*`` (the admin user's name, password, role ...) and every ``_AIRFLOW_*``
  value read from a ``*_FILE`` are used here and removed before Airflow is exec'd; the
  ``airflow db migrate`` and ``users create`` children do not get them either.
- ``AIRFLOW__SECTION__KEY_FILE=/path`` of an option Airflow accepts ``_CMD`` for (the options its
  core configuration marks ``sensitive``: :data:`CMD_OPTIONS`) is handed over as
  ``AIRFLOW__SECTION__KEY_CMD``, a command that prints the file with the image's own python3 -
  the value itself is never exported. Airflow runs that command when it reads the option
  (a few times per process; a python3 start each time), and, unlike a plain variable, does not
  expand ``$VAR`` or ``~`` in its output: a file's value is taken literally.
- ``*_FILE`` of any other option is exported as its value, as before: Airflow ignores ``_CMD`` for
  options it does not list as sensitive. That includes provider options such as ``[celery]
  broker_url``, whose sensitivity Airflow only knows once provider configuration is loaded,
  which depends on the code path reading it.
- Setting ``NAME`` or ``NAME_CMD`` together with ``NAME_FILE`` is an error: which one wins would
  be a guess.
- The FAB admin (``airflow users create``) gets its password on a pipe (stdin), through a small
  launcher that answers the CLI's password prompt: never on a command line, where ``ps`` shows it.
- Keys the entrypoint generates itself (Fernet key, API secret key, JWT secret) are exported as
  values, as before.
- Everything printed goes through :func:`redact_userinfo`: a URL's password never shows.

Parity with the official image's entrypoint
-------------------------------------------
``docs/entrypoint-parity.md`` compares the two point by point. In short:

- The metadata database is waited for with a real login (``airflow db check``, after a cheap
  TCP wait when the URL is known here), for every Airflow component and for ``bash``/``python``
  commands as the official image does - so ``bash -c "exec airflow scheduler"`` (the chart's
  form) waits too, and is recognised as the scheduler. ``CONNECTION_CHECK_MAX_COUNT=0`` skips
  every wait. The Celery broker is waited for when Airflow's configuration (environment or
  airflow.cfg) names a Celery executor.
- ``_AIRFLOW_DB_MIGRATE`` (deprecated: ``_AIRFLOW_DB_UPGRADE``) and ``_AIRFLOW_WWW_USER_CREATE``
  apply to any command, as in the official image (its init pattern runs ``airflow version``).
- ``_AIRFLOW_*_CMD`` runs through bash as the official image's ``eval`` does;
  ``AIRFLOW__*_CMD`` runs as Airflow runs it (split, no shell). The image has no coreutils:
  ``printf %s "$(<FILE)"`` replaces ``cat FILE``.
- ``_PIP_ADDITIONAL_REQUIREMENTS`` is refused: the image is immutable.

Nothing is written into the image at start
------------------------------------------
A key is generated only for a role that needs it (:data:`SECRET_NEEDS`) and only into a
writable ``$AIRFLOW_HOME``; where it cannot be kept, the error names the variable to set. Where
``$AIRFLOW_HOME`` is read-only and holds no airflow.cfg, Airflow is pointed at an empty one
(``/dev/null``) instead of writing its default there. The health state lives in ``/tmp``
under a name unique to the container (its mount namespace), so containers of one pod sharing a
``/tmp`` volume do not overwrite each other's.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

PROG = "hardflow-entrypoint"
DEFAULT_AIRFLOW_HOME = "/opt/airflow"
DEFAULT_STATE_FILE = "/tmp/hardflow-role"
STATE_DIR_NAME = ".hardflow"

SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
SIMPLE_AUTH_ROLES = ("viewer", "user", "op", "admin")
DEFAULT_CELERY_BROKER = "redis://redis:6379/0"

# Roles a user names as the container's command, and the Airflow arguments they stand for.
ROLE_COMMANDS: dict[str, tuple[str, ...]] = {
    "standalone": ("standalone",),
    "api-server": ("api-server",),
    "scheduler": ("scheduler",),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer",),
    "celery-worker": ("celery", "worker"),
    "celery-flower": ("celery", "flower"),
}
# Airflow 2 names the web role "webserver"; the other roles keep their names.
ROLE_COMMANDS_2: dict[str, tuple[str, ...]] = {
    "standalone": ("standalone",),
    "webserver": ("webserver",),
    "scheduler": ("scheduler",),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer",),
    "celery-worker": ("celery", "worker"),
    "celery-flower": ("celery", "flower"),
}
# The roles whose process serves HTTP on the web port, per Airflow major version.
WEB_ROLE = {2: "webserver", 3: "api-server"}
# Commands executed as they are: no database wait, no migration, no user provisioning.
PASS_THROUGH = frozenset({"bash", "sh", "python", "python3"})
# Shells whose ``-c "exec airflow ROLE ..."`` (the official chart's form) is recognised as ROLE.
SHELLS = frozenset({"bash", "sh", "/bin/bash", "/usr/bin/bash", "/bin/sh", "/usr/bin/sh"})
# Pass-through commands that wait for the database first, as in the official image ("the bash
# and python commands should also verify the basic connections").
WAITING_COMMANDS = frozenset({"bash", "sh", "python", "python3"})
PYTHON_COMMAND = re.compile(r"python3\.\d+")
# Airflow sub-commands that never touch the metadata database.
NO_DATABASE_COMMANDS = frozenset({"version", "cheat-sheet", "config", "info"})
CELERY_ROLES = frozenset({"celery-worker", "celery-flower"})
# Executor class names that use the Celery broker (the last dotted part of an executor entry).
CELERY_EXECUTORS = frozenset({"CeleryExecutor", "CeleryKubernetesExecutor"})
# Values of the official image's on/off variables (any non-empty value means on there) that we
# read as "off": a user writing "false" means it.
OFF_VALUES = frozenset({"0", "false", "no", "off"})
# Seconds one `airflow db check` may take before it counts as a failed attempt.
DB_CHECK_TIMEOUT = 90
# Programs a `*_CMD` commonly names that the image does not have (no coreutils).
COREUTILS_HINTS = frozenset({"cat", "head", "tail", "tr", "cut", "base64", "awk", "sed"})
# ``airflow standalone`` stops its components cleanly on KeyboardInterrupt but dies at once on
# SIGTERM, orphaning them.  It is therefore started as this program: the same Airflow CLI in the
# same (exec'd) process, with SIGTERM raising KeyboardInterrupt in the main thread.
STANDALONE_LAUNCHER = """\
import signal, sys
def _stop(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, _stop)
sys.argv[0] = "airflow"
from airflow.__main__ import main
sys.exit(main())
"""

# Airflow options whose own name ends in ``_file``: their ``AIRFLOW__..._FILE`` variable is the
# option itself (a path), not a ``*_FILE`` indirection, and is left alone.
REAL_FILE_OPTIONS = frozenset(
    {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        "AIRFLOW__API__SSL_CA_FILE",
        "AIRFLOW__FAB__CONFIG_FILE",
        "AIRFLOW__WEBSERVER__CONFIG_FILE",
        "AIRFLOW__KUBERNETES_EXECUTOR__CONFIG_FILE",
        "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE",
    }
)
# Prefixes of the variables that get ``*_FILE`` indirection.
FILE_PREFIXES = ("AIRFLOW__", "_AIRFLOW_")
# Variables only provisioning reads; removed from the environment Airflow inherits.
PROVISIONING_PREFIX = "_AIRFLOW_WWW_USER_"
PROVISIONING_ONLY = "_AIRFLOW_"
# Options Airflow reads from ``AIRFLOW__SECTION__KEY_CMD``: those its core config.yml marks
# ``sensitive: true`` (checked against apache-airflow-core 3.3.2 and apache-airflow 2.11.2).
CMD_OPTIONS: dict[int, frozenset[tuple[str, str]]] = {
    3: frozenset(
        {
            ("core", "fernet_key"),
            ("core", "asset_manager_kwargs"),
            ("database", "sql_alchemy_conn"),
            ("database", "sql_alchemy_conn_async"),
            ("database", "sql_alchemy_engine_args"),
            ("logging", "remote_task_handler_kwargs"),
            ("secrets", "backend_kwargs"),
            ("workers", "secrets_backend_kwargs"),
            ("api", "secret_key"),
            ("api_auth", "jwt_secret"),
            ("sentry", "sentry_dsn"),
        }
    ),
    2: frozenset(
        {
            ("core", "fernet_key"),
            ("core", "dataset_manager_kwargs"),
            ("core", "internal_api_secret_key"),
            ("database", "sql_alchemy_conn"),
            ("database", "sql_alchemy_engine_args"),
            ("logging", "remote_task_handler_kwargs"),
            ("secrets", "backend_kwargs"),
            ("webserver", "secret_key"),
            ("smtp", "smtp_password"),
            ("sentry", "sentry_dsn"),
        }
    ),
}
# Run by Airflow (shlex-split, no shell) for a ``_CMD`` option: prints the file as the
# ``*_FILE`` indirection reads it (UTF-8, trailing line breaks dropped: Airflow does not strip a
# command's output) and, failing, says why without the content.
READ_FILE_COMMAND = """\
import sys
try:
    with open(sys.argv[1], encoding="utf-8") as handle:
        value = handle.read()
except (OSError, UnicodeDecodeError) as exc:
    sys.exit(f"cannot read {sys.argv[1]}: {type(exc).__name__}")
sys.stdout.write(value.rstrip("\\r\\n"))
"""
# ``airflow users create`` without --password asks for it twice through getpass: this launcher
# answers both prompts with what it reads from stdin (a pipe from the entrypoint), so the
# password is never on a command line nor in an environment.
FAB_USERS_LAUNCHER = """\
import getpass, os, sys
password = sys.stdin.read()
sys.stdin = open(os.devnull, encoding="utf-8")
getpass.getpass = lambda prompt="Password: ", stream=None: password
sys.argv = ["airflow", *sys.argv[1:]]
from airflow.__main__ import main
sys.exit(main())
"""
# The userinfo of a URL runs to the last '@' before a blank or a quote (a raw password may hold
# '@', '/' or '?'); redacting a little too much is the safe mistake.
USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>]*)@")

DEFAULT_PORTS: dict[str, int] = {
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "mssql": 1433,
    "redis": 6379,
    "rediss": 6379,
    "sentinel": 26379,
    "amqp": 5672,
    "pyamqp": 5672,
    "amqps": 5671,
}


class EntrypointError(Exception):
    """A problem the user must fix; printed as one message, exit status 1."""


@dataclass(frozen=True)
class Plan:
    """What the container will run."""

    role: str  # a ROLE_COMMANDS key, "airflow" (another airflow command) or "exec"
    argv: tuple[str, ...]  # the argv handed to execvp; argv[0] is looked up in PATH
    wait_database: bool = False
    wait_broker: bool = False
    api_port: int | None = None  # api-server / webserver --port/-p given on the command line
    airflow_major: int = 3
    note: str = ""  # said once before starting (e.g. a role that was mapped to another)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class WaitTarget:
    """A service to wait for: a label for messages and the endpoints (any one suffices)."""

    label: str
    endpoints: tuple[Endpoint, ...] = field(default_factory=tuple)
    skip_reason: str = ""
    server: bool = True  # False for SQLite: no server, nothing to log in to


# --------------------------------------------------------------------------------------------
# small helpers


def redact_userinfo(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` shown as ``***``."""

    def replace(match: re.Match[str]) -> str:
        userinfo = match.group("userinfo")
        if ":" not in userinfo:
            return match.group(0)
        return f"{match.group('scheme')}{userinfo.split(':', 1)[0]}:***@"

    return USERINFO.sub(replace, text)


def log(message: str) -> None:
    print(f"{PROG}: {redact_userinfo(message)}", file=sys.stderr, flush=True)


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def flag_on(env: Mapping[str, str], name: str) -> bool:
    """An official-image switch (``_AIRFLOW_DB_MIGRATE`` ...): on when set to anything but
    empty or an explicit off value (the official image reads even "false" as on)."""
    value = env.get(name, "").strip()
    if not value:
        return False
    if value.lower() in OFF_VALUES:
        if name not in _OFF_NOTED:  # said once, however often it is read
            _OFF_NOTED.add(name)
            log(f"{name}={value!r} read as off (the official image turns it on for any value)")
        return False
    return True


_OFF_NOTED: set[str] = set()


def int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EntrypointError(f"{name} must be an integer, found {raw!r}") from None
    if value < 0:
        raise EntrypointError(f"{name} must be >= 0, found {value}")
    return value


NO_COREUTILS_HINT = (
    'the image has no coreutils: read a file with the shell, printf %s "$(<FILE)" '
    "instead of cat FILE, or set the variable's _FILE form instead"
)


def command_args(name: str, command: str, shell: bool) -> list[str]:
    """The argv of a ``*_CMD`` value: ``bash -c COMMAND`` (the official image's ``eval``) with
    ``shell``, else split like Airflow splits it (no shell)."""
    if shell:
        if not command.strip():
            raise EntrypointError(f"{name} is set but empty")
        return ["bash", "-c", command]
    try:
        args = shlex.split(command)
    except ValueError as exc:
        raise EntrypointError(f"{name}: cannot split the command: {exc}") from None
    if not args:
        raise EntrypointError(f"{name} is set but empty")
    return args


def run_command_for_value(name: str, command: str, shell: bool = False) -> str:
    """Run a ``*_CMD`` command and return its stdout without trailing line breaks.

    ``shell``: through bash, as the official entrypoint runs ``_AIRFLOW_WWW_USER_PASSWORD_CMD``
    (``$(eval ...)``); otherwise split and run without a shell, as Airflow runs the
    ``AIRFLOW__SECTION__KEY_CMD`` of an option.
    """
    args = command_args(name, command, shell)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        hint = f"; {NO_COREUTILS_HINT}" if os.path.basename(args[0]) in COREUTILS_HINTS else ""
        raise EntrypointError(f"{name}: {args[0]!r} is not in this image{hint}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EntrypointError(f"{name}: cannot run {args[0]!r}: {exc}") from None
    if done.returncode != 0:
        # stderr of a secret command may echo the secret: never print it.
        what = "bash" if shell else repr(args[0])
        message = f"{name}: {what} exited with status {done.returncode}"
        if shell and done.returncode == 127:  # bash: command not found
            message += f" (a program it names is not in this image; {NO_COREUTILS_HINT})"
        raise EntrypointError(message)
    return done.stdout.rstrip("\r\n")


def missing_cmd_programs(env: Mapping[str, str], which: Callable[[str], str | None]) -> list[str]:
    """Warnings for ``AIRFLOW__*_CMD`` values whose program is not in the image: Airflow runs
    them later, when it reads the option, and then fails far from the cause."""
    warnings = []
    for name in sorted(env):
        if not (name.startswith("AIRFLOW__") and name.endswith("_CMD")) or not env[name].strip():
            continue
        try:
            program = shlex.split(env[name])[0]
        except (ValueError, IndexError):
            continue
        if which(program) is None:
            hint = f"; {NO_COREUTILS_HINT}" if os.path.basename(program) in COREUTILS_HINTS else ""
            warnings.append(f"{name} runs {program!r}, which is not in this image{hint}")
    return warnings


def read_value_file(name: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except OSError as exc:
        raise EntrypointError(f"{name}={path}: cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EntrypointError(f"{name}={path}: the file is not UTF-8 text") from None


# --------------------------------------------------------------------------------------------
# command line → plan


def airflow_major(version: Callable[[str], str] | None = None) -> int:
    """The major version of the installed apache-airflow (3 when it cannot be told).

    Reads the distribution's metadata only: no Airflow import, a few milliseconds.
    """
    if version is None:
        from importlib import metadata

        def version(name: str) -> str:
            return metadata.version(name)

    try:
        text = version("apache-airflow")
    except Exception:  # PackageNotFoundError, or unreadable metadata
        return 3
    match = re.match(r"(\d+)\.", text or "")
    return int(match.group(1)) if match else 3


def role_commands(major: int = 3) -> dict[str, tuple[str, ...]]:
    return ROLE_COMMANDS_2 if major == 2 else ROLE_COMMANDS


def airflow_role(airflow_args: Sequence[str], major: int = 3) -> str:
    """The role of an ``airflow ...`` argument list, or ``"airflow"`` for any other command."""
    if not airflow_args:
        return "airflow"
    first = airflow_args[0]
    roles = role_commands(major)
    if first in roles and roles[first] == (first,):
        return first
    if first == "celery" and len(airflow_args) > 1 and airflow_args[1] in ("worker", "flower"):
        return f"celery-{airflow_args[1]}"
    return "airflow"


def option_value(args: Sequence[str], *names: str) -> str | None:
    """The value of ``--name VALUE`` / ``--name=VALUE`` / ``-p VALUE`` in ``args``."""
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg[len(name) + 1 :]
    return None


def shell_airflow_args(args: Sequence[str]) -> tuple[str, ...] | None:
    """The airflow arguments of ``bash -c "exec airflow ARGS..."`` (the official chart starts
    every component so), or None when ``args`` is not of that form.

    The script is split like the shell would split a simple command (a backslash-newline
    joins lines); anything else - several commands, redirections - is not recognised.
    """
    if len(args) < 3 or args[0] not in SHELLS or args[1] != "-c":
        return None
    try:
        words = shlex.split(args[2].replace("\\\n", " "), comments=True)
    except ValueError:
        return None
    if len(words) < 2 or words[0] != "exec" or os.path.basename(words[1]) != "airflow":
        return None
    if any(w in (";", "&&", "||", "|", "&") or w.endswith(";") for w in words):
        return None
    return tuple(words[2:])


def celery_executor(value: str | None) -> bool:
    """Whether an ``[core] executor`` value names a Celery executor: ``CeleryExecutor``, its
    class path, an ``alias:path`` entry, or one of a comma-separated list."""
    for entry in (value or "").split(","):
        name = entry.strip().rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        if name in CELERY_EXECUTORS:
            return True
    return False


def configured_executor(env: Mapping[str, str], cfg: configparser.ConfigParser) -> str | None:
    """``[core] executor`` as the environment or airflow.cfg set it (None: Airflow's default)."""
    try:
        value, _ = lookup_option(env, cfg, "core", "executor")
    except EntrypointError as exc:  # a failing _cmd: the broker wait is a convenience
        log(f"warning: cannot read the executor: {exc}")
        return None
    return value


def plan_command(
    args: Sequence[str],
    env: Mapping[str, str],
    major: int = 3,
    cfg: configparser.ConfigParser | None = None,
) -> Plan:
    """Map the container's command to what is executed and which preparations it needs.

    ``major`` is the image's Airflow major version (:func:`airflow_major`); ``cfg`` the
    user's airflow.cfg (read for the executor).
    """
    roles = role_commands(major)
    if not args:
        raise EntrypointError(
            "no command given; use one of: "
            + ", ".join(roles)
            + ", an airflow command (e.g. 'airflow version', 'db migrate'), bash or python"
        )
    if cfg is None:
        cfg = configparser.ConfigParser(interpolation=None)
    first = args[0]
    if first in PASS_THROUGH or PYTHON_COMMAND.fullmatch(first) or first.startswith("/"):
        shell_args = shell_airflow_args(args)
        waits = first in WAITING_COMMANDS or bool(PYTHON_COMMAND.fullmatch(first))
        if shell_args is None:
            return Plan(role="exec", argv=tuple(args), wait_database=waits, airflow_major=major)
        plan = airflow_plan(shell_args, env, major, cfg)
        # the shell runs the command as written; the plan keeps the role it starts
        return Plan(
            role=plan.role,
            argv=tuple(args),
            wait_database=waits or plan.wait_database,
            wait_broker=plan.wait_broker,
            api_port=plan.api_port,
            airflow_major=major,
        )
    args, note = map_web_role(args, major)
    first = args[0]
    if first in roles:
        airflow_args: tuple[str, ...] = (*roles[first], *args[1:])
    elif first == "airflow":
        airflow_args = tuple(args[1:])
    else:
        airflow_args = tuple(args)
    plan = airflow_plan(airflow_args, env, major, cfg)
    return Plan(
        role=plan.role,
        argv=plan.argv,
        wait_database=plan.wait_database,
        wait_broker=plan.wait_broker,
        api_port=plan.api_port,
        airflow_major=major,
        note=note,
    )


def airflow_plan(
    airflow_args: Sequence[str],
    env: Mapping[str, str],
    major: int,
    cfg: configparser.ConfigParser,
) -> Plan:
    """The plan of ``airflow AIRFLOW_ARGS``."""
    airflow_args = tuple(airflow_args)
    role = airflow_role(airflow_args, major)
    asks_help = any(a in ("-h", "--help") for a in airflow_args)
    needs_db = bool(airflow_args) and airflow_args[0] not in NO_DATABASE_COMMANDS and not asks_help
    # The official image waits for the broker for the scheduler and celery commands when the
    # executor is Celery; a Celery worker or Flower needs the broker whatever the executor says.
    needs_broker = needs_db and (
        role in CELERY_ROLES
        or (role == "scheduler" and celery_executor(configured_executor(env, cfg)))
    )
    api_port: int | None = None
    if role == WEB_ROLE.get(major, "api-server"):
        raw = option_value(airflow_args, "--port", "-p")
        if raw is not None:
            try:
                api_port = int(raw)
            except ValueError:
                message = f"{role} --port must be a number, found {raw!r}"
                raise EntrypointError(message) from None
    argv: tuple[str, ...] = ("airflow", *airflow_args)
    if role == "standalone":
        argv = standalone_argv(airflow_args, launcher_dir())
    return Plan(
        role=role,
        argv=argv,
        wait_database=needs_db,
        wait_broker=needs_broker,
        api_port=api_port,
        airflow_major=major,
    )


def launcher_dir() -> str:
    """The folder of this script's real file: the image also runs it through the link
    ``/entrypoint`` (the official chart's path), and the launchers sit beside the real file."""
    return os.path.dirname(os.path.realpath(__file__))


def standalone_argv(airflow_args: Sequence[str], launcher_dir: str) -> tuple[str, ...]:
    """``airflow standalone`` through the fork-server launcher (``standalone.py``, shipped next
    to this script: components forked from one warm interpreter), or through the small inline
    launcher when an image does not ship it."""
    python = sys.executable or "python3"
    launcher = os.path.join(launcher_dir, "standalone.py")
    if os.path.isfile(launcher):
        return (python, "-P", launcher, *airflow_args)
    return (python, "-P", "-c", STANDALONE_LAUNCHER, *airflow_args)


def map_web_role(args: Sequence[str], major: int) -> tuple[list[str], str]:
    """Airflow 2 has no api-server: its web role is the webserver.  Returns the (possibly
    rewritten) arguments and a note for the log."""
    out = list(args)
    if major != 2:
        return out, ""
    at = 1 if out[0] == "airflow" and len(out) > 1 else 0
    if out[at] != "api-server":
        return out, ""
    out[at] = "webserver"
    return out, "Airflow 2 has no api-server: running 'webserver' instead"


# --------------------------------------------------------------------------------------------
# *_FILE indirection and value resolution


def expand_file_variables(
    env: Mapping[str, str], read: Callable[[str, str], str] = read_value_file
) -> dict[str, str]:
    """Return the variables set by ``NAME_FILE`` indirection (``NAME`` → the file's content).

    Applies to ``AIRFLOW__*`` and ``_AIRFLOW_*`` variables, except Airflow
    options whose own name ends in ``_file``.  Setting both ``NAME`` and ``NAME_FILE`` is an
    error: which one wins would be a guess.
    """
    expanded: dict[str, str] = {}
    for name in sorted(env):
        if not name.endswith("_FILE") or not name.startswith(FILE_PREFIXES):
            continue
        if name in REAL_FILE_OPTIONS:
            continue
        target = name[: -len("_FILE")]
        if target in ("AIRFLOW_", "_AIRFLOW") or target.endswith("_"):
            continue
        for other in (target, f"{target}_CMD"):
            if other in env:
                raise EntrypointError(f"both {other} and {name} are set; set only one of them")
        expanded[target] = read(name, env[name])
    return expanded


def option_of(var: str) -> tuple[str, str] | None:
    """``(section, key)`` of an ``AIRFLOW__SECTION__KEY`` variable, lower case; None otherwise."""
    if not var.startswith("AIRFLOW__"):
        return None
    section, sep, key = var[len("AIRFLOW__") :].partition("__")
    if not sep or not section or not key:
        return None
    return section.lower(), key.lower()


def file_command(path: str) -> str:
    """An Airflow ``_CMD`` value that prints ``path`` with this image's python3."""
    python = sys.executable or "python3"
    return shlex.join([python, "-I", "-S", "-c", READ_FILE_COMMAND, path])


def handover_changes(
    env: Mapping[str, str], expanded: Mapping[str, str], major: int
) -> tuple[dict[str, str], frozenset[str]]:
    """(variables to set, variables to remove) so that the environment Airflow inherits holds
    no provisioning secret and no file-given value of an option Airflow can read through
    ``_CMD`` (see the module docstring)."""
    sets: dict[str, str] = {}
    removes = {name for name in env if name.startswith(PROVISIONING_PREFIX)}
    cmd_options = CMD_OPTIONS.get(major, CMD_OPTIONS[3])
    for target in expanded:
        if target.startswith(PROVISIONING_ONLY):
            removes.add(target)
        elif option_of(target) in cmd_options and f"{target}_FILE" in env:
            removes.add(target)
            sets[f"{target}_CMD"] = file_command(env[f"{target}_FILE"])
    return sets, frozenset(removes)


def airflow_environment(
    env: Mapping[str, str], expanded: Mapping[str, str], major: int
) -> dict[str, str]:
    """The environment an Airflow process started from ``env`` gets (a copy)."""
    sets, removes = handover_changes(env, expanded, major)
    handed = {name: value for name, value in env.items() if name not in removes}
    handed.update(sets)
    return handed


def hand_over(env: MutableMapping[str, str], expanded: Mapping[str, str], major: int) -> None:
    """Apply :func:`handover_changes` to ``env`` in place (``os.environ`` before exec)."""
    sets, removes = handover_changes(env, expanded, major)
    for name in removes:
        env.pop(name, None)
    env.update(sets)


def resolve_value(env: Mapping[str, str], name: str) -> str | None:
    """``NAME`` (already file-expanded) or the output of ``NAME_CMD``; None when neither.

    An entrypoint variable's ``_CMD`` (``_AIRFLOW_*``) runs through bash like the official
    image's ``eval``; an Airflow option's runs as Airflow runs it (no shell).
    """
    if name in env:
        return env[name]
    command = env.get(f"{name}_CMD")
    if command:
        return run_command_for_value(
            f"{name}_CMD", command, shell=name.startswith(PROVISIONING_ONLY)
        )
    return None


def load_airflow_cfg(env: Mapping[str, str], airflow_home: str) -> configparser.ConfigParser:
    """The user's airflow.cfg (if any), read without interpolation; empty when missing."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    path = env.get("AIRFLOW_CONFIG") or os.path.join(airflow_home, "airflow.cfg")
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        log(f"warning: cannot parse {path}: {type(exc).__name__}; ignoring it")
        return configparser.ConfigParser(interpolation=None)
    return parser


def cfg_value(cfg: configparser.ConfigParser, section: str, key: str) -> str | None:
    if cfg.has_option(section, key):
        return cfg.get(section, key)
    return None


def config_is_set(
    env: Mapping[str, str], cfg: configparser.ConfigParser, section: str, key: str
) -> bool:
    """Whether Airflow will find a value for the option in env, its _CMD/_SECRET, or the cfg."""
    var = f"AIRFLOW__{section.upper()}__{key.upper()}"
    if env.get(var) or env.get(f"{var}_CMD") or env.get(f"{var}_SECRET"):
        return True
    return any(cfg_value(cfg, section, k) for k in (key, f"{key}_cmd", f"{key}_secret"))


def lookup_option(
    env: Mapping[str, str], cfg: configparser.ConfigParser, section: str, key: str
) -> tuple[str | None, str]:
    """(value, where) of an Airflow option as seen before Airflow starts; value None if unknown."""
    var = f"AIRFLOW__{section.upper()}__{key.upper()}"
    value = resolve_value(env, var)
    if value is not None:
        return value, var
    if env.get(f"{var}_SECRET"):
        return None, f"{var}_SECRET"
    if (found := cfg_value(cfg, section, key)) is not None:
        return found, f"[{section}] {key}"
    if command := cfg_value(cfg, section, f"{key}_cmd"):
        return run_command_for_value(f"[{section}] {key}_cmd", command), f"[{section}] {key}_cmd"
    if cfg_value(cfg, section, f"{key}_secret"):
        return None, f"[{section}] {key}_secret"
    return None, ""


# --------------------------------------------------------------------------------------------
# waiting for services


def _split_host_port(hostport: str, default_port: int | None) -> Endpoint | None:
    hostport = hostport.strip()
    if not hostport:
        return None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host, port_text = hostport, ""
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            # not echoed: without an '@' the "host:port" may be "user:password"
            raise EntrypointError("the port in the URL is not a number") from None
    elif default_port is not None:
        port = default_port
    else:
        return None
    if not host or not 0 < port < 65536:
        return None
    return Endpoint(host, port)


def parse_service_url(label: str, url: str) -> WaitTarget:
    """The TCP endpoints of a SQLAlchemy / Celery broker URL, without keeping credentials.

    Several URLs may be joined with ``;`` (Celery failover) and several hosts with ``,``
    (libpq multi-host); reaching any one of them is enough.
    """
    endpoints: list[Endpoint] = []
    skip = ""
    for part in (p.strip() for p in url.split(";")):
        if not part:
            continue
        scheme, sep, rest = part.partition("://")
        if not sep:
            raise EntrypointError(f"{label}: the URL has no scheme (expected 'scheme://...')")
        base = scheme.split("+", 1)[0].lower()
        if base == "sqlite":
            return WaitTarget(label, (), "SQLite, nothing to wait for", server=False)
        # userinfo ends at the last '@' (a raw password may hold '@', '/', '?' ...)
        authority = rest[rest.rfind("@") + 1 :] if "@" in rest else rest
        for stop in "/?#":
            authority = authority.split(stop, 1)[0]
        if not authority:
            skip = "no host in the URL (UNIX socket?), nothing to wait for"
            continue
        default_port = DEFAULT_PORTS.get(base)
        for hostport in authority.split(","):
            try:
                endpoint = _split_host_port(hostport, default_port)
            except EntrypointError as exc:
                raise EntrypointError(f"{label}: {exc}") from None
            if endpoint is None:
                skip = f"cannot tell the port of a {base!r} URL, not waiting"
            else:
                endpoints.append(endpoint)
    return WaitTarget(label, tuple(endpoints), "" if endpoints else skip)


def tcp_connect(endpoint: Endpoint, timeout: float) -> None:
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
        pass


def wait_for(
    target: WaitTarget,
    max_count: int,
    sleep_time: float,
    connect: Callable[[Endpoint, float], None] = tcp_connect,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Try the target's endpoints up to ``max_count`` times; raise EntrypointError after that."""
    if not target.endpoints:
        if target.skip_reason:
            log(f"{target.label}: {target.skip_reason}")
        return
    if max_count == 0:
        log(f"{target.label}: CONNECTION_CHECK_MAX_COUNT=0, not waiting")
        return
    last = (target.endpoints[0], "no attempt made")
    for attempt in range(1, max_count + 1):
        for endpoint in target.endpoints:
            try:
                connect(endpoint, max(1.0, min(sleep_time, 10.0)))
            except OSError as exc:
                last = (endpoint, exc.strerror or type(exc).__name__)
                continue
            if attempt > 1:
                log(f"{target.label} at {endpoint.host}:{endpoint.port} is reachable")
            return
        where = ", ".join(f"{e.host}:{e.port}" for e in target.endpoints)
        if attempt < max_count:
            log(
                f"waiting for {target.label} at {where} "
                f"(attempt {attempt}/{max_count}, last error: {last[1]})"
            )
            sleep(sleep_time)
    endpoint, error = last
    raise EntrypointError(
        f"{target.label} at {endpoint.host}:{endpoint.port} is not reachable after "
        f"{max_count} attempts, {sleep_time:g}s apart (last error: {error}); check the host "
        "and port, or raise CONNECTION_CHECK_MAX_COUNT / CONNECTION_CHECK_SLEEP_TIME"
    )


def tail(text: str, lines: int = 6, chars: int = 1500) -> str:
    """The last lines of a command's output, redacted, for an error message."""
    kept = "\n".join(text.strip().splitlines()[-lines:])
    return redact_userinfo(kept[-chars:])


def db_check_once(env: Mapping[str, str]) -> tuple[bool, str]:
    """One ``airflow db check`` (connect and log in, as the official image checks): (ok, output).

    ``env`` is the child's environment (no provisioning secrets).
    """
    try:
        done = subprocess.run(
            ["airflow", "db", "check"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=DB_CHECK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"'airflow db check' did not finish within {DB_CHECK_TIMEOUT}s"
    except OSError as exc:
        return False, f"cannot run 'airflow db check': {exc.strerror}"
    return done.returncode == 0, done.stdout + done.stderr


def wait_for_login(
    max_count: int,
    sleep_time: float,
    check: Callable[[], tuple[bool, str]],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run ``check`` (a database login) up to ``max_count`` times, ``sleep_time`` apart."""
    output = ""
    for attempt in range(1, max_count + 1):
        ok, output = check()
        if ok:
            if attempt > 1:
                log("metadata database: login succeeded")
            return
        if attempt < max_count:
            log(f"waiting for the metadata database login (attempt {attempt}/{max_count})")
            sleep(sleep_time)
    raise EntrypointError(
        f"'airflow db check' failed {max_count} times, {sleep_time:g}s apart: Airflow cannot "
        "connect and log in to the metadata database. Check the URL, user and password, or raise "
        "CONNECTION_CHECK_MAX_COUNT / CONNECTION_CHECK_SLEEP_TIME. Last output:\n"
        + (tail(output) or "(none)")
    )


def wait_for_database(
    env: Mapping[str, str],
    cfg: configparser.ConfigParser,
    max_count: int,
    sleep_time: float,
    check: Callable[[], tuple[bool, str]],
    connect: Callable[[Endpoint, float], None] = tcp_connect,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until the metadata database accepts Airflow's login.

    When the URL is known here, its port is waited for first (cheap: no Airflow import per
    attempt); then ``check`` (``airflow db check``) logs in, retried as often. SQLite has no
    server to wait for; a URL only Airflow can resolve (``_SECRET``) is checked by login alone.
    """
    if max_count == 0:
        log("metadata database: CONNECTION_CHECK_MAX_COUNT=0, not waiting")
        return
    target = database_target(env, cfg)
    if not target.server:
        log(f"{target.label}: {target.skip_reason}")
        return
    if target.endpoints:
        wait_for(target, max_count, sleep_time, connect=connect, sleep=sleep)
    else:
        log(f"{target.label}: {target.skip_reason}; checking the login only")
    wait_for_login(max_count, sleep_time, check, sleep=sleep)


def database_target(env: Mapping[str, str], cfg: configparser.ConfigParser) -> WaitTarget:
    url, where = lookup_option(env, cfg, "database", "sql_alchemy_conn")
    label = "metadata database"
    if url is None:
        if where:
            return WaitTarget(label, (), f"URL comes from {where}, not known here")
        return WaitTarget(label, (), "default SQLite database, nothing to wait for", server=False)
    return parse_service_url(label, url)


def broker_target(env: Mapping[str, str], cfg: configparser.ConfigParser) -> WaitTarget:
    url, where = lookup_option(env, cfg, "celery", "broker_url")
    label = "Celery broker"
    if url is None:
        if where:
            return WaitTarget(label, (), f"URL comes from {where}, cannot check it here")
        url = DEFAULT_CELERY_BROKER
    return parse_service_url(label, url)


# --------------------------------------------------------------------------------------------
# identity, directories and environment


def refuse_root(uid: int, env: Mapping[str, str]) -> None:
    if uid == 0 and not is_true(env.get("HARDFLOW_ALLOW_ROOT")):
        raise EntrypointError(
            "refusing to run as root (uid 0). Run as a non-root user with group 0, e.g. "
            "'--user 50000:0' (any uid works), or set HARDFLOW_ALLOW_ROOT=true if you really must"
        )


def group_warning(uid: int, gid: int) -> str | None:
    """The warning for a non-root user outside group 0, or None.

    The official image asks for group 0 so that an arbitrary uid shares, through the group,
    what another uid wrote to a volume (it only warns for its own uid 50000 and refuses other
    uids). Nothing in this image depends on the group, so it warns for every uid; volumes and
    generated files follow the group's permissions (umask 002).
    """
    if uid == 0 or gid == 0:
        return None
    return (
        f"warning: running as uid {uid} with gid {gid}, not gid 0. Run the container with "
        "group 0 (e.g. --user 50000:0 or runAsGroup: 0) whatever the uid: files written to "
        "shared volumes are group-writable, so another uid in group 0 (an arbitrary uid, a "
        "later upgrade) can still use them; with another group it may not"
    )


PIP_REFUSAL = (
    "_PIP_ADDITIONAL_REQUIREMENTS is set ({value!r}), but this image is immutable: it installs "
    "nothing at start (its root file system may be read-only, and every package is pinned and "
    "recorded in its SBOM). Build an image with the extra packages instead: copy the spec the "
    "image was built from (hardflow's embedded 'default' spec, src/hardflow/specs/default.toml), "
    "add them to [python] requirements, then run 'hardflow lock --spec my.toml' and "
    "'hardflow build --spec my.toml --load', and use that image. Unset "
    "_PIP_ADDITIONAL_REQUIREMENTS to start this one"
)


def refuse_pip_requirements(env: Mapping[str, str]) -> None:
    value = env.get("_PIP_ADDITIONAL_REQUIREMENTS", "").strip()
    if value:
        raise EntrypointError(PIP_REFUSAL.format(value=value))


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        # An arbitrary uid (OpenShift, runAsUser) has no passwd entry and /etc is read-only.
        return "airflow"


def writable_dir(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def identity_env(env: Mapping[str, str], uid: int, airflow_home: str) -> dict[str, str]:
    """Variables that make the process look like a full user whatever its uid."""
    updates: dict[str, str] = {}
    name = user_name(uid)
    for var in ("USER", "LOGNAME"):  # getpass.getuser() reads LOGNAME first, then USER
        if not env.get(var):
            updates[var] = name
    home = env.get("HOME", "")
    if not home or home == "/" or not writable_dir(home):
        updates["HOME"] = airflow_home if writable_dir(airflow_home) else "/tmp"
    defaults = {
        "PYTHONDONTWRITEBYTECODE": "1",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "XDG_CONFIG_HOME": "/tmp/.config",
        "XDG_DATA_HOME": "/tmp/.local/share",
        "XDG_STATE_HOME": "/tmp/.local/state",
    }
    for var, value in defaults.items():
        if not env.get(var):
            updates[var] = value
    return updates


def role_env(plan: Plan, env: Mapping[str, str]) -> dict[str, str]:
    """Settings a role needs so that its health check has something to probe."""
    updates: dict[str, str] = {}
    if plan.role == "scheduler" and "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK" not in env:
        updates["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] = "True"
    return updates


def config_file_env(env: Mapping[str, str], airflow_home: str) -> dict[str, str]:
    """``AIRFLOW_CONFIG=/dev/null`` when there is no airflow.cfg and none can be written.

    Airflow writes a default ``$AIRFLOW_HOME/airflow.cfg`` when the file is missing, and fails
    on a read-only root. The official chart mounts one; without it, Airflow reads an empty
    configuration instead (its defaults and the environment, exactly what a missing file means)
    rather than writing into the image. An explicit ``AIRFLOW_CONFIG`` is left to Airflow.
    """
    if env.get("AIRFLOW_CONFIG"):
        return {}
    path = os.path.join(airflow_home, "airflow.cfg")
    if os.path.lexists(path) or writable_dir(airflow_home):
        return {}
    log(
        f"note: {path} does not exist and {airflow_home} is not writable: Airflow reads "
        "no airflow.cfg (AIRFLOW_CONFIG=/dev/null) instead of writing a default one there"
    )
    return {"AIRFLOW_CONFIG": os.devnull}


def ensure_logs_dir(airflow_home: str) -> None:
    """Create ``$AIRFLOW_HOME/logs`` when it is missing and the home is writable; never write
    elsewhere (a read-only root stays untouched: Airflow reports a missing log folder itself
    when a role needs one)."""
    path = os.path.join(airflow_home, "logs")
    if os.path.isdir(path):
        return
    if not writable_dir(airflow_home):
        log(f"note: {path} does not exist and {airflow_home} is not writable; mount a volume "
            "there if this command writes logs")  # fmt: skip
        return
    ensure_dir(path)


def ensure_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise EntrypointError(
            f"cannot create {path}: {exc.strerror} (uid {os.getuid()}, gid {os.getgid()}); "
            "AIRFLOW_HOME must be writable by the container's user or its group 0"
        ) from None


# --------------------------------------------------------------------------------------------
# secrets kept in $AIRFLOW_HOME/.hardflow


def write_private_file(path: str, content: str, *, exclusive: bool) -> bool:
    """Write ``content`` to ``path`` with mode 0600.  With ``exclusive``, return False when the
    file already exists (another container won the race) instead of overwriting it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def replace_private_file(path: str, content: str) -> None:
    """Atomically replace ``path`` with ``content``, mode 0600."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write_private_file(tmp, content, exclusive=False)
        os.replace(tmp, path)
    except OSError as exc:
        raise EntrypointError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_private_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except (FileNotFoundError, NotADirectoryError):  # not there, nor its directory
        return None
    except OSError as exc:
        raise EntrypointError(
            f"cannot read {path}: {exc.strerror} (uid {os.getuid()}); it was created by "
            "another user with mode 0600. Keep the same uid across restarts, or remove the file"
        ) from None


class NotWritable(EntrypointError):
    """A secret must be generated but ``$AIRFLOW_HOME`` cannot keep it."""


def can_keep_files(state_dir: str) -> bool:
    """Whether ``state_dir`` is (or can be created as) a writable directory: checked with
    access(2), which also answers no on a read-only file system - never assumed."""
    if os.path.isdir(state_dir):
        return writable_dir(state_dir)
    return writable_dir(os.path.dirname(state_dir.rstrip("/")) or "/")


def persistent_secret(state_dir: str, name: str, generate: Callable[[], str]) -> str:
    """The secret stored in ``state_dir/name``, generated (mode 0600) on first use.

    Raises :class:`NotWritable` when it is not stored and ``state_dir`` cannot keep it.
    """
    path = os.path.join(state_dir, name)
    existing = read_private_file(path)
    if existing:
        return existing
    if not can_keep_files(state_dir):
        where = state_dir if os.path.isdir(state_dir) else os.path.dirname(state_dir.rstrip("/"))
        raise NotWritable(f"{where} is not writable (uid {os.getuid()}, gid {os.getgid()})")
    try:
        os.makedirs(state_dir, exist_ok=True)
    except OSError as exc:
        raise NotWritable(f"cannot create {state_dir}: {exc.strerror}") from None
    value = generate()
    try:
        created = write_private_file(path, value + "\n", exclusive=True)
    except OSError as exc:
        raise NotWritable(f"cannot write {path}: {exc.strerror}") from None
    if created:
        log(f"generated {name} into {path} (mode 0600); it is reused on restart")
        return value
    again = read_private_file(path)  # lost a race with another container
    if not again:
        raise EntrypointError(f"{path} exists but is empty; remove it to regenerate")
    return again


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def token() -> str:
    return secrets.token_urlsafe(32)


# (section, key, file name in the state dir, generator, options that make it unnecessary)
SECRET_SPECS: tuple[tuple[str, str, str, Callable[[], str], tuple[str, ...]], ...] = (
    ("core", "fernet_key", "fernet_key", fernet_key, ()),
    ("api", "secret_key", "api_secret_key", token, ()),
    ("api_auth", "jwt_secret", "jwt_secret", token, ("jwt_private_key_path",)),
)
# Airflow 2: the webserver's Flask secret key signs sessions and the log-fetching tokens
# between webserver and workers, so every container of a deployment must share it.
SECRET_SPECS_2: tuple[tuple[str, str, str, Callable[[], str], tuple[str, ...]], ...] = (
    ("core", "fernet_key", "fernet_key", fernet_key, ()),
    ("webserver", "secret_key", "webserver_secret_key", token, ()),
)


# The keys (state-dir file names) each role cannot run correctly without, per Airflow major
# version; every container of a deployment must share them, so a missing one is generated only
# where it can be kept (and shared through a common $AIRFLOW_HOME), or refused.
# - Fernet key: encrypts connections and variables in the database (the API server and the
#   scheduler read and write them; Airflow 3 workers go through the API server).
# - [api] secret_key: the API server's session and log-request signing key.
# - JWT secret: the API server checks the tokens the scheduler signs for its task workloads.
# The official chart gives the JWT secret to the API server and the scheduler only; triggerer,
# DAG processor, workers and one-off commands need none of them to start: a key stored earlier
# is still used, but nothing is generated for them.
SECRET_NEEDS: dict[int, dict[str, frozenset[str]]] = {
    3: {
        "standalone": frozenset({"fernet_key", "api_secret_key", "jwt_secret"}),
        "api-server": frozenset({"fernet_key", "api_secret_key", "jwt_secret"}),
        "scheduler": frozenset({"fernet_key", "jwt_secret"}),
    },
    2: {
        "standalone": frozenset({"fernet_key", "webserver_secret_key"}),
        "webserver": frozenset({"fernet_key", "webserver_secret_key"}),
        "scheduler": frozenset({"fernet_key"}),
    },
}


def secret_env(
    env: Mapping[str, str],
    cfg: configparser.ConfigParser,
    airflow_home: str,
    major: int = 3,
    role: str = "standalone",
) -> dict[str, str]:
    """``AIRFLOW__*`` variables for the keys the user did not provide in any form.

    A key given in the environment (plain, ``_FILE``, ``_CMD`` or ``_SECRET``) is left to
    Airflow.  Otherwise a key stored earlier in ``$AIRFLOW_HOME/.hardflow`` is used, even
    though Airflow may since have written a default airflow.cfg with its own random values (it
    does on first start); a key set in airflow.cfg before the first start is left alone.  The
    rest is generated once and stored - only for the keys ``role`` needs (:data:`SECRET_NEEDS`)
    and only where ``$AIRFLOW_HOME`` is writable; a needed key that cannot be kept is an error
    naming the variables to set.
    """
    state_dir = os.path.join(airflow_home, STATE_DIR_NAME)
    no_cfg = configparser.ConfigParser(interpolation=None)
    updates: dict[str, str] = {}
    missing: list[str] = []
    reason = ""
    specs = SECRET_SPECS_2 if major == 2 else SECRET_SPECS
    needs = SECRET_NEEDS.get(major, SECRET_NEEDS[3]).get(role, frozenset())
    for section, key, file_name, generate, alternatives in specs:
        if any(config_is_set(env, no_cfg, section, k) for k in (key, *alternatives)):
            continue
        var = f"AIRFLOW__{section.upper()}__{key.upper()}"
        needed = file_name in needs
        try:
            stored = read_private_file(os.path.join(state_dir, file_name))
        except EntrypointError as exc:
            if needed:
                raise
            log(f"warning: {exc}")
            continue
        if stored:
            updates[var] = stored
            continue
        if not needed or any(config_is_set(env, cfg, section, k) for k in (key, *alternatives)):
            continue
        try:
            updates[var] = persistent_secret(state_dir, file_name, generate)
        except NotWritable as exc:
            missing.append(var)
            reason = str(exc)
    if missing:
        names = ", ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        raise EntrypointError(
            f"{role} needs {names}, which {verb} not set; {reason}, so nothing can be generated "
            f"and kept there. Set {names} (or the _FILE or _CMD form) to the value every "
            "component of this deployment shares, e.g. from a Kubernetes Secret"
        )
    return updates


# --------------------------------------------------------------------------------------------
# admin user


@dataclass(frozen=True)
class AdminUser:
    username: str
    password: str | None  # None: not given, generate or keep the stored one
    role: str
    firstname: str
    lastname: str
    email: str


def admin_user(env: Mapping[str, str]) -> AdminUser:
    username = resolve_value(env, "_AIRFLOW_WWW_USER_USERNAME") or "admin"
    if ":" in username or "," in username:
        message = f"_AIRFLOW_WWW_USER_USERNAME must not contain ':' or ',': {username!r}"
        raise EntrypointError(message)
    password = resolve_value(env, "_AIRFLOW_WWW_USER_PASSWORD")
    return AdminUser(
        username=username,
        password=password or None,
        role=resolve_value(env, "_AIRFLOW_WWW_USER_ROLE") or "Admin",
        firstname=resolve_value(env, "_AIRFLOW_WWW_USER_FIRSTNAME") or "Airflow",
        lastname=resolve_value(env, "_AIRFLOW_WWW_USER_LASTNAME") or "Admin",
        email=resolve_value(env, "_AIRFLOW_WWW_USER_EMAIL") or "airflowadmin@example.com",
    )


def simple_auth_users_value(current: str | None, username: str, role: str) -> str:
    """The ``[core] simple_auth_manager_users`` value that includes ``username``."""
    entry = f"{username}:{role}"
    if current is None or current.strip() in ("", "admin:admin"):
        return entry
    names = [item.split(":", 1)[0].strip() for item in current.split(",") if item.strip()]
    if username in names:
        return current
    return f"{current},{entry}"


def provision_simple_auth(
    user: AdminUser, env: Mapping[str, str], cfg: configparser.ConfigParser, airflow_home: str
) -> dict[str, str]:
    """Write the user's password into SimpleAuthManager's passwords file; return env updates."""
    all_admins, _ = lookup_option(env, cfg, "core", "simple_auth_manager_all_admins")
    if is_true(all_admins):
        log("simple_auth_manager_all_admins is on: no user to provision")
        return {}
    path, _ = lookup_option(env, cfg, "core", "simple_auth_manager_passwords_file")
    path = path or os.path.join(airflow_home, "simple_auth_manager_passwords.json.generated")
    role = user.role.lower() if user.role.lower() in SIMPLE_AUTH_ROLES else "admin"
    current_users, _ = lookup_option(env, cfg, "core", "simple_auth_manager_users")
    updates = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": simple_auth_users_value(
            current_users, user.username, role
        )
    }
    passwords: dict[str, str] = {}
    text = read_private_file(path)
    if text:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            raise EntrypointError(f"{path} is not valid JSON; fix or remove it") from None
        if not isinstance(loaded, dict):
            raise EntrypointError(f"{path} must hold a JSON object of user → password")
        passwords = {str(k): str(v) for k, v in loaded.items()}
    if user.password is not None:
        if passwords.get(user.username) != user.password:
            passwords[user.username] = user.password
            replace_private_file(path, json.dumps(passwords, sort_keys=True) + "\n")
        log(f"user {user.username!r} ({role}) uses the given password")
    elif user.username in passwords:
        log(f"user {user.username!r} ({role}): password kept in {path}")
    else:
        passwords[user.username] = secrets.token_urlsafe(18)
        replace_private_file(path, json.dumps(passwords, sort_keys=True) + "\n")
        log(f"user {user.username!r} ({role}): generated a password into {path} (mode 0600)")
    return updates


def fab_installed() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("apache-airflow-providers-fab")
    except metadata.PackageNotFoundError:
        return False
    return True


def fab_create_argv(user: AdminUser) -> list[str]:
    """``airflow users create`` through :data:`FAB_USERS_LAUNCHER`: no password in it."""
    python = sys.executable or "python3"
    return [
        python, "-P", "-c", FAB_USERS_LAUNCHER, "users", "create",
        "--username", user.username,
        "--firstname", user.firstname, "--lastname", user.lastname,
        "--email", user.email, "--role", user.role,
    ]  # fmt: skip


def provision_fab(user: AdminUser, airflow_home: str, env: Mapping[str, str]) -> None:
    """Create the FAB admin; ``env`` is the child's environment (without provisioning secrets),
    the password goes to it on stdin."""
    if not fab_installed():
        raise EntrypointError(
            "the FAB auth manager is configured but apache-airflow-providers-fab is not "
            "installed in the image; add it to the image spec or use SimpleAuthManager"
        )
    password = user.password
    if password is None:
        state_dir = os.path.join(airflow_home, STATE_DIR_NAME)
        try:
            password = persistent_secret(
                state_dir, "admin_password", lambda: secrets.token_urlsafe(18)
            )
        except NotWritable as exc:
            raise EntrypointError(
                f"_AIRFLOW_WWW_USER_CREATE is set but _AIRFLOW_WWW_USER_PASSWORD is not; {exc}, "
                "so no password can be generated and kept there. Set "
                "_AIRFLOW_WWW_USER_PASSWORD (or its _FILE or _CMD form)"
            ) from None
        log(f"user {user.username!r}: password kept in {os.path.join(state_dir, 'admin_password')}")
    args = fab_create_argv(user)
    done = subprocess.run(args, env=dict(env), input=password, text=True, check=False)
    if done.returncode != 0:
        message = f"'airflow users create' for {user.username!r} failed ({done.returncode})"
        raise EntrypointError(message)


def provision_user(
    plan: Plan,
    env: Mapping[str, str],
    cfg: configparser.ConfigParser,
    airflow_home: str,
    child_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Provision the admin user; ``child_env`` is the environment of any Airflow command run
    for it (default: ``env`` without the provisioning variables)."""
    if child_env is None:
        child_env = {k: v for k, v in env.items() if not k.startswith(PROVISIONING_PREFIX)}
    if plan.role != "standalone" and not flag_on(env, "_AIRFLOW_WWW_USER_CREATE"):
        return {}
    user = admin_user(env)
    manager, _ = lookup_option(env, cfg, "core", "auth_manager")
    if plan.airflow_major == 2:  # FAB is Airflow 2's auth manager, standalone included
        if manager and "fab" not in manager.lower():
            log(f"auth manager {manager!r} is not managed by this entrypoint: no user provisioned")
            return {}
        provision_fab(user, airflow_home, child_env)
        return {}
    if plan.role == "standalone" or not manager or manager == SIMPLE_AUTH_MANAGER:
        return provision_simple_auth(user, env, cfg, airflow_home)
    if "fab" in manager.lower():
        provision_fab(user, airflow_home, child_env)
        return {}
    log(f"auth manager {manager!r} is not managed by this entrypoint: no user provisioned")
    return {}


# --------------------------------------------------------------------------------------------
# state for the health check


def health_state(plan: Plan, env: Mapping[str, str], pid: int) -> dict[str, object]:
    """What health.py needs: the role, the process to watch and the URLs to probe.

    ``api_health_url`` is the web role's health JSON: the API server's
    ``/api/v2/monitor/health`` on Airflow 3, the webserver's ``/health`` on Airflow 2.
    """
    section = "WEBSERVER" if plan.airflow_major == 2 else "API"
    if plan.airflow_major == 2:
        ssl = bool(env.get("AIRFLOW__WEBSERVER__WEB_SERVER_SSL_CERT"))
        api_port = plan.api_port or int_env(env, "AIRFLOW__WEBSERVER__WEB_SERVER_PORT", 8080)
        health_path = "/health"
    else:
        ssl = bool(env.get("AIRFLOW__API__SSL_CERT"))
        api_port = plan.api_port or int_env(env, "AIRFLOW__API__PORT", 8080)
        health_path = "/api/v2/monitor/health"
    base_path = ""
    base_url = env.get(f"AIRFLOW__{section}__BASE_URL", "")
    if "://" in base_url:
        rest = base_url.split("://", 1)[1]
        base_path = ("/" + rest.split("/", 1)[1]).rstrip("/") if "/" in rest else ""
    scheme = "https" if ssl else "http"
    scheduler_port = int_env(env, "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", 8974)
    flower_port = int_env(env, "AIRFLOW__CELERY__FLOWER_PORT", 5555)
    flower_prefix = env.get("AIRFLOW__CELERY__FLOWER_URL_PREFIX", "").strip("/")
    flower_path = f"/{flower_prefix}" if flower_prefix else ""
    return {
        "role": plan.role,
        "pid": pid,
        "airflow_major": plan.airflow_major,
        "api_health_url": f"{scheme}://127.0.0.1:{api_port}{base_path}{health_path}",
        "scheduler_health_url": f"http://127.0.0.1:{scheduler_port}/health",
        "flower_health_url": f"http://127.0.0.1:{flower_port}{flower_path}/healthcheck",
    }


def mount_namespace() -> str:
    """This container's mount namespace id (``mnt:[4026532...]`` → ``4026532...``), "" if
    unknown. Every container has its own, and ``exec`` into a container joins it: the key of
    the health state that a pod's containers sharing one ``/tmp`` do not overwrite."""
    try:
        link = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return ""
    match = re.fullmatch(r"mnt:\[(\d+)\]", link)
    return match.group(1) if match else ""


def state_file_path(
    env: Mapping[str, str],
    base: str | None = None,
    namespace: Callable[[], str] | None = None,
) -> str:
    """Where this container's health state lives: ``$HARDFLOW_STATE_FILE`` when set, else
    ``BASE-<mount namespace id>`` (health.py computes the same name)."""
    explicit = env.get("HARDFLOW_STATE_FILE", "")
    if explicit:
        return explicit
    base = DEFAULT_STATE_FILE if base is None else base
    key = (namespace or mount_namespace)()
    return f"{base}-{key}" if key else base


def pid_alive(pid: object, proc_root: str = "/proc") -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X", b"x")


def owns_state(path: str, pid: int, proc_root: str = "/proc") -> bool:
    """Whether this process should record the container's state: not when the file names
    another process that still runs - the container's main process, while this one is a probe
    run with ``exec`` (the chart's ``exec /entrypoint airflow jobs check``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            recorded = json.load(handle).get("pid")
    except (OSError, ValueError, AttributeError):
        return True
    return recorded == pid or not pid_alive(recorded, proc_root)


def write_state(path: str, state: Mapping[str, object]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(state, handle, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        log(f"warning: cannot write the health state file {path}: {exc.strerror}")


# --------------------------------------------------------------------------------------------
# main


# What Airflow prints when another process holds its migration lock past the lock timeout
# (PostgreSQL: LockNotAvailable; MySQL: GET_LOCK timing out).
MIGRATION_LOCK_MARKERS = ("LockNotAvailable", "lock timeout", "Could not acquire lock")


def migrate_once(env: Mapping[str, str]) -> tuple[int, bool]:
    """One ``airflow db migrate``, its output passed through: (status, lost the lock race)."""
    proc = subprocess.Popen(
        ["airflow", "db", "migrate"],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    locked = False
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        locked = locked or any(marker in line for marker in MIGRATION_LOCK_MARKERS)
    return proc.wait(), locked


def run_migrate(
    env: Mapping[str, str],
    attempts: int = 20,
    sleep_time: float = 3,
    once: Callable[[Mapping[str, str]], tuple[int, bool]] = migrate_once,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """``airflow db migrate``; retried (up to ``attempts``) only when it failed because another
    container held Airflow's migration lock, as when several components start together with
    ``_AIRFLOW_DB_MIGRATE`` set. Any other failure stops the container at once."""
    for attempt in range(1, max(attempts, 1) + 1):
        log("running 'airflow db migrate'")
        status, locked = once(env)
        if status == 0:
            return
        if not locked or attempt >= attempts:
            raise EntrypointError(f"'airflow db migrate' failed with status {status}")
        log(
            f"'airflow db migrate' could not take Airflow's migration lock (another container "
            f"is migrating); attempt {attempt} of {attempts}, again in {sleep_time:g}s"
        )
        sleep(sleep_time)


def migration_wanted(env: Mapping[str, str]) -> bool:
    """``_AIRFLOW_DB_MIGRATE`` or its deprecated name ``_AIRFLOW_DB_UPGRADE`` (with a warning)."""
    if env.get("_AIRFLOW_DB_UPGRADE", "").strip():
        log("warning: _AIRFLOW_DB_UPGRADE is deprecated; set _AIRFLOW_DB_MIGRATE instead")
    return flag_on(env, "_AIRFLOW_DB_MIGRATE") or flag_on(env, "_AIRFLOW_DB_UPGRADE")


def prepare(
    args: Sequence[str],
    env: MutableMapping[str, str],
    db_check: Callable[[Mapping[str, str]], tuple[bool, str]] = db_check_once,
) -> Plan:
    """Do everything before exec; mutates ``env`` (normally ``os.environ``).

    The order follows the official entrypoint: identity checks, the database (wait, migrate,
    admin user), then the broker for the roles that use it.
    """
    uid, gid = os.getuid(), os.getgid()
    refuse_root(uid, env)
    if warning := group_warning(uid, gid):
        log(warning)
    os.umask(0o002)  # group 0 shares what is written (arbitrary uid, same gid)
    refuse_pip_requirements(env)
    expanded = expand_file_variables(env)
    env.update(expanded)  # what this script reads; hand_over() below decides what Airflow sees
    airflow_home = env.setdefault("AIRFLOW_HOME", DEFAULT_AIRFLOW_HOME)
    env.update(config_file_env(env, airflow_home))
    cfg = load_airflow_cfg(env, airflow_home)
    plan = plan_command(args, env, airflow_major(), cfg)
    if plan.note:
        log(plan.note)
    env.update(identity_env(env, uid, airflow_home))
    env.update(role_env(plan, env))
    strict = plan.role != "exec"
    try:
        ensure_logs_dir(airflow_home)
        env.update(secret_env(env, cfg, airflow_home, plan.airflow_major, plan.role))
    except EntrypointError as exc:
        if strict:
            raise
        log(f"warning: {exc}")
    for warning in missing_cmd_programs(env, shutil.which):
        log(f"warning: {warning}")
    state_file = state_file_path(env)
    if owns_state(state_file, os.getpid()):
        write_state(state_file, health_state(plan, env, os.getpid()))
    migrate = migration_wanted(env)
    create_user = plan.role == "standalone" or flag_on(env, "_AIRFLOW_WWW_USER_CREATE")
    max_count = int_env(env, "CONNECTION_CHECK_MAX_COUNT", 20)
    sleep_time = int_env(env, "CONNECTION_CHECK_SLEEP_TIME", 3)
    child_env = airflow_environment(env, expanded, plan.airflow_major)
    if plan.wait_database or migrate or create_user:
        wait_for_database(env, cfg, max_count, sleep_time, lambda: db_check(child_env))
        # Airflow 2 standalone: FAB's 'users create' needs the tables standalone would create
        if migrate or (plan.airflow_major == 2 and plan.role == "standalone"):
            run_migrate(child_env, max(max_count, 1), sleep_time)
        env.update(provision_user(plan, env, cfg, airflow_home, child_env))
    if plan.wait_broker:
        if max_count == 0:
            log("Celery broker: CONNECTION_CHECK_MAX_COUNT=0, not waiting")
        else:
            wait_for(broker_target(env, cfg), max_count, sleep_time)
    hand_over(env, expanded, plan.airflow_major)
    return plan


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        plan = prepare(args, os.environ)
    except EntrypointError as exc:
        log(f"error: {exc}")
        sys.exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(plan.argv[0], list(plan.argv))
    except OSError as exc:
        log(f"error: cannot execute {plan.argv[0]!r}: {exc.strerror}")
        sys.exit(127)


if __name__ == "__main__":
    main()
