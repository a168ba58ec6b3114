"""Drive DAG runs through the API server's loopback address (stdlib only).

Runs inside the API server's container (so no test traffic leaves the machine's loopback):
``python3.13 -c SOURCE USER PASSWORD_FILE TIMEOUT COMMAND DAG_ID [RUN_ID]`` where COMMAND is
``trigger`` (unpause, start a run, print its id), ``wait`` (wait for RUN_ID to finish) or
``list`` (every run of the DAG). Prints one JSON document.
"""

import json
import sys
import time
import urllib.error
import urllib.request

BASE = "http://127.0.0.1:8080"


def call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError):
        return 0, None


def login(user, password, deadline):
    while True:
        status, doc = call("POST", "/auth/token", {"username": user, "password": password})
        if status in (200, 201) and doc:
            return doc["access_token"]
        if time.monotonic() > deadline:
            raise SystemExit(f"login failed: HTTP {status}")
        time.sleep(2)


def wait_run(token, dag_id, run_id, deadline):
    state = None
    while time.monotonic() < deadline:
        _, doc = call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", token=token)
        state = (doc or {}).get("state")
        if state in ("success", "failed"):
            break
        time.sleep(2)
    _, tis = call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", token=token)
    tis = (tis or {}).get("task_instances", [])
    return {
        "run_id": run_id,
        "state": state,
        "tasks": {t["task_id"]: t["state"] for t in tis},
        "hosts": {t["task_id"]: t.get("hostname") for t in tis},
    }


def main():
    user, password_file, timeout, command, dag_id = sys.argv[1:6]
    with open(password_file, encoding="utf-8") as fh:
        password = fh.read().strip()
    deadline = time.monotonic() + float(timeout)
    token = login(user, password, deadline)
    if command == "trigger":
        while call("GET", f"/api/v2/dags/{dag_id}", token=token)[0] != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"DAG {dag_id} never appeared")
            time.sleep(2)
        call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
        status, run = call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None}, token)
        if not run:
            raise SystemExit(f"trigger failed: HTTP {status}")
        print(json.dumps({"run_id": run["dag_run_id"]}))
    elif command == "wait":
        print(json.dumps(wait_run(token, dag_id, sys.argv[6], deadline)))
    elif command == "list":
        _, doc = call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100", token=token)
        runs = (doc or {}).get("dag_runs", [])
        print(json.dumps({r["dag_run_id"]: r["state"] for r in runs}))
    else:
        raise SystemExit(f"unknown command {command}")


main()
