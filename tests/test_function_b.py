"""B: one play per customer, W within a deadline, the play published or given back."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import socket
import threading

import kombu
import pytest

from runner import bus, plays
from runner.database import create_engine
from tests.support import function_app, function_client, make_settings, migrated, serving


@pytest.fixture
def prize_worker(tmp_path):
    """The real W function, tempo 0, served on loopback."""
    with serving(function_app("w", make_settings(tmp_path / "w", TOMBOLA_W_TEMPO="0"))) as url:
        yield url


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def queued_messages(settings, name: str) -> list[dict]:
    with bus.connect(settings) as connection:
        queue = bus.work_queue(name)(connection.default_channel)
        queue.declare()
        messages = []
        while (message := queue.get(no_ack=True)) is not None:
            messages.append(message.decode())
        return messages


def test_play_publishes_once_and_refuses_a_second(tmp_path, prize_worker):
    settings = migrated(make_settings(tmp_path, TOMBOLA_W_URL=prize_worker))
    client = function_client("b", settings)

    answer = client.simulate_post("/user/12")
    assert answer.status_code == 200, answer.text
    assert answer.json["status"] == "ok" and answer.json["price"]
    assert client.simulate_post("/user/12").status_code == 409

    play = plays.find(create_engine(settings.database_url), 12)
    assert play.status == plays.PLAYED and play.price == answer.json["price"]
    for name in bus.PLAY_CONSUMERS:
        (message,) = queued_messages(settings, name)
        assert message["id"] == 12 and message["price"] == answer.json["price"] and message["play_id"] == play.play_id


def test_concurrent_plays_of_one_id_give_one_success(tmp_path, prize_worker):
    settings = migrated(make_settings(tmp_path, TOMBOLA_W_URL=prize_worker))
    client = function_client("b", settings)
    with concurrent.futures.ThreadPoolExecutor(25) as pool:
        codes = sorted(pool.map(lambda _: client.simulate_post("/user/13").status_code, range(25)))
    assert codes == [200] + [409] * 24
    assert len(queued_messages(settings, "w1")) == 1


def test_unknown_customer_is_404_and_get_is_405(tmp_path, prize_worker):
    client = function_client("b", migrated(make_settings(tmp_path, TOMBOLA_W_URL=prize_worker)))
    assert client.simulate_post("/user/5000").status_code == 404
    assert client.simulate_get("/user/12").status_code == 405
    assert client.simulate_post("/user/x1").status_code == 400


def test_worker_down_gives_503_and_the_play_back(tmp_path):
    settings = migrated(make_settings(tmp_path, TOMBOLA_W_URL=f"http://127.0.0.1:{closed_port()}"))
    answer = function_client("b", settings).simulate_post("/user/14")
    assert answer.status_code == 503
    assert answer.json["title"] == "Prize worker unavailable"
    assert plays.find(create_engine(settings.database_url), 14) is None
    assert queued_messages(settings, "w1") == []


def test_slow_worker_past_the_deadline_gives_503_and_the_play_back(tmp_path):
    with serving(function_app("w", make_settings(tmp_path / "w", TOMBOLA_W_TEMPO="3"))) as slow:
        settings = migrated(make_settings(tmp_path, TOMBOLA_W_URL=slow))
        answer = function_client("b", settings).simulate_post("/user/15", headers={"X-Tombola-Timeout": "6"})
    assert answer.status_code == 503
    assert plays.find(create_engine(settings.database_url), 15) is None


def test_broker_down_gives_503_and_the_play_back(tmp_path, prize_worker):
    broker = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    settings = migrated(make_settings(tmp_path, TOMBOLA_W_URL=prize_worker, TOMBOLA_BROKER_URL=broker))
    answer = function_client("b", settings).simulate_post("/user/16")
    assert answer.status_code == 503
    assert answer.json["title"] == "Message broker unavailable"
    assert plays.find(create_engine(settings.database_url), 16) is None


def test_play_through_rabbitmq_is_confirmed_and_queued(tmp_path, prize_worker, rabbitmq_url):
    settings = migrated(make_settings(tmp_path, TOMBOLA_W_URL=prize_worker, TOMBOLA_BROKER_URL=rabbitmq_url))
    with kombu.Connection(rabbitmq_url) as connection:
        queue = bus.work_queue("w2")(connection.default_channel)
        queue.declare()
        queue.purge()  # what earlier tests left in the session's vhost
        assert function_client("b", settings).simulate_post("/user/17").status_code == 200
        message = queue.get(no_ack=True)
    assert message is not None and message.decode()["id"] == 17
    assert message.properties["delivery_mode"] == 2


class DroppingWorker:
    """A stand-in for W on a raw socket: drops the first ``drops`` connections once it has read the request, answers the rest."""

    ANSWER = json.dumps({"price": "Mug", "img": base64.b64encode(b"not a real jpeg").decode()}).encode()

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                self.requests += 1
                if self.requests > self.drops:
                    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.ANSWER)}\r\n"
                    connection.sendall(head.encode() + b"Connection: close\r\n\r\n" + self.ANSWER)


def test_a_connection_to_w_that_breaks_without_an_answer_is_tried_once_more(tmp_path):
    worker = DroppingWorker(drops=1)
    settings = migrated(make_settings(tmp_path, TOMBOLA_W_URL=worker.url))
    answer = function_client("b", settings).simulate_post("/user/17")
    assert answer.status_code == 200, answer.text
    assert answer.json["price"] == "Mug" and worker.requests == 2


def test_a_connection_to_w_that_breaks_twice_gives_503_and_the_play_back(tmp_path):
    worker = DroppingWorker(drops=2)
    settings = migrated(make_settings(tmp_path, TOMBOLA_W_URL=worker.url))
    answer = function_client("b", settings).simulate_post("/user/18")
    assert answer.status_code == 503 and worker.requests == 2
    assert plays.find(create_engine(settings.database_url), 18) is None
