"""W2: one admin mail per play, through the Mailgun-compatible API or the outbox; none for a play given back."""

from __future__ import annotations

import json

from tests.support import function_client, make_settings, migrated
from runner import plays
from runner.database import create_engine
from tests.test_function_w1 import claimed, message


def test_outbox_gets_one_mail_per_play(tmp_path):
    settings = migrated(make_settings(tmp_path))
    client = function_client("w2", settings)
    play_id = claimed(settings)
    for _ in range(3):
        assert client.simulate_post("/messages", json=message(play_id=play_id)).status_code == 200
    mails = list((tmp_path / "outbox").glob("*.json"))
    assert len(mails) == 1
    mail = json.loads(mails[0].read_text())
    assert mail["subject"] == "Tombola: customer 9 won Mug"
    assert mail["to"] == "admins@tombola.local"


def test_mailgun_api_gets_one_mail_per_play(tmp_path, mail_sink):
    settings = migrated(
        make_settings(tmp_path, TOMBOLA_MAIL_URL=mail_sink.url, TOMBOLA_MAIL_DOMAIN="shop.test", TOMBOLA_MAIL_API_KEY=mail_sink.key)
    )
    client = function_client("w2", settings)
    play_id = claimed(settings)
    for _ in range(2):
        assert client.simulate_post("/messages", json=message(play_id=play_id)).status_code == 200
    (mail,) = mail_sink.mails()
    assert mail["subject"] == "Tombola: customer 9 won Mug"
    assert play_id in mail["text"]


def test_mail_api_failure_is_503_then_sent_on_retry(tmp_path, mail_sink):
    settings = migrated(
        make_settings(tmp_path, TOMBOLA_MAIL_URL=mail_sink.url, TOMBOLA_MAIL_DOMAIN="shop.test", TOMBOLA_MAIL_API_KEY=mail_sink.key)
    )
    client = function_client("w2", settings)
    play = message(play_id=claimed(settings))
    mail_sink.fail_next(1, 503)
    assert client.simulate_post("/messages", json=play).status_code == 503
    assert client.simulate_post("/messages", json=play).status_code == 200
    assert len(mail_sink.mails()) == 1


def test_wrong_api_key_is_503_not_sent(tmp_path, mail_sink):
    settings = migrated(
        make_settings(tmp_path, TOMBOLA_MAIL_URL=mail_sink.url, TOMBOLA_MAIL_DOMAIN="shop.test", TOMBOLA_MAIL_API_KEY="wrong")
    )
    play = message(play_id=claimed(settings))
    assert function_client("w2", settings).simulate_post("/messages", json=play).status_code == 503
    assert mail_sink.mails() == []


def test_a_message_whose_claim_was_given_back_is_not_mailed(tmp_path, mail_sink):
    settings = migrated(
        make_settings(tmp_path, TOMBOLA_MAIL_URL=mail_sink.url, TOMBOLA_MAIL_DOMAIN="shop.test", TOMBOLA_MAIL_API_KEY=mail_sink.key)
    )
    play_id = claimed(settings)
    assert plays.release(create_engine(settings.database_url), 9, play_id)
    answer = function_client("w2", settings).simulate_post("/messages", json=message(play_id=play_id))
    assert answer.status_code == 200 and answer.json["status"] == "discarded"
    assert mail_sink.mails() == []
