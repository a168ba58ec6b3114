"""A loopback file server that misbehaves on purpose, for the download-retry tests.

    with FlakyServer(root, faults={"a.deb": ["drop", "503"]}, refuse_first=1) as srv:
        policy = RetryPolicy(attempts=4, base_delay=0, sleep=srv.sleep)
        ...  # srv.url + "/a.deb"

``faults`` maps a path suffix to the misbehaviours of the next requests for it, in order:
``"drop"`` (send half the body under the full Content-Length, then close), ``"reset"``
(close without an answer), ``"503"``/``"500"``/``"429"``/``"404"``/``"403"`` (that status),
``"ok"`` (serve normally). Suffixes whose list is empty, and other paths, are served normally;
a fault list ending in ``"*"`` repeats its last fault forever (a permanently broken URL).

``refuse_first=n`` keeps the socket bound but not listening, so connections are refused
(ECONNREFUSED, as from a host whose service is not up yet) until :meth:`sleep` has been called
``n`` times, i.e. until the client has backed off ``n`` times. Bound to port 0, never a fixed one.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType


class FlakyServer:
    def __init__(
        self,
        root: Path,
        faults: Mapping[str, Sequence[str]] | None = None,
        *,
        refuse_first: int = 0,
        ranges: bool = True,
    ) -> None:
        self.root = root
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.refuse_first = refuse_first
        self.ranges = ranges
        self.requests: list[tuple[str, str | None, str]] = []  # (path, Range, what was done)
        self.sleeps: list[float] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), self._handler(), bind_and_activate=False
        )
        self._server.daemon_threads = True
        self._server.server_bind()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def sleep(self, seconds: float) -> None:
        """The retry policy's sleep: records the wait, and opens the door after n refusals."""
        self.sleeps.append(seconds)
        if len(self.sleeps) >= self.refuse_first:
            self._listen()

    def _listen(self) -> None:
        with self._lock:
            if self._thread is None:
                self._server.server_activate()
                self._thread = threading.Thread(
                    target=self._server.serve_forever, args=(0.02,), daemon=True
                )
                self._thread.start()

    def __enter__(self) -> FlakyServer:
        if self.refuse_first == 0:
            self._listen()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()

    def next_fault(self, path: str) -> str:
        with self._lock:
            for suffix, queue in self.faults.items():
                if path.endswith(suffix) and queue:
                    if queue[-1] == "*":
                        return queue[0] if len(queue) == 2 else queue.pop(0)
                    return queue.pop(0)
        return "ok"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                fault = srv.next_fault(path)
                srv.requests.append((path, self.headers.get("Range"), fault))
                if fault == "reset":
                    self.close_connection = True
                    return
                if fault.isdigit():
                    self.send_response(int(fault))
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return
                target = (srv.root / path.lstrip("/")).resolve()
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_relative_to(srv.root.resolve()) or not target.is_file():
                    self.send_error(404)
                    return
                body = target.read_bytes()
                start, status = 0, 200
                wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if srv.ranges and wanted and int(wanted.group(1)) < len(body):
                    start, status = int(wanted.group(1)), 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Connection", "close")
                self.end_headers()
                payload = body[start:]
                if fault == "drop":
                    self.wfile.write(payload[: max(len(payload) // 2, 1)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)
                self.close_connection = True

        return Handler
