"""In the default image, under Airflow's own metrics set-up: the StatsD client ``deploy compose
--metrics`` mounts keeps sending after its exporter's name failed to resolve, where the stock
client leaves the process without metrics for good.

The lookup failure is injected into ``socket.getaddrinfo`` (the one thing the test cannot make
aardvark-dns do on demand); everything else is real: Airflow 3.3.2's stats module and factory,
the ``statsd`` package in the image, the module mounted read-only into ``$AIRFLOW_HOME/config``
as compose mounts it, and a UDP receiver that gets the datagram.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hardflow.deploy import metrics as met
from helpers.loaded_images import LoadedImage
from helpers.podman import HARDENED

pytestmark = [pytest.mark.network, pytest.mark.podman, pytest.mark.slow]

SCRIPT = r"""
import json, os, socket, time

rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
rx.settimeout(10)
os.environ.update({
    "AIRFLOW__METRICS__STATSD_ON": "True",
    "AIRFLOW__METRICS__STATSD_HOST": "localhost",
    "AIRFLOW__METRICS__STATSD_PORT": str(rx.getsockname()[1]),
    "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
})
real_lookup = socket.getaddrinfo
fail = {"localhost": 0}

def lookup(host, *args, **kwargs):
    if fail.get(host):
        fail[host] -= 1
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return real_lookup(host, *args, **kwargs)

socket.getaddrinfo = lookup

import airflow  # puts $AIRFLOW_HOME/config on sys.path
from airflow._shared.observability.metrics import stats
from airflow.observability.metrics import stats_utils

def backend(client_path):
    if client_path:
        os.environ["AIRFLOW__METRICS__STATSD_CUSTOM_CLIENT_PATH"] = client_path
    else:
        os.environ.pop("AIRFLOW__METRICS__STATSD_CUSTOM_CLIENT_PATH", None)
    fail["localhost"] = 1  # the process's first lookup is not answered
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    stats.incr("scheduler_heartbeat")  # the first metric creates the client
    return stats._get_backend()

out = {}
stock = backend(None)
out["stock_backend"] = type(stock).__name__

import hardflow_statsd
hardflow_statsd.ResolvingStatsClient.retry_seconds = 0.5
ours = backend(os.environ["CLIENT_PATH"])
out["backend"] = type(ours).__name__
out["client"] = type(ours.statsd).__module__ + "." + type(ours.statsd).__qualname__
out["lookups_left_to_fail"] = fail["localhost"]
stats.incr("scheduler_heartbeat")  # inside the retry window: dropped, no lookup
time.sleep(0.6)
stats.incr("scheduler_heartbeat")  # looked up again: sent
rx.settimeout(2)
received = []
try:
    while True:
        received.append(rx.recv(512).decode())
except TimeoutError:
    pass
out["received"] = received
print(json.dumps(out))
"""


def test_the_client_sends_after_a_failed_first_lookup(
    loaded_image: LoadedImage, tmp_path: Path
) -> None:
    image = loaded_image("default")
    client = tmp_path / met.STATSD_CLIENT_NAME  # what write_compose_project writes
    client.write_bytes(met.statsd_client_source())
    client.chmod(0o644)
    mount = f"{client}:{met.STATSD_CLIENT_PATH}:ro"
    done = subprocess.run(
        [
            "podman", "run", "--rm", *HARDENED, "--network", "none", "--user", "1234567:0",
            "-v", mount, "-e", f"CLIENT_PATH={met.STATSD_CLIENT_CLASS}",
            "--entrypoint", "/usr/bin/python3.13", image, "-c", SCRIPT,
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # the premise: Airflow gives the stock client's failed lookup up for the process's life
    assert out["stock_backend"] == "NoStatsLogger", out
    # ours is the client Airflow uses, the failure did not cost it the client, and the next
    # metric after the retry interval reaches the receiver
    assert out["backend"] == "SafeStatsdLogger", out
    assert out["client"] == met.STATSD_CLIENT_CLASS, out
    assert out["lookups_left_to_fail"] == 0, out
    # (and only that one: the metrics before it, in the retry interval, were dropped)
    beats = [d for d in out["received"] if d.startswith("airflow.scheduler_heartbeat")]
    assert beats == ["airflow.scheduler_heartbeat:1|c"], out
