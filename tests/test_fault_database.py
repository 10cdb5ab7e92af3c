"""The database goes down and comes back: clear 503s meanwhile, recovery without restarting anything, nothing lost.

The pack runs on a private PostgreSQL cluster (tests.private_services), never
the machine's shared one, with its own vhost of the shared RabbitMQ and its
own Swift container.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import rabbitmq_vhost
from tests.faults import all_healthy, frozen, health, mails_by_customer, picture, pids, queue_depth, replicas, status, wait_for
from tests.outcomes import Backends, accepted_answers, assert_exactly_once, play, play_all, running_pack
from tests.pack import Pack
from tests.private_services import PrivatePostgres

pytestmark = pytest.mark.slow

FUNCTIONS = ("i", "s", "b", "p", "w", "w1", "w2")
DATABASE_PATHS = (("GET", "/srvi/user/{}"), ("GET", "/srvs/user/{}"), ("POST", "/srvb/user/{}"))


@pytest.fixture(scope="module")
def postgres():
    with PrivatePostgres() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def backends(postgres, swift_server):
    with rabbitmq_vhost() as broker_url:
        yield Backends(postgres.url, broker_url, swift_server, f"database-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def database_pack(tmp_path_factory, backends, mail_sink):
    home = tmp_path_factory.mktemp("database-pack")
    with running_pack(home, backends, mail_sink, TOMBOLA_W_TEMPO="0.5", TOMBOLA_SEED_CUSTOMERS="1000") as pack:
        yield pack


@contextlib.contextmanager
def database_down(postgres: PrivatePostgres) -> Iterator[None]:
    postgres.stop()
    try:
        yield
    finally:
        postgres.start()


def unexpected_errors(pack: Pack) -> list[str]:
    """Lines where a replica logged an unexpected error (the path of a 500) or a traceback."""
    return [
        line
        for log in (pack.home / "logs").rglob("*.log")
        for line in log.read_text(errors="replace").splitlines()
        if "unexpected error" in line or "Traceback" in line
    ]


def test_database_down_gives_503_json_and_it_recovers_without_a_restart(database_pack, postgres, backends, mail_sink):
    pack = database_pack
    before = accepted_answers({11: play(pack, 11)})
    wait_for(lambda: picture(pack, 11) == "ok", "the picture of the play before the outage")
    processes = pids(pack, FUNCTIONS)

    with database_down(postgres):
        for method, path in DATABASE_PATHS:
            answer = requests.request(method, pack.url + path.format(12), timeout=30)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["title"] == "Database unavailable"
            assert int(answer.headers["Retry-After"]) > 0
            assert "Traceback" not in answer.text
        # P reads the object store only: pictures are still served.
        assert picture(pack, 11) == "ok"
        assert requests.get(f"{pack.url}/healthz", timeout=5).json()["status"] == "ok"

    # The very same requests succeed again, every process as it was.
    assert requests.get(f"{pack.url}/srvi/user/12", timeout=30).status_code == 200
    assert status(pack, 12)["status"] == "not_played"
    after = accepted_answers({12: play(pack, 12)})
    assert set(after) == {12}
    assert_exactly_once(pack, backends, mail_sink, before | after)
    assert pids(pack, FUNCTIONS) == processes
    assert pack.process.poll() is None
    assert unexpected_errors(pack) == []


def test_w1_retries_while_the_database_is_down_and_completes_every_play_after(database_pack, postgres, backends, mail_sink):
    pack, customers = database_pack, [21, 22, 23, 24, 25]
    (w1,) = replicas(pack, "w1")
    with frozen(w1["pid"]):  # the plays wait for W1 in its queue
        answers = play_all(pack, customers)
        assert {customer: answer.status_code for customer, answer in answers.items()} == dict.fromkeys(customers, 200)
        wait_for(lambda: queue_depth(backends.broker_url, "w1") >= len(customers) - 1, "the plays queued for W1")
        # W2 mails them meanwhile (its copy of each message is its own), then the database goes.
        wait_for(lambda: set(customers) <= set(mails_by_customer(mail_sink)), "a mail for every play")
        postgres.stop()
    try:
        wait_for(lambda: health(w1)["failed"] >= 2, "W1 failing and retrying while the database is down")
        assert health(w1)["dead_lettered"] == 0
        assert all(picture(pack, customer) == "ko" for customer in customers)
    finally:
        postgres.start()

    assert_exactly_once(pack, backends, mail_sink, accepted_answers(answers))
    assert health(w1)["dead_lettered"] == 0
    assert pids(pack, ("w1",)) == {"w1": {w1["pid"]}}
    wait_for(lambda: all_healthy(pack, ("w1",)), "W1 healthy again")
    assert unexpected_errors(pack) == []
