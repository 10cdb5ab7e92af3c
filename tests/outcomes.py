"""What every play must end with, read from the pack's own backends: exactly once, nothing lost.

An accepted play (B answered 200) ends with one row ``played`` under the play id
B answered, its price in S, one picture object in the store (P serves it) and
one admin mail. A refused play leaves nothing: no row, no object, no mail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import sqlalchemy as sa
import swiftclient

from runner.database import plays as plays_table
from runner.plays import picture_key
from tests.conftest import MARIADB, rabbitmq_vhost
from tests.faults import dead_letters, health, mails_by_customer, picture, queue_depth, replicas, status, wait_for
from tests.mailsink import MailSink
from tests.pack import Pack
from tests.swift_server import SwiftServer

CONSUMERS = ("w1", "w2")


@dataclasses.dataclass(frozen=True)
class Accepted:
    """What B answered for an accepted play."""

    play_id: str
    price: str


@dataclasses.dataclass(frozen=True)
class Backends:
    """Where one pack keeps its state: its own database, broker vhost and Swift container."""

    database_url: str
    broker_url: str
    swift: SwiftServer
    container: str

    def env(self) -> dict[str, str]:
        """The pack's TOMBOLA_* variables for these backends."""
        return {
            "TOMBOLA_DATABASE_URL": self.database_url,
            "TOMBOLA_BROKER_URL": self.broker_url,
            "TOMBOLA_CONTAINER": self.container,
            **self.swift.settings_env("swift"),
        }

    @classmethod
    @contextlib.contextmanager
    def fresh(cls, swift: SwiftServer, name: str) -> Iterator[Backends]:
        """A new MariaDB database and RabbitMQ vhost (dropped afterwards), and a new container on ``swift``."""
        with MARIADB.scratch_database() as database_url, rabbitmq_vhost() as broker_url:
            yield cls(database_url, broker_url, swift, f"{name}-{uuid.uuid4().hex[:8]}")

    @classmethod
    @contextlib.contextmanager
    def with_own_swift(cls, name: str) -> Iterator[Backends]:
        """Like ``fresh``, on a Swift server of their own: a test may stop it."""
        with SwiftServer() as swift, cls.fresh(swift, name) as fresh:
            yield fresh

    def rows(self) -> dict[int, tuple[str, str]]:
        """Every play row: customer → (status, play id)."""
        engine = sa.create_engine(self.database_url, poolclass=sa.NullPool)
        try:
            with engine.connect() as connection:
                columns = (plays_table.c.customer_id, plays_table.c.status, plays_table.c.play_id)
                found = connection.execute(sa.select(*columns))
                return {row.customer_id: (row.status, row.play_id) for row in found}
        finally:
            engine.dispose()

    def objects(self) -> set[str]:
        """The names of the objects in the pack's container (none when it does not exist yet)."""
        swift = self.swift
        connection = swiftclient.Connection(authurl=swift.auth_url, user=swift.user, key=swift.key, retries=1)
        try:
            _, listing = connection.get_container(self.container, full_listing=True)
        except swiftclient.ClientException as error:
            if error.http_status == 404:
                return set()
            raise
        finally:
            connection.close()
        return {item["name"] for item in listing}


def play(pack: Pack, customer: int) -> requests.Response:
    """One play of ``customer`` through the public listener."""
    return requests.post(f"{pack.url}/srvb/user/{customer}", timeout=60)


def play_at_once(pack: Pack, customers: Sequence[int]) -> list[requests.Response]:
    """A play of each item of ``customers`` (the same one several times, if so), all released at the same instant."""
    if not customers:
        return []
    start = threading.Barrier(len(customers))

    def play_when_all_ready(customer: int) -> requests.Response:
        start.wait(timeout=30)
        return play(pack, customer)

    with ThreadPoolExecutor(len(customers)) as pool:
        return list(pool.map(play_when_all_ready, customers))


def play_all(pack: Pack, customers: Sequence[int]) -> dict[int, requests.Response]:
    """One play of each of ``customers`` (distinct), all at once: customer → B's answer."""
    return dict(zip(customers, play_at_once(pack, customers)))


def accepted_answers(answers: Mapping[int, requests.Response]) -> dict[int, Accepted]:
    """The accepted plays among ``answers`` (customer → B's answer)."""
    return {
        customer: Accepted(answer.json()["play_id"], answer.json()["price"])
        for customer, answer in answers.items()
        if answer.status_code == 200
    }


def consumed(pack: Pack) -> dict[str, int]:
    """Messages W1's and W2's running replicas handled with a 2xx answer, per function."""
    return {name: sum(health(replica)["consumed"] for replica in replicas(pack, name)) for name in CONSUMERS}


def handled_since(pack: Pack, before: Mapping[str, int]) -> dict[str, int]:
    """Messages W1's and W2's replicas handled since ``consumed`` answered ``before``."""
    return {name: count - before[name] for name, count in consumed(pack).items()}


@contextlib.contextmanager
def running_pack(home: Path, backends: Backends, mail_sink: MailSink, **env: str) -> Iterator[Pack]:
    """``tombola up`` on ``backends``, mailing to ``mail_sink``, no rate limit on plays; ``env`` adds to it."""
    mail = {
        "TOMBOLA_MAIL_URL": mail_sink.url,
        "TOMBOLA_MAIL_DOMAIN": "shop.test",
        "TOMBOLA_MAIL_API_KEY": mail_sink.key,
    }
    pack = Pack(home, {**backends.env(), **mail, "TOMBOLA_PLAY_RATE": "0", **env}).start()
    try:
        yield pack
    finally:
        assert pack.stop() == 0, pack.log()


def settled(pack: Pack, backends: Backends) -> bool:
    """No message left in W1's or W2's queue and no replica of theirs busy with one."""
    if any(queue_depth(backends.broker_url, name) for name in CONSUMERS):
        return False
    return all(health(replica)["in_flight"] == 0 for name in CONSUMERS for replica in replicas(pack, name))


def assert_exactly_once(
    pack: Pack,
    backends: Backends,
    mail_sink: MailSink,
    accepted: Mapping[int, Accepted],
    refused: Collection[int] = (),
    timeout: float = 90.0,
) -> None:
    """Each accepted play complete exactly once, each refused one without a trace, no dead letter.

    Rows and objects are compared for the customers of ``accepted`` and
    ``refused`` (earlier tests may have left their own); the mail sink holds
    this test's mails only.
    """
    customers = set(accepted) | set(refused)
    pictures = {picture_key(customer) for customer in accepted}
    wait_for(lambda: set(accepted) <= set(mails_by_customer(mail_sink)), "a mail for every accepted play", timeout)
    wait_for(lambda: pictures <= backends.objects(), "a picture object for every accepted play", timeout)
    wait_for(lambda: settled(pack, backends), "W1's and W2's queues drained", timeout)

    rows = {customer: row for customer, row in backends.rows().items() if customer in customers}
    assert rows == {customer: ("played", expected.play_id) for customer, expected in accepted.items()}
    assert backends.objects() & {picture_key(customer) for customer in customers} == pictures
    assert mails_by_customer(mail_sink) == dict.fromkeys(accepted, 1)
    assert dead_letters(backends.broker_url) == 0
    for customer, expected in accepted.items():
        shown = status(pack, customer)
        assert (shown["status"], shown["price"]) == ("played", expected.price), (customer, shown)
        assert picture(pack, customer) == "ok", customer
    for customer in refused:
        assert status(pack, customer)["status"] == "not_played", customer
        assert picture(pack, customer) == "ko", customer
