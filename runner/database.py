"""The pack's database: engine, schema and the seed of generated customers.

SQLAlchemy Core only, every statement parametrised. Works on SQLite (the
embedded default), MariaDB/MySQL (``mysql+pymysql://``) and PostgreSQL
(``postgresql+psycopg://``).
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from runner.settings import DEFAULT_POOL_SIZE

SEED_CUSTOMERS = 10_000

metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("firstname", sa.String(64), nullable=False),
    sa.Column("lastname", sa.String(64), nullable=False),
    sa.Column("email", sa.String(255), nullable=False),
)

plays = sa.Table(
    "plays",
    metadata,
    sa.Column("customer_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("play_id", sa.String(36), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("claimed_at", sa.DateTime, nullable=False),
    sa.Column("played_at", sa.DateTime),
    sa.Column("price", sa.String(64)),
    sa.Column("picture", sa.String(128)),
)

mails = sa.Table(
    "mails",
    metadata,
    sa.Column("play_id", sa.String(36), primary_key=True),
    sa.Column("customer_id", sa.Integer, nullable=False),
    sa.Column("sent_at", sa.DateTime, nullable=False),
)

FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "John",
    "Radia", "Guido", "Sophie", "Edsger", "Hedy", "Donald", "Katherine", "Tim", "Anita", "Vint",
    "Joan", "Niklaus", "Karen", "Bjarne", "Lynn", "Leslie", "Mary", "Claude", "Jean", "Yukihiro",
)
LAST_NAMES = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
    "Allen", "Backus", "Perlman", "Rossum", "Wilson", "Dijkstra", "Lamarr", "Knuth", "Johnson",
    "Berners-Lee", "Borg", "Cerf", "Clarke", "Wirth", "Jones", "Stroustrup", "Conway", "Lamport",
    "Keller", "Shannon", "Bartik", "Matsumoto", "Kay", "Goldberg", "Sammet", "Engelbart",
)


def utcnow() -> datetime.datetime:
    """The current time in UTC, without tzinfo (as every backend stores it)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def isoformat(moment: datetime.datetime | None) -> str | None:
    """A stored UTC time as ISO 8601 with its offset."""
    if moment is None:
        return None
    return moment.replace(tzinfo=datetime.UTC).isoformat(timespec="seconds")


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> sa.Engine:
    """An engine that suits many processes and, on a database server, survives its restarts (pre-ping).

    On a server, the pool keeps ``pool_size`` connections open and makes no
    more: a request beyond them waits for one (at most 5 s). Connections made
    past the pool's size would be closed as soon as they are returned, and a
    new connection costs far more than the wait (a TLS context, a handshake).
    SQLite is a file: its connections never go stale, so they are not pinged.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 10})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=1800,
        pool_timeout=5,
    )


def generated_customer(customer_id: int) -> dict[str, object]:
    """The deterministic customer number ``customer_id`` of the seed."""
    first = FIRST_NAMES[customer_id % len(FIRST_NAMES)]
    last = LAST_NAMES[(customer_id // len(FIRST_NAMES)) % len(LAST_NAMES)]
    email = f"{first}.{last}.{customer_id}@example.com".lower()
    return {"id": customer_id, "firstname": first, "lastname": last, "email": email}


def migrate(engine: sa.Engine, seed: int = SEED_CUSTOMERS) -> None:
    """Create the schema if missing and seed the customers table on first run."""
    metadata.create_all(engine, checkfirst=True)
    with engine.begin() as connection:
        if connection.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one():
            return
        rows = [generated_customer(n) for n in range(1, seed + 1)]
        for start in range(0, len(rows), 1000):
            connection.execute(customers.insert(), rows[start:start + 1000])
