"""Health check of the hardflow statsd-exporter image: GET /metrics over loopback answers 200.

Runs on the minimal interpreter (socket only): exit 0 when collectd's write_prometheus plugin
serves its exposition, 1 otherwise.
"""

import socket
import sys

PORT = 9103


def main() -> int:
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=5) as conn:
            conn.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            status = conn.recv(64).split(b"\r\n", 1)[0]
    except OSError as exc:
        print(f"statsd-exporter: port {PORT}: {exc}", file=sys.stderr)
        return 1
    if status.split(b" ")[1:2] != [b"200"]:
        print(f"statsd-exporter: /metrics answered {status!r}", file=sys.stderr)
        return 1
    return 0


sys.exit(main())
