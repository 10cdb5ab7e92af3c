"""Plays: the atomic once-per-customer claim and the record of what was won.

A play goes ``claimed`` (B holds it while W draws) → ``played``, or back to
nothing when B gives the claim back. The claim is a row keyed by the customer
id, so the database itself refuses a second one.

Whoever holds proof that the play's message exists settles the claim as
played: B once the broker confirmed the message, W1 and W2 when it reaches
them. When B cannot tell whether its message went out (the confirm never
came), it gives the claim back only if nobody settled it meanwhile; a message
that arrives after that finds no claim of its own play id and changes nothing.
Both steps are one conditional statement each, so the database decides which
came first: either the play counts, and every copy of its message completes
it, or it was given back, and every copy is discarded.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid
from typing import TYPE_CHECKING

import sqlalchemy as sa

from runner.database import plays, utcnow

if TYPE_CHECKING:
    from runner.messages import PlayMessage

log = logging.getLogger("tombola.plays")

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


_FIND = sa.select(plays).where(plays.c.customer_id == sa.bindparam("customer_id"))


def find(engine: sa.Engine, customer_id: int) -> Play | None:
    """The customer's play, if any."""
    with engine.connect() as connection:
        row = connection.execute(_FIND, {"customer_id": customer_id}).first()
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


def release(engine: sa.Engine, customer_id: int, play_id: str) -> bool:
    """Give an unsettled claim back, so the customer may play again; False if it was settled meanwhile."""
    with engine.begin() as connection:
        released = connection.execute(
            plays.delete().where(plays.c.customer_id == customer_id, plays.c.play_id == play_id, plays.c.status == CLAIMED)
        ).rowcount
    return released == 1


def mark_played(engine: sa.Engine, customer_id: int, play_id: str, price: str, played_at: datetime.datetime) -> bool:
    """Settle the claim ``play_id`` as played (again: idempotent); False if it was given back or taken over."""
    with engine.begin() as connection:
        settled = connection.execute(
            plays.update()
            .where(plays.c.customer_id == customer_id, plays.c.play_id == play_id)
            .values(status=PLAYED, price=price, played_at=played_at)
        ).rowcount
    return settled == 1


def settle(engine: sa.Engine, message: PlayMessage) -> bool:
    """A consumer's receipt of a play's message: True if the play stands (now played), False if it was given back."""
    if mark_played(engine, message.id, message.play_id, message.price, message.played_at):
        return True
    log.warning("play given back, message discarded", extra={"customer": message.id, "play_id": message.play_id})
    return False


def attach_picture(engine: sa.Engine, customer_id: int, play_id: str, picture: str) -> None:
    """W1: the stored picture of a settled play."""
    with engine.begin() as connection:
        connection.execute(
            plays.update().where(plays.c.customer_id == customer_id, plays.c.play_id == play_id).values(picture=picture)
        )
