"""kill -9 of a W replica and of a W1 replica under a load of plays: nothing lost, nothing doubled.

W: the gateway takes a replica out of routing on the first connection it
refuses or drops (passive ejection, before any health check), retries the
prize draw — an idempotent GET — on another replica, and the supervisor starts
a replacement. When the dead replica was W's last, the plays it was drawing get
503 and their claims back, and succeed when played again.

W1: a replica killed with a message in hand (the object store is frozen, so the
message cannot finish) never acknowledged it; the broker hands it to the other
W1 replica.

The pack has its own database, broker vhost and Swift server (this module
freezes it).
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from tests.faults import PlayLoad, control, health, replicas, status, wait_for
from tests.outcomes import Accepted, Backends, accepted_answers, assert_exactly_once, play_all, running_pack
from tests.pack import Pack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backends():
    with Backends.with_own_swift("replicas") as fresh:
        yield fresh


@pytest.fixture(scope="module")
def replica_pack(tmp_path_factory, backends, mail_sink):
    home = tmp_path_factory.mktemp("replica-pack")
    env = {
        "TOMBOLA_W_TEMPO": "1",
        "TOMBOLA_SEED_CUSTOMERS": "4000",
        "TOMBOLA_AUTOSCALE": "off",
    }
    with running_pack(home, backends, mail_sink, **env) as pack:
        yield pack


def scale(pack: Pack, function: str, count: int) -> list[dict[str, Any]]:
    """Run ``count`` replicas of ``function``; return them once all are running and healthy."""
    url = f"{pack.internal_url}/v1/functions/{function}/scaling"
    answer = control(pack).put(url, json={"replicas": count}, timeout=60)
    assert answer.status_code == 200, answer.text
    return wait_for(lambda: running(pack, function, count), f"{count} healthy replicas of {function}")


def running(pack: Pack, function: str, count: int) -> list[dict[str, Any]] | None:
    """The replicas of ``function`` when there are ``count``, all running and healthy; else None."""
    found = replicas(pack, function)
    healthy = len(found) == count and all(r["healthy"] and r["state"] == "running" for r in found)
    return found if healthy else None


def routed(pack: Pack, victim: dict[str, Any]) -> bool:
    """True while the gateway may still send requests to ``victim``."""
    return any(r["id"] == victim["id"] and r["healthy"] for r in replicas(pack, victim["function"]))


def replaced(pack: Pack, victim: dict[str, Any], count: int) -> list[dict[str, Any]] | None:
    """The function's replicas once ``count`` run again, healthy, without ``victim``."""
    found = running(pack, victim["function"], count)
    return found if found and victim["id"] not in {r["id"] for r in found} else None


def drawing(pack: Pack, function: str) -> dict[str, Any] | None:
    """A replica of ``function`` with executions in its hands (its own count, not the gateway's), if any."""
    return next((replica for replica in replicas(pack, function) if health(replica)["in_flight"] > 0), None)


def kill(replica: dict[str, Any]) -> float:
    """kill -9 the replica: its process group (an HTTP replica is gunicorn's master and its worker); return when."""
    os.killpg(replica["pid"], signal.SIGKILL)
    return time.monotonic()


def gateway_log(pack: Pack, message: str) -> list[dict[str, Any]]:
    """The JSON lines the gateway logged with ``message``, in order."""
    entries = []
    for line in pack.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == message:
            entries.append(entry)
    return entries


def failures(pack: Pack, replica: dict[str, Any]) -> list[dict[str, Any]]:
    """The requests the gateway sent to ``replica`` that failed on the connection (refused, reset or dropped)."""
    return [entry for entry in gateway_log(pack, "replica failed") if entry["replica"] == replica["id"]]


def accepted_plays(load: PlayLoad) -> dict[int, Accepted]:
    return {a.customer: Accepted(a.body["play_id"], a.body["price"]) for a in load.answers if a.status == 200}


