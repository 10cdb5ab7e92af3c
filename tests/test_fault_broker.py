"""The message broker restarts or stalls under a load of plays: no accepted play lost, none recorded unaccepted.

The pack runs on a private RabbitMQ node (tests.private_services), never the
machine's shared one, with its own MariaDB database and Swift container.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import MARIADB
from tests.faults import PlayLoad, all_healthy, frozen, mails_by_customer, picture, pids, queue_depth, status, wait_for
from tests.outcomes import (
    CONSUMERS,
    Accepted,
    Backends,
    accepted_answers,
    assert_exactly_once,
    consumed,
    handled_since,
    play,
    play_all,
    running_pack,
)
from tests.pack import Pack
from tests.private_services import PrivateRabbitMQ

pytestmark = pytest.mark.slow

CUSTOMERS_PER_TEST = 500


@pytest.fixture(scope="module")
def broker():
    with PrivateRabbitMQ() as node:
        yield node


@pytest.fixture(scope="module")
def backends(broker, swift_server):
    with MARIADB.scratch_database() as database_url:
        yield Backends(database_url, broker.url, swift_server, f"broker-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def broker_pack(tmp_path_factory, backends, mail_sink):
    home = tmp_path_factory.mktemp("broker-pack")
    with running_pack(home, backends, mail_sink, TOMBOLA_W_TEMPO="0.5", TOMBOLA_SEED_CUSTOMERS="2700") as pack:
        yield pack


def replay_accepted(pack: Pack, customer: int) -> dict[int, Accepted]:
    """Play ``customer`` again (its first play was refused): it must be accepted now."""
    again = play(pack, customer)
    assert again.status_code == 200, again.text
    return accepted_answers({customer: again})


@pytest.mark.parametrize(("outage", "first_customer"), [("restart", 1000), ("crash", 1000 + CUSTOMERS_PER_TEST)])
def test_a_broker_restart_under_load_loses_no_accepted_play_and_records_no_refused_one(
    broker_pack, broker, backends, mail_sink, outage, first_customer
):
    """``restart``: the node stops cleanly (SIGTERM); ``crash``: it is killed (SIGKILL) with plays in flight.

    W1 and W2 are held still meanwhile, so that the node goes down with a backlog of accepted plays in their queues.
    """
    pack = broker_pack
    consumers = pids(pack, CONSUMERS)
    with PlayLoad(pack, first_customer) as load:
        wait_for(lambda: load.count(200) >= 4, "plays accepted before the outage")
        with frozen(*consumers["w1"], *consumers["w2"]):
            # The accepted plays of this backlog must survive the outage: durable queues, persistent messages.
            wait_for(lambda: min(queue_depth(broker.url, name) for name in CONSUMERS) >= 3, "a backlog for W1 and W2")
            if outage == "restart":
                broker.stop()
            else:
                broker.kill()
            down = time.monotonic()
            wait_for(lambda: load.count(503, since=down) >= 4, "plays refused while the broker is down")
            broker.start()
            up = time.monotonic()
        wait_for(lambda: load.count(200, since=up) >= 4, "plays accepted after the restart", timeout=90)

    assert [(a.customer, a.status, a.body) for a in load.answers if a.status not in (200, 503)] == []
    refused = [a for a in load.answers if a.status == 503]
    assert {a.body.get("title") for a in refused} == {"Message broker unavailable"}
    assert all(a.retry_after for a in refused)
    # A refused play gave its claim back: the customer has not played, and may play again now.
    assert [a.customer for a in refused if status(pack, a.customer)["status"] != "not_played"] == []
    retries = play_all(pack, [a.customer for a in refused])
    assert {customer: answer.status_code for customer, answer in retries.items()} == dict.fromkeys(retries, 200)

    accepted = {a.customer: Accepted(a.body["play_id"], a.body["price"]) for a in load.answers if a.status == 200}
    accepted |= accepted_answers(retries)
    assert_exactly_once(pack, backends, mail_sink, accepted)
    # No play recorded but the accepted ones, among every customer this test played.
    played = range(first_customer, first_customer + CUSTOMERS_PER_TEST)
    assert max(a.customer for a in load.answers) in played
    assert {customer for customer in backends.rows() if customer in played} == set(accepted)
    # W1 and W2 reconnected by themselves: the same processes, healthy again.
    assert pids(pack, CONSUMERS) == consumers
    wait_for(lambda: all_healthy(pack, CONSUMERS), "W1 and W2 healthy")


def test_a_play_whose_confirm_never_comes_is_given_back_and_its_late_message_changes_nothing(
    broker_pack, broker, backends, mail_sink
):
    pack, customer = broker_pack, 2500
    before = consumed(pack)
    broker.pause()  # B's publish reaches the node's socket, but no confirm will come in time
    try:
        answer = play(pack, customer)
    finally:
        broker.resume()
    assert answer.status_code == 503, answer.text
    assert answer.json()["title"] == "Message broker unavailable"
    assert status(pack, customer)["status"] == "not_played"
    # The message was in the broker after all: W1 and W2 receive it, find its claim given back, change nothing.
    wait_for(lambda: min(handled_since(pack, before).values()) >= 1, "W1 and W2 got the late message")
    assert status(pack, customer)["status"] == "not_played"
    assert picture(pack, customer) == "ko"
    assert customer not in mails_by_customer(mail_sink)
    assert customer not in backends.rows()
    # The customer plays again: that play, and only that one, counts.
    assert_exactly_once(pack, backends, mail_sink, replay_accepted(pack, customer))


def test_a_broker_that_blocks_publishers_gets_503_and_the_claim_back_not_a_hung_play(broker_pack, broker, backends, mail_sink):
    """A resource alarm: the node takes connections but reads no publish; B gives up within its deadline."""
    pack, customer = broker_pack, 2600
    with broker.publishers_blocked():
        answer = play(pack, customer)
    assert answer.status_code == 503, answer.text
    assert answer.json()["title"] == "Message broker unavailable"
    assert status(pack, customer)["status"] == "not_played"
    assert_exactly_once(pack, backends, mail_sink, replay_accepted(pack, customer))
