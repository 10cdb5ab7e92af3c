"""The claim that makes a play happen once per customer, on every database."""

from __future__ import annotations

import concurrent.futures
import datetime

import pytest
import sqlalchemy as sa

from runner import database, plays


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'plays.db'}"
    else:
        url = request.getfixturevalue(f"{request.param}_url")
    engine = database.create_engine(url, pool_size=20)
    database.metadata.drop_all(engine)
    database.migrate(engine, seed=10)
    yield engine
    engine.dispose()


def test_concurrent_claims_give_one_play(engine):
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        claims = list(pool.map(lambda _: plays.claim(engine, 3), range(40)))
    assert len([c for c in claims if c is not None]) == 1


def test_release_gives_the_play_back(engine):
    play_id = plays.claim(engine, 4)
    assert plays.claim(engine, 4) is None
    plays.release(engine, 4, play_id)
    assert plays.claim(engine, 4) is not None


def test_a_played_claim_is_never_released(engine):
    play_id = plays.claim(engine, 5)
    plays.mark_played(engine, 5, play_id, "Mug", database.utcnow())
    plays.release(engine, 5, play_id)
    assert plays.find(engine, 5).status == plays.PLAYED


def test_an_abandoned_claim_can_be_taken_over(engine):
    play_id = plays.claim(engine, 6)
    old = database.utcnow() - plays.ABANDONED_AFTER - datetime.timedelta(seconds=1)
    with engine.begin() as connection:
        connection.execute(database.plays.update().where(database.plays.c.customer_id == 6).values(claimed_at=old))
    new_id = plays.claim(engine, 6)
    assert new_id not in (None, play_id)


def test_record_is_idempotent(engine):
    moment = datetime.datetime(2026, 11, 22, 9, 0, 0)
    play_id = "6f1c0a52-1b8e-4a55-9a3f-3d1f0f5a0c11"
    for _ in range(3):
        plays.record(engine, 7, play_id, "Mug", moment, "7.jpg")
    with engine.connect() as connection:
        rows = connection.execute(sa.select(database.plays).where(database.plays.c.customer_id == 7)).all()
    assert len(rows) == 1 and rows[0].status == plays.PLAYED and rows[0].picture == "7.jpg"