def test_a_killed_w_replica_is_ejected_at_once_replaced_and_no_play_fails(replica_pack, backends, mail_sink):
    pack = replica_pack
    scale(pack, "w", 2)
    with PlayLoad(pack, first_customer=1000, threads=8) as load:
        wait_for(lambda: load.count(200) >= 8, "plays accepted before the kill")
        victim = wait_for(lambda: drawing(pack, "w"), "a W replica drawing prizes")
        killed = kill(victim)
        wait_for(lambda: not routed(pack, victim), "the dead replica out of routing", timeout=10, interval=0.01)
        ejected_after = time.monotonic() - killed
        wait_for(lambda: replaced(pack, victim, 2), "a new W replica in place of the dead one")
        back = time.monotonic()
        wait_for(lambda: load.count(200, since=back) >= 8, "plays accepted on the replacement")
    print(f"\nW replica {victim['id']} out of routing {ejected_after * 1000:.0f} ms after kill -9")

    # The draws in flight on the dead replica were retried on the other one: no customer saw a failure.
    assert [(a.customer, a.status, a.body) for a in load.answers if a.status != 200] == []
    # Ejected by the first request that failed on it, not by a health check. Only plays already in flight at
    # the kill had a draw fail on it (each once at most: the retry goes elsewhere); no later play was sent to it.
    marks = [e["reason"] for e in gateway_log(pack, "replica unhealthy") if e["replica"] == victim["id"]]
    assert len(marks) == 1 and not marks[0].startswith("healthz"), marks
    in_flight = [a for a in load.answers if a.started < killed < a.ended]
    assert 1 <= len(failures(pack, victim)) <= len(in_flight)
    assert_exactly_once(pack, backends, mail_sink, accepted_plays(load))


def test_plays_in_flight_on_the_killed_last_w_replica_get_503_and_their_claim_back(replica_pack, backends, mail_sink):
    pack = replica_pack
    (victim,) = scale(pack, "w", 1)
    with PlayLoad(pack, first_customer=2000, threads=6) as load:
        wait_for(lambda: load.count(200) >= 6, "plays accepted before the kill")
        wait_for(lambda: drawing(pack, "w"), "W drawing prizes")
        killed = kill(victim)
        wait_for(lambda: replaced(pack, victim, 1), "a new W replica in place of the dead one")
        back = time.monotonic()
        wait_for(lambda: load.count(200, since=back) >= 6, "plays accepted on the replacement")

    assert [(a.customer, a.status, a.body) for a in load.answers if a.status not in (200, 503)] == []
    refused = [a for a in load.answers if a.status == 503]
    assert [a for a in refused if a.started < killed], "no play was in flight on W when it was killed"
    assert {(a.body["title"], a.retry_after is not None) for a in refused} == {("Prize worker unavailable", True)}
    # Each refused play gave its claim back: the customer has not played, and the next try succeeds.
    assert [a.customer for a in refused if status(pack, a.customer)["status"] != "not_played"] == []
    retries = play_all(pack, [a.customer for a in refused])
    assert {customer: answer.status_code for customer, answer in retries.items()} == dict.fromkeys(retries, 200)
    assert_exactly_once(pack, backends, mail_sink, accepted_plays(load) | accepted_answers(retries))


def test_a_w1_replica_killed_with_a_message_in_hand_loses_nothing(replica_pack, backends, mail_sink):
    pack = replica_pack
    start = {r["id"]: health(r)["consumed"] for r in scale(pack, "w1", 2)}
    with PlayLoad(pack, first_customer=3000, threads=6) as load:
        wait_for(lambda: load.count(200) >= 6, "plays accepted before the kill")
        backends.swift.freeze()
        try:
            holding = wait_for(
                lambda: running(pack, "w1", 2) if all(health(r)["in_flight"] for r in replicas(pack, "w1")) else None,
                "both W1 replicas stuck storing a picture",
            )
            victim = holding[0]
            finished_by_victim = health(victim)["consumed"] - start[victim["id"]]
            kill(victim)
        finally:
            backends.swift.thaw()
        others = wait_for(lambda: replaced(pack, victim, 2), "a new W1 replica in place of the dead one")
        back = time.monotonic()
        wait_for(lambda: load.count(200, since=back) >= 6, "plays accepted after the kill")

    assert [(a.customer, a.status, a.body) for a in load.answers if a.status != 200] == []
    accepted = accepted_plays(load)
    assert_exactly_once(pack, backends, mail_sink, accepted)
    # The message the victim held went to another replica: every play's message was handled exactly once.
    by_others = sum(health(r)["consumed"] - start.get(r["id"], 0) for r in replicas(pack, "w1"))
    assert {r["id"] for r in replicas(pack, "w1")} == {r["id"] for r in others}
    assert finished_by_victim + by_others == len(accepted)
