"""Plays: the atomic once-per-customer claim and the record of what was won.

A play goes ``claimed`` (B holds it while W draws) → ``played`` (B after the
broker confirmed the message, and W1 when it records the play). The claim is a
row keyed by the customer id, so the database itself refuses a second one.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid

import sqlalchemy as sa

from runner.database import plays, utcnow

CLAIMED = "claimed"
PLAYED = "played"
# A claim older than this was left by a B replica that died mid-play; it may be taken over.
ABANDONED_AFTER = datetime.timedelta(minutes=5)


def picture_key(customer_id: int) -> str:
    """The object-store key of the customer's prize picture."""
    return f"{customer_id}.jpg"


@dataclasses.dataclass(frozen=True)
class Play:
    customer_id: int
    play_id: str
    status: str
    claimed_at: datetime.datetime
    played_at: datetime.datetime | None
    price: str | None
    picture: str | None


def find(engine: sa.Engine, customer_id: int) -> Play | None:
    """The customer's play, if any."""
    with engine.connect() as connection:
        row = connection.execute(sa.select(plays).where(plays.c.customer_id == customer_id)).first()
    return None if row is None else Play(**row._mapping)


def claim(engine: sa.Engine, customer_id: int) -> str | None:
    """Claim the customer's only play; return the new play id, or None if it is taken."""
    play_id = str(uuid.uuid4())
    now = utcnow()
    try:
        with engine.begin() as connection:
            connection.execute(plays.insert().values(customer_id=customer_id, play_id=play_id, status=CLAIMED, claimed_at=now))
        return play_id
    except sa.exc.IntegrityError:
        pass
    with engine.begin() as connection:
        taken_over = connection.execute(
            plays.update()
            .where(plays.c.customer_id == customer_id, plays.c.status == CLAIMED, plays.c.claimed_at < now - ABANDONED_AFTER)
            .values(play_id=play_id, claimed_at=now)
        ).rowcount
    return play_id if taken_over == 1 else None


def release(engine: sa.Engine, customer_id: int, play_id: str) -> None:
    """Give an unfinished claim back, so the customer may play again."""
    with engine.begin() as connection:
        connection.execute(
            plays.delete().where(plays.c.customer_id == customer_id, plays.c.play_id == play_id, plays.c.status == CLAIMED)
        )


def mark_played(engine: sa.Engine, customer_id: int, play_id: str, price: str, played_at: datetime.datetime) -> None:
    """B: the play's message is confirmed by the broker; the customer has played."""
    with engine.begin() as connection:
        connection.execute(
            plays.update()
            .where(plays.c.customer_id == customer_id, plays.c.play_id == play_id)
            .values(status=PLAYED, price=price, played_at=played_at)
        )


def record(
    engine: sa.Engine, customer_id: int, play_id: str, price: str, played_at: datetime.datetime, picture: str
) -> None:
    """W1: record the play and its stored picture; doing it twice changes nothing."""
    values = {"status": PLAYED, "price": price, "played_at": played_at, "picture": picture}
    with engine.begin() as connection:
        updated = connection.execute(
            plays.update().where(plays.c.customer_id == customer_id, plays.c.play_id == play_id).values(**values)
        ).rowcount
        if updated:
            return
        existing = connection.execute(sa.select(plays.c.play_id).where(plays.c.customer_id == customer_id)).first()
        if existing is None:
            connection.execute(plays.insert().values(customer_id=customer_id, play_id=play_id, claimed_at=played_at, **values))
