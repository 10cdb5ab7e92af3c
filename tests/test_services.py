"""The test infrastructure itself: services up, scratch databases and vhost usable and dropped."""

from __future__ import annotations

import subprocess
import sys
import time

import kombu
import pytest
import sqlalchemy as sa

from tests import services
from tests.conftest import MARIADB, POSTGRES, DatabaseServer


def test_services_check_is_quick_when_all_is_up():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tests.services"], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0].split()[0] for line in lines] == ["MariaDB", "PostgreSQL", "RabbitMQ", "Chromium"]
    assert elapsed < 2.0, f"took {elapsed:.2f} s"


def test_a_closed_port_does_not_answer():
    assert not services.answers(1)


@pytest.mark.parametrize("fixture", ["mariadb_url", "postgres_url"])
def test_scratch_database_accepts_create_insert_select(request, fixture):
    url = request.getfixturevalue(fixture)
    assert "/tombola_test_" in url
    engine = sa.create_engine(url)
    table = sa.Table(
        "probe", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(32))
    )
    try:
        table.create(engine)
        with engine.begin() as connection:
            connection.execute(table.insert(), [{"id": 1, "name": "héllo"}, {"id": 2, "name": "world"}])
        with engine.connect() as connection:
            rows = connection.execute(sa.select(table.c.name).order_by(table.c.id)).scalars().all()
        assert rows == ["héllo", "world"]
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def _databases(server: DatabaseServer, listing: str) -> set[str]:
    engine = server.admin_engine()
    with engine.connect() as connection:
        names = set(connection.execute(sa.text(listing)).scalars())
    engine.dispose()
    return names


@pytest.mark.parametrize(
    ("server", "listing"),
    [
        (MARIADB, "SELECT schema_name FROM information_schema.schemata"),
        (POSTGRES, "SELECT datname FROM pg_database"),
    ],
    ids=["mariadb", "postgres"],
)
def test_scratch_database_is_dropped_even_while_in_use(server, listing):
    with server.scratch_database() as url:
        name = url.rsplit("/", 1)[1]
        assert name in _databases(server, listing)
        engine = sa.create_engine(url)
        connection = engine.connect()
        connection.execute(sa.text("CREATE TABLE held (id INTEGER)"))
        connection.execute(sa.text("SELECT id FROM held")).all()  # a transaction left open on it
    try:
        assert name not in _databases(server, listing)
    finally:
        connection.invalidate()
        engine.dispose()


def test_vhost_carries_a_kombu_round_trip(rabbitmq_url):
    assert rabbitmq_url.startswith("amqp://guest:guest@127.0.0.1:5672/tombola_test_")
    queue = kombu.Queue("probe", kombu.Exchange("probe", type="direct"), routing_key="probe", auto_delete=True)
    received: list[object] = []

    def receive(body: object, message: kombu.Message) -> None:
        received.append(body)
        message.ack()

    with (
        kombu.Connection(rabbitmq_url, connect_timeout=5) as connection,
        connection.Consumer(queue, callbacks=[receive]),
    ):
        connection.Producer().publish(
            {"play": 1}, exchange=queue.exchange, routing_key="probe", declare=[queue], serializer="json"
        )
        connection.drain_events(timeout=5)
    assert received == [{"play": 1}]
