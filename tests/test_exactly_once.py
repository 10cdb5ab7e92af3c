"""Exactly once, through the gateway, on RabbitMQ, MariaDB and Swift.

A hundred simultaneous plays of one customer make one play; two hundred
customers playing at the same moment each get their play recorded, pictured
and mailed exactly once. The pack has its own database, broker vhost and Swift
container, so every row, message and object seen here is its own.

Why the 99 losers of the race are all 409, never 503: B claims the play (one
atomic insert) before it calls W, so only the winner ever reaches W; B takes
1000 executions at once per replica, and the gateway's rate limit per client is
off (the test's threads share one address).

W runs one replica (the autoscaler is off, so the counts stay put): a replica
holds its slow calls as greenlets, up to 1000 at once, and 200 fit.
"""

from __future__ import annotations

import pytest

from tests.outcomes import (
    CONSUMERS,
    Backends,
    accepted_answers,
    assert_exactly_once,
    consumed,
    handled_since,
    play_all,
    play_at_once,
    running_pack,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backends(swift_server):
    with Backends.fresh(swift_server, "once") as fresh:
        yield fresh


@pytest.fixture(scope="module")
def once_pack(tmp_path_factory, backends, mail_sink):
    home = tmp_path_factory.mktemp("once-pack")
    env = {
        "TOMBOLA_W_TEMPO": "0.5",
        "TOMBOLA_SEED_CUSTOMERS": "1000",
        "TOMBOLA_AUTOSCALE": "off",
    }
    with running_pack(home, backends, mail_sink, **env) as pack:
        yield pack


def test_a_hundred_simultaneous_plays_of_one_customer_make_exactly_one_play(once_pack, backends, mail_sink):
    customer = 42
    before = consumed(once_pack)
    answers = play_at_once(once_pack, [customer] * 100)

    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] + [409] * 99, codes
    assert {answer.json()["title"] for answer in answers if answer.status_code == 409} == {"Already played"}
    (winner,) = [answer for answer in answers if answer.status_code == 200]
    assert_exactly_once(once_pack, backends, mail_sink, accepted_answers({customer: winner}))
    assert handled_since(once_pack, before) == dict.fromkeys(CONSUMERS, 1)


def test_two_hundred_players_at_once_each_get_one_status_one_picture_one_mail(once_pack, backends, mail_sink):
    customers = list(range(101, 301))
    before = consumed(once_pack)
    answers = play_all(once_pack, customers)

    # 503 (W or the broker saturated, the claim given back) is the only refusal allowed; never a 5xx of another kind.
    codes = {customer: answer.status_code for customer, answer in answers.items()}
    assert {customer: code for customer, code in codes.items() if code not in (200, 503)} == {}
    accepted = accepted_answers(answers)
    refused = [customer for customer, answer in answers.items() if answer.status_code == 503]
    assert accepted, "no play was accepted"
    assert_exactly_once(once_pack, backends, mail_sink, accepted, refused)
    # One message per accepted play reached W1 and W2, and each was handled once.
    assert handled_since(once_pack, before) == dict.fromkeys(CONSUMERS, len(accepted))
