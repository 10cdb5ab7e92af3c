"""W1: records the play and stores the picture, idempotently; a message whose claim is gone changes nothing."""

from __future__ import annotations

import base64

import pytest

from runner import plays
from runner.database import create_engine
from runner.objectstore import open_store
from tests.support import function_client, make_settings, migrated

PICTURE = b"\xff\xd8\xff\xe0picture\xff\xd9"


def message(customer_id: int = 9, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": customer_id,
        "play_id": "0b3f3c4e-8a3e-4a57-9f3e-2f6a4c1d9e21",
        "price": "Mug",
        "img": base64.b64encode(PICTURE).decode(),
        "played_at": "2026-11-22T10:00:00+00:00",
    }
    body.update(changes)
    return body


def claimed(settings, customer_id: int = 9) -> str:
    """Claim the customer's play as B does; return its play id."""
    play_id = plays.claim(create_engine(settings.database_url), customer_id)
    assert play_id is not None
    return play_id


def test_records_play_and_picture_once(tmp_path):
    settings = migrated(make_settings(tmp_path))
    client = function_client("w1", settings)
    play_id = claimed(settings)
    for _ in range(2):
        answer = client.simulate_post("/messages", json=message(play_id=play_id))
        assert answer.status_code == 200, answer.text
        assert answer.json["status"] == "recorded"
    stored = open_store(settings).get("9.jpg")
    assert stored is not None and stored.data == PICTURE and stored.content_type == "image/jpeg"
    play = plays.find(create_engine(settings.database_url), 9)
    assert play.status == plays.PLAYED and play.price == "Mug" and play.picture == "9.jpg"


def test_a_message_whose_claim_was_given_back_records_nothing(tmp_path):
    settings = migrated(make_settings(tmp_path))
    engine = create_engine(settings.database_url)
    play_id = claimed(settings)
    assert plays.release(engine, 9, play_id)
    answer = function_client("w1", settings).simulate_post("/messages", json=message(play_id=play_id))
    assert answer.status_code == 200 and answer.json["status"] == "discarded"
    assert plays.find(engine, 9) is None
    assert open_store(settings).get("9.jpg") is None


def test_a_message_of_another_play_id_leaves_the_current_claim_alone(tmp_path):
    settings = migrated(make_settings(tmp_path))
    play_id = claimed(settings)
    answer = function_client("w1", settings).simulate_post("/messages", json=message())
    assert answer.status_code == 200 and answer.json["status"] == "discarded"
    play = plays.find(create_engine(settings.database_url), 9)
    assert play.play_id == play_id and play.status == plays.CLAIMED and play.picture is None
    assert open_store(settings).get("9.jpg") is None


@pytest.mark.parametrize(
    "changes",
    [{"id": "9"}, {"id": 0}, {"play_id": "x"}, {"price": ""}, {"img": "not base64!"}, {"played_at": "yesterday"}, {"id": True}],
)
def test_bad_message_is_400(tmp_path, changes):
    client = function_client("w1", migrated(make_settings(tmp_path)))
    answer = client.simulate_post("/messages", json=message(**changes))
    assert answer.status_code == 400
    assert answer.json["title"] == "Invalid play message"


def test_not_json_is_400(tmp_path):
    client = function_client("w1", migrated(make_settings(tmp_path)))
    answer = client.simulate_post("/messages", body=b"{nope", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
