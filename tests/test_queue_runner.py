"""The queue runner: W1 and W2 as Kombu consumers, with retries and dead letters."""

from __future__ import annotations

import time

import kombu
import pytest
import requests

from runner import bus, plays
from runner.bus import Publisher
from runner.database import create_engine
from runner.objectstore import open_store
from tests.support import environment, make_settings, migrated, replica
from tests.test_function_w1 import claimed, message


def wait_until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def dead_letters(settings, name: str) -> list:
    with bus.connect(settings) as connection:
        queue = bus.dead_letter_queue(name)(connection.default_channel)
        queue.declare()
        found = []
        while (letter := queue.get(no_ack=True)) is not None:
            found.append(letter)
        return found


@pytest.fixture(params=["filesystem", "rabbitmq"])
def broker_env(request):
    if request.param == "filesystem":
        return {}
    url = request.getfixturevalue("rabbitmq_url")
    with kombu.Connection(url) as connection:  # the session's vhost: start from empty queues
        for queue in bus.topology():
            queue(connection.default_channel).declare()
            queue(connection.default_channel).purge()
    return {"TOMBOLA_BROKER_URL": url}


def test_w1_replica_records_published_plays(tmp_path, broker_env):
    settings = migrated(make_settings(tmp_path, **broker_env))
    env = environment(settings, **broker_env)
    with replica("w1", env, tmp_path / "w1.log") as url:
        publisher = Publisher(settings)
        for customer in (21, 22, 23):
            publisher.publish_play(message(customer, play_id=claimed(settings, customer)))
        engine = create_engine(settings.database_url)
        wait_until(lambda: all(plays.find(engine, c).picture == f"{c}.jpg" for c in (21, 22, 23)))
        assert open_store(settings).get("22.jpg") is not None
        health = requests.get(f"{url}/healthz", timeout=2).json()
        assert health["function"] == "w1" and health["consumed"] == 3


def test_poison_message_goes_to_the_dead_letter_queue(tmp_path, broker_env):
    settings = migrated(make_settings(tmp_path, **broker_env))
    with replica("w1", environment(settings, **broker_env), tmp_path / "w1.log"):
        Publisher(settings).publish_play(message(24, img="*** not an image ***"))
        (letter,) = wait_until(lambda: dead_letters(settings, "w1"))
    assert letter.decode()["id"] == 24
    assert letter.headers[bus.ATTEMPTS_HEADER] == 1
    assert letter.headers[bus.ERROR_HEADER].startswith("400")


def test_w2_retries_a_failing_mail_api_then_sends_once(tmp_path, mail_sink):
    mail = {"TOMBOLA_MAIL_URL": mail_sink.url, "TOMBOLA_MAIL_DOMAIN": "shop.test", "TOMBOLA_MAIL_API_KEY": mail_sink.key}
    settings = migrated(make_settings(tmp_path, **mail))
    mail_sink.fail_next(2, 503)
    with replica("w2", environment(settings, TOMBOLA_RETRY_BACKOFF="0.1", **mail), tmp_path / "w2.log"):
        Publisher(settings).publish_play(message(25, play_id=claimed(settings, 25)))
        mail_sink.wait_for(1, timeout=20)
        time.sleep(0.5)
    assert len(mail_sink.mails()) == 1


def test_w2_dead_letters_after_max_attempts(tmp_path, mail_sink):
    mail = {"TOMBOLA_MAIL_URL": mail_sink.url, "TOMBOLA_MAIL_DOMAIN": "shop.test", "TOMBOLA_MAIL_API_KEY": mail_sink.key}
    settings = migrated(make_settings(tmp_path, **mail))
    mail_sink.fail_next(100, 500)
    env = environment(settings, TOMBOLA_RETRY_BACKOFF="0.05", TOMBOLA_MAX_ATTEMPTS="3", **mail)
    with replica("w2", env, tmp_path / "w2.log"):
        Publisher(settings).publish_play(message(26, play_id=claimed(settings, 26)))
        (letter,) = wait_until(lambda: dead_letters(settings, "w2"))
    assert letter.headers[bus.ATTEMPTS_HEADER] == 3
    assert mail_sink.mails() == []


def test_an_unavailable_mail_api_costs_no_attempt_and_the_mail_goes_out_once_it_is_back(tmp_path, mail_sink):
    mail = {"TOMBOLA_MAIL_URL": mail_sink.url, "TOMBOLA_MAIL_DOMAIN": "shop.test", "TOMBOLA_MAIL_API_KEY": mail_sink.key}
    settings = migrated(make_settings(tmp_path, **mail))
    play_id = claimed(settings, 27)
    mail_sink.fail_next(6, 503)  # three times TOMBOLA_MAX_ATTEMPTS: an outage, not a poison message
    env = environment(settings, TOMBOLA_RETRY_BACKOFF="0.05", TOMBOLA_MAX_ATTEMPTS="2", **mail)
    with replica("w2", env, tmp_path / "w2.log"):
        Publisher(settings).publish_play(message(27, play_id=play_id))
        mail_sink.wait_for(1, timeout=30)
    assert mail_sink.attempts == 7
    assert dead_letters(settings, "w2") == []
