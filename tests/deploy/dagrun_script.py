"""Trigger a DAG through the API server's loopback address and wait for the run (stdlib only).

Run inside the API server's container as ``python3.13 -c SOURCE USER PASSWORD_FILE DAG_ID
TIMEOUT``; prints one JSON line: {"state": ..., "run_id": ..., "tasks": {...}}.
"""

import json
import sys
import time
import urllib.error
import urllib.request

BASE = "http://127.0.0.1:8080"


def call(method, path, body=None, token=None, ok=(200, 201)):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        if exc.code in ok:
            return exc.code, None
        return exc.code, None


def main():
    user, password_file, dag_id, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    with open(password_file, encoding="utf-8") as fh:
        password = fh.read().strip()
    deadline = time.monotonic() + timeout
    token = None
    while token is None:
        status, doc = call("POST", "/auth/token", {"username": user, "password": password})
        if status in (200, 201) and doc:
            token = doc["access_token"]
        elif time.monotonic() > deadline:
            raise SystemExit(f"login failed: HTTP {status}")
        else:
            time.sleep(2)
    while call("GET", f"/api/v2/dags/{dag_id}", token=token)[0] != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"DAG {dag_id} never appeared")
        time.sleep(2)
    call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
    _, run = call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None}, token)
    run_id = run["dag_run_id"]
    state = run.get("state")
    while state not in ("success", "failed"):
        if time.monotonic() > deadline:
            break
        time.sleep(2)
        _, doc = call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", token=token)
        state = (doc or {}).get("state")
    _, tis = call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", token=token)
    tasks = {t["task_id"]: t["state"] for t in (tis or {}).get("task_instances", [])}
    hosts = {t["task_id"]: t.get("hostname") for t in (tis or {}).get("task_instances", [])}
    print(json.dumps({"state": state, "run_id": run_id, "tasks": tasks, "hosts": hosts}))


main()
