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
    assert plays.mark_played(engine, 5, play_id, "Mug", database.utcnow())
    assert not plays.release(engine, 5, play_id)
    assert plays.find(engine, 5).status == plays.PLAYED


def test_an_abandoned_claim_can_be_taken_over(engine):
    play_id = plays.claim(engine, 6)
    old = database.utcnow() - plays.ABANDONED_AFTER - datetime.timedelta(seconds=1)
    with engine.begin() as connection:
        connection.execute(database.plays.update().where(database.plays.c.customer_id == 6).values(claimed_at=old))
    new_id = plays.claim(engine, 6)
    assert new_id not in (None, play_id)


def test_settling_is_idempotent_and_attaches_the_picture(engine):
    moment = datetime.datetime(2026, 11, 22, 9, 0, 0)
    play_id = plays.claim(engine, 7)
    for _ in range(3):
        assert plays.mark_played(engine, 7, play_id, "Mug", moment)
    plays.attach_picture(engine, 7, play_id, "7.jpg")
    with engine.connect() as connection:
        rows = connection.execute(sa.select(database.plays).where(database.plays.c.customer_id == 7)).all()
    assert len(rows) == 1 and rows[0].status == plays.PLAYED and rows[0].picture == "7.jpg"


def test_a_claim_given_back_is_never_settled(engine):
    play_id = plays.claim(engine, 8)
    assert plays.release(engine, 8, play_id)
    assert not plays.mark_played(engine, 8, play_id, "Mug", database.utcnow())
    assert plays.find(engine, 8) is None


def test_release_and_settle_race_has_one_winner(engine):
    """B giving back an unconfirmed play while W1 settles it: exactly one of them wins, whatever the order."""
    for customer in range(1, 6):
        play_id = plays.claim(engine, customer)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            released = pool.submit(plays.release, engine, customer, play_id)
            settled = pool.submit(plays.mark_played, engine, customer, play_id, "Mug", database.utcnow())
        assert released.result() != settled.result()
        play = plays.find(engine, customer)
        assert (play is None) == released.result()


@pytest.mark.parametrize("server", ["mariadb", "postgres"])
def test_a_busy_pool_waits_for_its_connections_instead_of_opening_and_closing_more(request, server):
    engine = database.create_engine(request.getfixturevalue(f"{server}_url"), pool_size=3)
    opened = []
    sa.event.listen(engine, "connect", lambda *_: opened.append(1))

    def query(_: int) -> int:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT 1")).scalar_one()

    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            assert sum(pool.map(query, range(240))) == 240
    finally:
        engine.dispose()
    assert len(opened) <= 3
