"""``/v1`` on the real pack (``tombola up``): the token on both listeners, executions, their logs, replicas."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from runner.database import generated_customer
from tests.pack import Pack

SAMPLES = {"{name}": "i", "{number}": "1", "{alias}": "live", "{execution_id}": "0" * 32}


def control(pack: Pack) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {pack.env['TOMBOLA_TOKEN']}"
    return session


def execute(pack: Pack, function: str, **request: Any) -> requests.Response:
    return control(pack).post(f"{pack.url}/v1/functions/{function}/executions", json=request, timeout=30)


@pytest.mark.parametrize("listener", ["public", "internal"])
def test_control_calls_without_the_token_get_401(pack: Pack, listener: str) -> None:
    base = pack.url if listener == "public" else pack.internal_url
    document = requests.get(f"{base}/v1/openapi.json", timeout=5)
    assert document.status_code == 200
    checked = 0
    for template, operations in document.json()["paths"].items():
        if template == "/v1/openapi.json":
            continue
        path = template
        for placeholder, value in SAMPLES.items():
            path = path.replace(placeholder, value)
        for method in operations:
            for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": pack.env["TOMBOLA_TOKEN"]}):
                answer = requests.request(method.upper(), f"{base}{path}", headers=headers, timeout=5)
                assert answer.status_code == 401, (method, path, headers)
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                assert answer.json()["title"] == "Token required"
                checked += 1
    assert checked >= 18 * 3


def test_a_sync_execution_of_i_returns_the_customer(pack: Pack) -> None:
    answer = execute(pack, "i", path="/user/42")
    assert answer.status_code == 200, answer.text
    execution = answer.json()
    live = control(pack).get(f"{pack.url}/v1/functions/i", timeout=5).json()["live"]["version"]
    assert execution["status"] == "succeeded" and execution["version"] == live
    assert execution["result"] == {"status": 200, "body": generated_customer(42), "truncated": False}
    assert 0 < execution["duration"] < 5
    # Its logs: the replica's access line for this very request, and nothing of any other request.
    entries = [json.loads(line["line"]) for line in execution["logs"]]
    assert entries and all(entry["request_id"] == execution["id"] for entry in entries)
    access = [entry for entry in entries if entry["logger"] == "tombola.access"]
    assert [(entry["method"], entry["path"], entry["status"]) for entry in access] == [("GET", "/user/42", 200)]
    assert control(pack).get(f"{pack.url}/v1/executions/{execution['id']}", timeout=5).json() == execution

    failed = execute(pack, "i", path="/user/0").json()
    assert failed["status"] == "failed" and failed["result"]["status"] == 400
    assert failed["result"]["body"]["title"] == "Invalid customer id"


def test_an_async_execution_returns_202_then_its_result(pack: Pack) -> None:
    started = execute(pack, "w", path="/play/314", **{"async": True})  # W draws for one second (its tempo here)
    assert started.status_code == 202, started.text
    accepted = started.json()
    assert accepted["status"] == "running" and started.headers["Location"] == accepted["links"]["self"]
    session = control(pack)
    record = session.get(f"{pack.url}{accepted['links']['self']}", timeout=5).json()
    assert record["status"] == "running" and record["result"] is None
    deadline = time.monotonic() + 20
    while record["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        record = session.get(f"{pack.url}{accepted['links']['self']}", timeout=5).json()
    assert record["status"] == "succeeded", record
    assert record["result"]["status"] == 200 and record["result"]["body"]["price"]
    assert record["duration"] >= 0.9 and record["finished_at"] >= record["created_at"]
    assert any(json.loads(line["line"]).get("path") == "/play/314" for line in record["logs"])
    listed = session.get(f"{pack.url}/v1/executions", params={"function": "w"}, timeout=5).json()["executions"]
    assert listed[0]["id"] == accepted["id"] and listed[0]["result_status"] == 200


def test_the_function_logs_hold_each_request_id(pack: Pack) -> None:
    execution = execute(pack, "s", path="/user/7").json()
    session = control(pack)
    lines = session.get(f"{pack.url}/v1/functions/s/logs", params={"lines": 500}, timeout=5).json()["lines"]
    assert any(execution["id"] in line["line"] for line in lines)
    assert all(line["replica"].startswith("s-") for line in lines)
    assert len(session.get(f"{pack.url}/v1/functions/s/logs", params={"lines": 2}, timeout=5).json()["lines"]) == 2
    # A request through the public listener: the id the client sent reaches the replica's log line.
    assert requests.get(f"{pack.url}/srvi/user/9", headers={"X-Request-Id": "trace-from-client-9"}, timeout=5).ok
    lines = session.get(f"{pack.url}/v1/functions/i/logs", params={"lines": 50}, timeout=5).json()["lines"]
    traced = [json.loads(line["line"]) for line in lines if "trace-from-client-9" in line["line"]]
    assert [(entry["path"], entry["request_id"]) for entry in traced] == [("/user/9", "trace-from-client-9")]


def test_replicas_and_functions(pack: Pack) -> None:
    session = control(pack)
    replicas = session.get(f"{pack.internal_url}/v1/replicas", timeout=5).json()["replicas"]
    names = {function["name"] for function in session.get(f"{pack.url}/v1/functions", timeout=5).json()["functions"]}
    assert names == {"b", "i", "p", "s", "w", "w1", "w2"}
    assert {replica["function"] for replica in replicas if replica["healthy"]} == names
    only_w = session.get(f"{pack.url}/v1/replicas", params={"function": "w"}, timeout=5).json()["replicas"]
    assert only_w and {replica["function"] for replica in only_w} == {"w"}
