"""The object store goes down: P answers storage_unavailable, plays go on, W1 waits it out, nothing is lost.

The pack's Swift server is its own (tests.swift_server.SwiftServer), stopped and
started again on the same ports and data. The pack gives a message two attempts
and retries fast (TOMBOLA_MAX_ATTEMPTS=2, TOMBOLA_RETRY_BACKOFF=0.1): were the
failures of an outage counted as attempts, W1 would dead-letter its plays within
a second. An unavailable backend (503) costs no attempt (runner.queue): W1
retries, with a backoff capped at 30 s, until the store is back.
"""

from __future__ import annotations

import pytest
import requests

from tests.faults import dead_letters, health, mails_by_customer, picture, replicas, status, wait_for
from tests.outcomes import Backends, accepted_answers, assert_exactly_once, play_all, running_pack
from tests.pack import Pack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backends():
    with Backends.with_own_swift("store") as fresh:
        yield fresh


@pytest.fixture(scope="module")
def store_pack(tmp_path_factory, backends, mail_sink):
    home = tmp_path_factory.mktemp("store-pack")
    env = {
        "TOMBOLA_W_TEMPO": "0.5",
        "TOMBOLA_SEED_CUSTOMERS": "100",
        "TOMBOLA_MAX_ATTEMPTS": "2",
        "TOMBOLA_RETRY_BACKOFF": "0.1",
    }
    with running_pack(home, backends, mail_sink, **env) as pack:
        yield pack


def w1_counters(pack: Pack) -> dict[str, int]:
    """W1's counters (consumed, failed, dead_lettered), summed over its replicas."""
    totals = {"consumed": 0, "failed": 0, "dead_lettered": 0}
    for replica in replicas(pack, "w1"):
        answer = health(replica)
        for name in totals:
            totals[name] += answer[name]
    return totals


def test_an_object_store_outage_refuses_pictures_but_loses_no_play(store_pack, backends, mail_sink):
    pack = store_pack
    before = play_all(pack, range(1, 4))
    assert {c: a.status_code for c, a in before.items()} == dict.fromkeys(before, 200)
    wait_for(lambda: all(picture(pack, c) == "ok" for c in before), "pictures of the plays before the outage")

    backends.swift.pause()
    try:
        shown = requests.get(f"{pack.url}/srvp/user/1", timeout=10)
        assert shown.status_code == 503 and shown.json() == {"status": "storage_unavailable"}, shown.text
        assert shown.headers["Retry-After"]
        image = requests.get(f"{pack.url}/srvp/user/1/image", timeout=10)
        assert image.status_code == 503 and image.json()["title"] == "Object store unavailable", image.text

        failed_before = w1_counters(pack)["failed"]
        during = play_all(pack, range(10, 14))
        assert {c: a.status_code for c, a in during.items()} == dict.fromkeys(during, 200)
        assert {status(pack, c)["status"] for c in during} == {"played"}
        # W2 needs no store: the admins hear of each play at once.
        wait_for(lambda: set(during) <= set(mails_by_customer(mail_sink)), "the mails of the plays during the outage")
        # W1 keeps retrying, far past TOMBOLA_MAX_ATTEMPTS, and dead-letters nothing.
        wait_for(
            lambda: w1_counters(pack)["failed"] - failed_before >= 3 * len(during),
            "W1 retrying each play three times or more",
        )
        assert w1_counters(pack)["dead_lettered"] == 0 and dead_letters(backends.broker_url) == 0
        assert {picture(pack, c) for c in during} == {"storage_unavailable"}
    finally:
        backends.swift.resume()

    after = play_all(pack, range(20, 23))
    assert {c: a.status_code for c, a in after.items()} == dict.fromkeys(after, 200)
    assert_exactly_once(pack, backends, mail_sink, accepted_answers(before | during | after))
