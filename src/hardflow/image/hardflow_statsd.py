"""A StatsD client for Airflow that outlives a moment when its exporter's name does not resolve.

``hardflow deploy compose --metrics`` mounts this file into every Airflow container's
``$AIRFLOW_HOME/config`` (on Airflow's ``sys.path``) and names the class in
``AIRFLOW__METRICS__STATSD_CUSTOM_CLIENT_PATH``.

Why: Airflow creates its StatsD client at a process's first metric, and the stock
``statsd.StatsClient`` looks the exporter's name up there, once. When that lookup fails, Airflow
logs "Could not configure StatsClient" and sends no metric for the rest of the process's life.
Under podman, container names are answered by aardvark-dns, and Debian 12's aardvark-dns (1.4)
restarts its listeners at every container start and stop: under load, a lookup made in that
moment is answered "Name or service not known" (seen here: 4 in 21,000 lookups while 30
containers started; aardvark-dns 1.11 keeps its listeners). An Airflow component starts exactly
while its neighbours start and the init job exits, so a scheduler could lose its metrics for
good.

This client is the stock one (the ``statsd`` package's UDP client: same wire format, same
prefix, same pipelines) except for the address: a failed lookup is tried again at a later
metric, at most every ``retry_seconds``, and the metrics in between are dropped, as the stock
client drops a datagram it cannot send. Once the name resolves, the address is kept, as the
stock client keeps it (podman keeps a restarted container's address).

It runs inside the Airflow image, where ``statsd`` is installed; it is not part of the
hardflow package's own import graph.
"""

from __future__ import annotations

import contextlib
import socket
import time

from statsd import StatsClient


class ResolvingStatsClient(StatsClient):  # type: ignore[misc]
    """``statsd.StatsClient`` whose host lookup is retried instead of failing the client."""

    retry_seconds = 5.0

    def __init__(
        self,
        host: str = "localhost",
        port: int = 8125,
        prefix: str | None = None,
        maxudpsize: int = 512,
        ipv6: bool = False,
    ) -> None:
        # Not super().__init__(): that is the single lookup this class exists to replace.
        self._host, self._port = host, port
        self._family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self._sock = socket.socket(self._family, socket.SOCK_DGRAM)
        self._prefix = prefix
        self._maxudpsize = maxudpsize
        self._addr: tuple[object, ...] | None = None
        self._next_lookup = 0.0
        self._lookup()

    def _lookup(self) -> None:
        now = time.monotonic()
        if now < self._next_lookup:
            return
        try:
            info = socket.getaddrinfo(self._host, self._port, self._family, socket.SOCK_DGRAM)
        except OSError:  # socket.gaierror, or a resolver that could not be reached
            self._next_lookup = now + self.retry_seconds
            return
        self._addr = info[0][4]

    def _send(self, data: str) -> None:
        if self._addr is None:
            self._lookup()
            if self._addr is None:
                return
        # as the stock client: a metric is never worth an exception in Airflow
        with contextlib.suppress(OSError, RuntimeError):
            self._sock.sendto(data.encode("ascii"), self._addr)
