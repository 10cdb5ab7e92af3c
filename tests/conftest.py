"""Session fixtures on the real services: scratch databases, a broker vhost, a mail sink.

``python -m tests.services`` (run by ``make test``) brings the services up
first. Every name made here is ``tombola_test_<hex>`` and is dropped at the
end of the session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import subprocess
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, sync_playwright

from tests.mailsink import MailSink
from tests.pack import Pack
from tests.services import CHROMIUM
from tests.swift_server import swift_server  # noqa: F401 (a session fixture: Swift with its S3 API)

RABBITMQ_SERVER = "amqp://guest:guest@127.0.0.1:5672"
RABBITMQCTL_TIMEOUT = 60


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Chromium's flags on a machine without a network (no background fetches) and as root (no sandbox)."""


def scratch_name() -> str:
    return f"tombola_test_{secrets.token_hex(6)}"


def drop_mariadb(connection: sa.Connection, name: str, quoted: str) -> None:
    """MariaDB has no ``DROP DATABASE ... FORCE``: end the connections still using it first."""
    others = connection.execute(
        sa.text("SELECT id FROM information_schema.processlist WHERE db = :name AND id <> CONNECTION_ID()"),
        {"name": name},
    )
    for thread_id in others.scalars().all():
        with contextlib.suppress(sa.exc.OperationalError):  # it may have ended meanwhile
            connection.execute(sa.text("KILL CONNECTION :id"), {"id": thread_id})
    connection.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}"))


def drop_postgres(connection: sa.Connection, name: str, quoted: str) -> None:
    connection.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))


@dataclasses.dataclass(frozen=True)
class DatabaseServer:
    """A database server the tests may create scratch databases on."""

    url: str
    admin_database: str
    create: str
    drop: Callable[[sa.Connection, str, str], None]

    def admin_engine(self) -> sa.Engine:
        return sa.create_engine(
            f"{self.url}/{self.admin_database}", isolation_level="AUTOCOMMIT", poolclass=sa.NullPool
        )

    @contextlib.contextmanager
    def scratch_database(self) -> Iterator[str]:
        """Create a fresh database; yield its SQLAlchemy URL; drop it, whoever is still connected."""
        engine = self.admin_engine()
        name = scratch_name()
        quoted = engine.dialect.identifier_preparer.quote(name)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(self.create.format(quoted)))
        except sa.exc.OperationalError as error:
            pytest.fail(f"cannot create a database on {self.url} (run `python -m tests.services`): {error}")
        try:
            yield f"{self.url}/{name}"
        finally:
            with engine.connect() as connection:
                self.drop(connection, name, quoted)
            engine.dispose()


MARIADB = DatabaseServer(
    url="mysql+pymysql://root@127.0.0.1:3306",
    admin_database="",
    create="CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    drop=drop_mariadb,
)
POSTGRES = DatabaseServer(
    url="postgresql+psycopg://postgres@127.0.0.1:5432",
    admin_database="postgres",
    create="CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0",
    drop=drop_postgres,
)


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database for this session, as a SQLAlchemy URL."""
    with MARIADB.scratch_database() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, as a SQLAlchemy URL."""
    with POSTGRES.scratch_database() as url:
        yield url


def rabbitmqctl(*args: str) -> None:
    """Run one ``rabbitmqctl`` command (about half a second each); fail the test setup if it fails."""
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=RABBITMQCTL_TIMEOUT, check=True
        )
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or error
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed (run `python -m tests.services`): {detail}")


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh RabbitMQ vhost, ``guest`` allowed everything on it, as an AMQP URL; deleted afterwards."""
    vhost = scratch_name()
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"{RABBITMQ_SERVER}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this session."""
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (``make test`` installs it).

    Per module: while Playwright's sync API is open, its event loop runs in the
    main thread, and falcon.testing's ASGI simulation refuses to run.
    """
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    """A Mailgun-compatible sink on a free loopback port; emptied before every test that uses it."""
    with MailSink(key=f"key-{secrets.token_hex(16)}") as sink:
        yield sink


@pytest.fixture(autouse=True)
def _fresh_mail_sink(request: pytest.FixtureRequest) -> None:
    """Each test sees its own mails only, and no failure or slow-down left by another."""
    if "mail_sink" in request.fixturenames:
        request.getfixturevalue("mail_sink").reset()


@pytest.fixture(scope="session")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    """The whole pack on embedded defaults, as ``make run`` starts it, with W's tempo at one second."""
    running = Pack(tmp_path_factory.mktemp("pack"), {"TOMBOLA_W_TEMPO": "1"}).start()
    yield running
    assert running.stop() == 0, running.log()
