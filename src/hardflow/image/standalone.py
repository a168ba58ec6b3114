"""``airflow standalone`` whose components are forked from one warm interpreter (stdlib only).

Airflow's standalone command starts the scheduler, DAG processor, API server (webserver on 2.x)
and triggerer as ``airflow COMPONENT`` subprocesses. Each is a fresh interpreter that imports
Airflow again (about 1.5-2 s of CPU each, all at once), so on a small machine most of the time
to healthy went into four parallel imports of the same modules. This launcher imports Airflow
once, forks a *fork server* before any thread exists, and makes standalone ask that server for
its components: each is a ``fork()`` of the already-imported interpreter that runs Airflow's own
CLI ``main`` with the component's arguments, its output piped back to standalone as before.

Run by the entrypoint as ``python3 -P standalone.py standalone [ARGS]``. A component whose
environment differs from the server's in Airflow's settings (standalone forces the executor or
auth manager when the configured one does not suit it) is started the usual way instead, since
the forked interpreter has already read its configuration. ``HARDFLOW_STANDALONE_FORK=0`` turns
the fork server off.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

# Modules every component imports anyway: loading them before the fork is the whole point.
PRELOAD = (
    "airflow.__main__",
    "airflow.cli.cli_parser",
    "airflow.jobs.scheduler_job_runner",
    "airflow.jobs.triggerer_job_runner",
    "airflow.jobs.dag_processor_job_runner",
)
# Variables whose difference from the server's environment means a fork would run stale config.
CONFIG_PREFIXES = ("AIRFLOW", "_AIRFLOW", "PYTHON")
_MAX_MESSAGE = 1 << 20


def config_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(CONFIG_PREFIXES)}


def send_with_fd(sock: socket.socket, payload: bytes, fd: int) -> None:
    rights = array.array("i", [fd])
    sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights.tobytes())])


def receive_with_fd(sock: socket.socket) -> tuple[bytes, int | None]:
    fds = array.array("i")
    payload, ancillary, _, _ = sock.recvmsg(_MAX_MESSAGE, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return payload, (fds[0] if fds else None)


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(sock: socket.socket, run: Callable[[list[str]], int]) -> None:
    """The fork server's loop: one request (argv as JSON + the output fd) → one forked child.

    Answers each request with the child's PID; ends when the other side closes the socket.
    Children are reaped here (they are the server's, not standalone's).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # standalone stops the children, then us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            payload, fd = receive_with_fd(sock)
        except InterruptedError:
            continue
        reap()
        if not payload:
            return
        argv = json.loads(payload)
        pid = os.fork()
        if pid == 0:
            sock.close()
            code = 1
            try:
                if fd is not None:
                    os.dup2(fd, 1)
                    os.dup2(fd, 2)
                    os.close(fd)
                # a fresh process's signal dispositions; Airflow installs its own handlers
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                code = run(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except KeyboardInterrupt:
                code = 0
            except BaseException as exc:  # report it; never return into the server's loop
                print(f"hardflow fork server: {argv!r} failed: {exc!r}", file=sys.stderr)
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        if fd is not None:
            os.close(fd)
        sock.send(str(pid).encode())


class ForkedProcess:
    """What standalone uses of a ``subprocess.Popen``: ``stdout`` and ``terminate``."""

    def __init__(self, sock: socket.socket, argv: Sequence[str]) -> None:
        read_end, write_end = os.pipe()
        try:
            send_with_fd(sock, json.dumps(list(argv)).encode(), write_end)
        finally:
            os.close(write_end)
        self.pid = int(sock.recv(64))
        self.stdout: IO[bytes] = os.fdopen(read_end, "rb")

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)


def start_server(run: Callable[[list[str]], int]) -> socket.socket:
    """Fork the server; return standalone's end of the socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        ours.close()
        set_title("airflow standalone fork server")
        try:
            serve(theirs, run)
        finally:
            os._exit(0)
    theirs.close()
    return ours


def set_title(title: str) -> None:
    """Name the process as ``ps`` shows it (setproctitle is an Airflow dependency)."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


def run_airflow(argv: list[str]) -> int:
    """Run one Airflow CLI command in this (forked) interpreter."""
    sys.argv = ["airflow", *argv]
    set_title("airflow " + " ".join(argv))
    from airflow.__main__ import main

    result: Any = main()
    return result if isinstance(result, int) else 0


def patch_standalone(server: socket.socket, server_env: Mapping[str, str]) -> bool:
    """Make Airflow's standalone start its components through the fork server.

    Returns False (and changes nothing) when this Airflow's standalone is not shaped as
    expected, so standalone then runs exactly as Airflow ships it.
    """
    from airflow.cli.commands import standalone_command

    sub = getattr(standalone_command, "SubCommand", None)
    if sub is None or not callable(getattr(sub, "run", None)):
        return False
    original = sub.run
    expected = config_env(server_env)

    def run(self: Any) -> None:
        if config_env(getattr(self, "env", None) or {}) != expected:
            original(self)  # its settings differ from what the server has loaded
            return
        self.process = ForkedProcess(server, list(self.command))
        for line in self.process.stdout:
            self.parent.output_queue.append((self.name, line))

    sub.run = run
    return True


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop)
    sys.argv = ["airflow", *args]
    import importlib

    fork = os.environ.get("HARDFLOW_STANDALONE_FORK", "1").lower() not in ("0", "false", "no")
    set_title("airflow " + " ".join(args))
    if fork:
        for name in PRELOAD:
            # a module this Airflow version lacks is skipped: the component imports what it needs
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        server = start_server(run_airflow)
        patch_standalone(server, dict(os.environ))
    from airflow.__main__ import main as airflow_main

    result: Any = airflow_main()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
