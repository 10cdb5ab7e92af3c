"""The Mailgun-compatible sink answers, records and fails like the tests need it to."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.mailsink import MailSink

MAIL = {"from": "tombola@shop.test", "to": "admins@shop.test", "subject": "Tombola: customer 9 won Mug", "text": "hi"}


def post(sink: MailSink, key: str | None = None, domain: str = "shop.test", **kwargs: object) -> requests.Response:
    auth = ("api", sink.key if key is None else key)
    return requests.post(f"{sink.url}/{domain}/messages", auth=auth, timeout=10, **kwargs)


def test_records_an_urlencoded_mail(mail_sink):
    answer = post(mail_sink, data={**MAIL, "v:play_id": "p-1"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["message"] == "Queued. Thank you."
    assert body["id"].startswith("<") and body["id"].endswith("@shop.test>")
    (mail,) = mail_sink.mails()
    assert mail.id == body["id"]
    assert mail.domain == "shop.test"
    assert mail["subject"] == MAIL["subject"]
    assert mail["v:play_id"] == "p-1"


def test_records_a_multipart_mail_with_several_recipients(mail_sink):
    fields = [(name, (None, value)) for name, value in MAIL.items()] + [("to", (None, "ceo@shop.test"))]
    assert post(mail_sink, files=fields).status_code == 200
    (mail,) = mail_sink.mails()
    assert mail["to"] == "admins@shop.test, ceo@shop.test"
    assert mail["text"] == "hi"


def test_each_test_starts_with_an_empty_sink(mail_sink):
    assert mail_sink.mails() == []
    assert mail_sink.attempts == 0


@pytest.mark.parametrize("key", ["wrong", ""])
def test_wrong_key_is_401_and_not_recorded(mail_sink, key):
    answer = post(mail_sink, key=key, data=MAIL)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert mail_sink.mails() == []


def test_missing_auth_is_401(mail_sink):
    assert requests.post(f"{mail_sink.url}/shop.test/messages", data=MAIL, timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("missing", "message"),
    [("to", "'to' parameter is missing"), ("from", "'from' parameter is missing"), ("text", "Need at least one")],
)
def test_missing_field_is_400_like_mailgun(mail_sink, missing, message):
    fields = {name: value for name, value in MAIL.items() if name != missing}
    answer = post(mail_sink, data=fields)
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(message)
    assert mail_sink.mails() == []


def test_fail_next_fails_that_many_requests_then_accepts(mail_sink):
    mail_sink.fail_next(2, 503)
    mail_sink.fail_next(1, 500)
    assert [post(mail_sink, data=MAIL).status_code for _ in range(4)] == [503, 503, 500, 200]
    assert mail_sink.attempts == 4
    assert len(mail_sink.mails()) == 1


def test_fail_next_wants_an_error_status(mail_sink):
    with pytest.raises(ValueError):
        mail_sink.fail_next(1, 200)


def test_slow_down_delays_the_answer(mail_sink):
    mail_sink.slow_down(0.3)
    started = time.monotonic()
    assert post(mail_sink, data=MAIL).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_wait_for_returns_once_mails_arrive_and_times_out_otherwise(mail_sink):
    later = threading.Timer(0.2, post, args=(mail_sink,), kwargs={"data": MAIL})
    later.start()
    (mail,) = mail_sink.wait_for(1, timeout=5)
    later.join()
    assert mail_sink.wait_for_subject("customer 9 won", timeout=1) == mail
    with pytest.raises(TimeoutError):
        mail_sink.wait_for(2, timeout=0.2)
    with pytest.raises(TimeoutError):
        mail_sink.wait_for_subject("customer 10", timeout=0.2)


def test_unknown_path_is_404(mail_sink):
    assert requests.get(f"{mail_sink.url}/shop.test/events", timeout=10).status_code == 404


def test_stop_closes_the_port():
    with MailSink(key="k") as sink:
        url = sink.url
        assert post(sink, data=MAIL).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/shop.test/messages", auth=("api", "k"), data=MAIL, timeout=2)
