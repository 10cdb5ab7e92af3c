"""Remote replicas (gateway.remote): what a gateway accepts from the servers that announce their replicas."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import falcon.asgi
import falcon.testing
import pytest

from gateway import errors
from gateway.registry import Registry
from gateway.remote import LEASE, REMOTE_VERSION, RemoteReplicas, local_functions
from runner.function import Function
from runner.settings import SettingsError

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
TOKEN = "replica-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def functions() -> list[Function]:
    return [Function.load(FUNCTIONS / name) for name in ("i", "s", "w")]


def gateway(
    env: dict[str, str], clock: Clock | None = None
) -> tuple[falcon.testing.TestClient, Registry, list[Function]]:
    registry = Registry()
    app = falcon.asgi.App()
    errors.install(app)
    local = RemoteReplicas.install(registry, app, functions(), env, clock or Clock())
    return falcon.testing.TestClient(app), registry, local


def announcement(*replicas: tuple[str, str]) -> dict[str, object]:
    return {"replicas": [{"function": function, "url": url} for function, url in replicas]}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", None), ("none", frozenset()), ("i, s", frozenset({"i", "s"})), ("w", frozenset({"w"}))],
)
def test_local_functions_are_every_function_unless_named(raw: str, expected: frozenset[str] | None) -> None:
    assert local_functions({"TOMBOLA_LOCAL_FUNCTIONS": raw}) == expected


@pytest.mark.parametrize("raw", ["I", "i;s", "i,,s", "none,i"])
def test_local_functions_must_be_names(raw: str) -> None:
    with pytest.raises(SettingsError, match="TOMBOLA_LOCAL_FUNCTIONS"):
        local_functions({"TOMBOLA_LOCAL_FUNCTIONS": raw})


def test_remote_functions_are_served_but_not_run_locally() -> None:
    _, registry, local = gateway({"TOMBOLA_LOCAL_FUNCTIONS": "s", "TOMBOLA_REPLICA_TOKEN": TOKEN})
    assert [function.name for function in local] == ["s"]
    assert registry.function("i") is not None and registry.function("w") is not None
    assert registry.traffic("w") == {REMOTE_VERSION: 1}
    assert registry.function("s") is None  # the control plane adds the local ones


def test_a_gateway_that_runs_every_function_keeps_them_all() -> None:
    client, registry, local = gateway({"TOMBOLA_REPLICA_TOKEN": TOKEN})
    assert len(local) == 3 and registry.functions() == []
    answer = client.simulate_put(
        "/remote/hosts/10.0.0.7", json=announcement(("w", "http://10.0.0.7:9100")), headers=AUTH
    )
    assert answer.status_code == 409  # w runs on the gateway


def test_an_unknown_local_function_is_refused() -> None:
    with pytest.raises(SettingsError, match="no function called zz"):
        gateway({"TOMBOLA_LOCAL_FUNCTIONS": "i,zz"})


@pytest.mark.parametrize(
    ("env", "headers", "status"),
    [
        ({"TOMBOLA_LOCAL_FUNCTIONS": "none"}, AUTH, 403),
        ({"TOMBOLA_LOCAL_FUNCTIONS": "none", "TOMBOLA_REPLICA_TOKEN": TOKEN}, {}, 401),
        ({"TOMBOLA_LOCAL_FUNCTIONS": "none", "TOMBOLA_REPLICA_TOKEN": TOKEN}, {"Authorization": "Bearer nope"}, 401),
        ({"TOMBOLA_LOCAL_FUNCTIONS": "none", "TOMBOLA_REPLICA_TOKEN": TOKEN}, {"Authorization": TOKEN}, 401),
    ],
)
def test_announcements_need_the_replica_token(env: dict[str, str], headers: dict[str, str], status: int) -> None:
    client, registry, _ = gateway(env)
    answer = client.simulate_put(
        "/remote/hosts/10.0.0.7", json=announcement(("w", "http://10.0.0.7:9100")), headers=headers
    )
    assert answer.status_code == status
    assert set(answer.json) == {"title", "description"}
    assert registry.replicas() == []
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"replica": []}, 400),
        ([], 400),
        ({"replicas": [{"function": "w"}]}, 400),
        ({"replicas": [{"function": "W", "url": "http://10.0.0.7:9100"}]}, 400),
        (announcement(("w", "http://10.0.0.7:9100/path")), 400),
        (announcement(("w", "https://10.0.0.7:9100")), 400),
        (announcement(("w", "http://10.0.0.7")), 400),
        (announcement(("w", "http://10.0.0.7:0")), 400),
        (announcement(("w", "http://10.0.0.7:70000")), 400),
        (announcement(("w", "http://10.0.0.7:9100"), ("i", "http://10.0.0.7:9100")), 400),
        (announcement(("w", "http://10.0.0.7:9100"), ("zz", "http://10.0.0.7:9101")), 404),
        (announcement(("w", "http://10.0.0.7:9100"), ("s", "http://10.0.0.7:9101")), 409),
    ],
)
def test_bad_announcements_are_refused_whole(body: object, status: int) -> None:
    client, registry, _ = gateway({"TOMBOLA_LOCAL_FUNCTIONS": "s", "TOMBOLA_REPLICA_TOKEN": TOKEN})
    answer = client.simulate_put("/remote/hosts/10.0.0.7", json=body, headers=AUTH)
    assert answer.status_code == status, answer.text
    assert set(answer.json) == {"title", "description"}
    assert registry.replicas() == []


def test_malformed_json_is_a_400() -> None:
    client, _, _ = gateway({"TOMBOLA_LOCAL_FUNCTIONS": "none", "TOMBOLA_REPLICA_TOKEN": TOKEN})
    answer = client.simulate_put(
        "/remote/hosts/10.0.0.7", body=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400


def test_a_server_announces_renews_changes_and_withdraws_its_replicas() -> None:
    clock = Clock()
    client, registry, _ = gateway({"TOMBOLA_LOCAL_FUNCTIONS": "none", "TOMBOLA_REPLICA_TOKEN": TOKEN}, clock)
    first = announcement(("w", "http://10.0.0.7:9100"), ("w", "http://10.0.0.7:9101"))
    answer = client.simulate_put("/remote/hosts/10.0.0.7", json=first, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json == {"host": "10.0.0.7", "replicas": ["w@10.0.0.7:9100", "w@10.0.0.7:9101"], "lease": LEASE}
    replicas = registry.replicas("w")
    assert [(replica.version, replica.healthy) for replica in replicas] == [(REMOTE_VERSION, False)] * 2  # until probed

    clock.now += LEASE - 1
    client.simulate_put("/remote/hosts/10.0.0.7", json=first, headers=AUTH)
    assert registry.replicas("w") == replicas  # renewed, the same replicas

    changed = announcement(("w", "http://10.0.0.7:9101"), ("i", "http://10.0.0.7:9102"))
    client.simulate_put("/remote/hosts/10.0.0.7", json=changed, headers=AUTH)
    assert [replica.url for replica in registry.replicas("w")] == ["http://10.0.0.7:9101"]
    assert registry.replicas("w")[0] is replicas[1]
    assert [replica.id for replica in registry.replicas("i")] == ["i@10.0.0.7:9102"]

    assert client.simulate_delete("/remote/hosts/10.0.0.7", headers=AUTH).status_code == 204
    assert registry.replicas() == []
    assert client.simulate_delete("/remote/hosts/10.0.0.7", headers=AUTH).status_code == 204  # idempotent


def test_a_silent_server_is_forgotten_once_its_lease_ends() -> None:
    clock = Clock()
    client, registry, _ = gateway({"TOMBOLA_LOCAL_FUNCTIONS": "none", "TOMBOLA_REPLICA_TOKEN": TOKEN}, clock)
    client.simulate_put("/remote/hosts/10.0.0.7", json=announcement(("w", "http://10.0.0.7:9100")), headers=AUTH)
    clock.now += LEASE + 1
    client.simulate_put("/remote/hosts/10.0.0.8", json=announcement(("w", "http://10.0.0.8:9100")), headers=AUTH)
    assert [replica.id for replica in registry.replicas("w")] == ["w@10.0.0.8:9100"]


@pytest.mark.parametrize(
    ("token", "replicas", "message"),
    [
        ("", ["w=http://10.0.0.7:9100"], "TOMBOLA_REPLICA_TOKEN is not set"),
        (TOKEN, ["w=ftp://10.0.0.7:9100", "i"], "not FUNCTION=http://HOST:PORT: w=ftp://10.0.0.7:9100 i"),
        (TOKEN, ["w=http://10.0.0.7:9100", "i=http://10.0.0.8:9100"], "the replicas of one server"),
    ],
)
def test_the_announcer_refuses_what_it_cannot_announce(token: str, replicas: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.remote", "announce", "--gateway", "http://127.0.0.1:9", *replicas],
        env={**os.environ, "TOMBOLA_REPLICA_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
