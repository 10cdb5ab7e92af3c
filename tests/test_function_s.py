"""S: the play status of a customer."""

from __future__ import annotations

import datetime

from runner import plays
from runner.database import create_engine
from tests.support import function_client, make_settings, migrated


def test_status_follows_the_play(tmp_path):
    settings = migrated(make_settings(tmp_path))
    client = function_client("s", settings)
    engine = create_engine(settings.database_url)

    assert client.simulate_get("/user/5").json == {"id": 5, "status": "not_played", "played_at": None, "price": None}
    play_id = plays.claim(engine, 5)
    assert client.simulate_get("/user/5").json["status"] == "playing"
    plays.mark_played(engine, 5, play_id, "Mug", datetime.datetime(2026, 11, 22, 10, 30, 0))
    answer = client.simulate_get("/user/5")
    assert answer.json == {"id": 5, "status": "played", "played_at": "2026-11-22T10:30:00+00:00", "price": "Mug"}
    assert answer.headers["cache-control"] == "no-store"


def test_bad_id_is_400(tmp_path):
    client = function_client("s", migrated(make_settings(tmp_path)))
    assert client.simulate_get("/user/1.txt").status_code == 400
