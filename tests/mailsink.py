"""A Mailgun-compatible HTTP sink for the tests: records mails, fails or lags on demand.

It answers ``POST /v3/{domain}/messages`` like Mailgun's API: HTTP Basic auth
with user ``api`` and the sink's key, form fields (urlencoded or multipart)
``from``, ``to``, ``subject`` and ``text`` or ``html``. A Falcon WSGI app served
by the standard library's wsgiref, one thread per request.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hmac
import socketserver
import threading
import time
import uuid
import wsgiref.simple_server
from collections.abc import Mapping
from typing import Any

import falcon

MAILGUN_USER = "api"


@dataclasses.dataclass(frozen=True)
class Mail:
    """One accepted message: its id, the domain it was sent through and its form fields."""

    id: str
    domain: str
    fields: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        return self.fields[name]


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean: no access log."""


def _form_fields(req: falcon.Request) -> dict[str, str]:
    """The text fields of an urlencoded or multipart form; repeated fields joined by ", "."""
    fields: dict[str, list[str]] = collections.defaultdict(list)
    if req.content_type and req.content_type.startswith(falcon.MEDIA_MULTIPART):
        for part in req.get_media():
            if part.filename is None:
                fields[part.name].append(part.get_text() or "")
    else:
        for name, value in req.get_media(default_when_empty={}).items():
            fields[name].extend(value if isinstance(value, list) else [value])
    return {name: ", ".join(values) for name, values in fields.items()}


def _missing(fields: Mapping[str, str]) -> str | None:
    """Mailgun's message for a required field that is absent, if any."""
    for name in ("from", "to"):
        if not fields.get(name):
            return f"'{name}' parameter is missing"
    if not (fields.get("text") or fields.get("html")):
        return "Need at least one of 'text' or 'html' parameters specified"
    return None


class MailSink:
    """A Mailgun stand-in on ``127.0.0.1``: use as a context manager, or ``start()`` and ``stop()``."""

    def __init__(self, key: str, port: int = 0) -> None:
        self.key = key
        self.attempts = 0
        self._mails: list[Mail] = []
        self._failures: collections.deque[int] = collections.deque()
        self._delay = 0.0
        self._changed = threading.Condition()
        app = falcon.App()
        app.add_route("/v3/{domain}/messages", self)
        self._server = wsgiref.simple_server.make_server(
            "127.0.0.1", port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mail-sink", daemon=True
        )

    @property
    def url(self) -> str:
        """The API's base, as ``TOMBOLA_MAIL_URL`` wants it: ``http://127.0.0.1:PORT/v3``."""
        return f"http://127.0.0.1:{self._server.server_port}/v3"

    def start(self) -> MailSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def mails(self) -> list[Mail]:
        """The mails accepted so far, oldest first."""
        with self._changed:
            return list(self._mails)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Mail]:
        """Wait until at least ``count`` mails were accepted; raise TimeoutError after ``timeout`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._mails) >= count, timeout):
                raise TimeoutError(f"mail sink accepted {len(self._mails)} of {count} mails in {timeout} s")
            return list(self._mails)

    def wait_for_subject(self, text: str, timeout: float = 10.0) -> Mail:
        """Wait for the first mail whose subject contains ``text``; raise TimeoutError after ``timeout`` s."""

        def found() -> Mail | None:
            return next((mail for mail in self._mails if text in mail.fields.get("subject", "")), None)

        with self._changed:
            mail = self._changed.wait_for(found, timeout)
            if mail is None:
                subjects = [other.fields.get("subject", "") for other in self._mails]
                raise TimeoutError(f"no mail with {text!r} in its subject in {timeout} s; subjects: {subjects}")
            return mail

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` (a 4xx or 5xx) instead of handling them."""
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error, not {status}")
        with self._changed:
            self._failures.extend([status] * n)

    def slow_down(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each request from now on (0 restores full speed)."""
        with self._changed:
            self._delay = seconds

    def reset(self) -> None:
        """Forget the mails, the attempts, pending failures and any slow-down."""
        with self._changed:
            self._mails.clear()
            self._failures.clear()
            self._delay = 0.0
            self.attempts = 0

    def on_post(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        with self._changed:
            self.attempts += 1
            delay = self._delay
            failure = self._failures.popleft() if self._failures else None
        time.sleep(delay)
        if failure is not None:
            resp.status = failure
            resp.media = {"message": f"injected failure {failure}"}
            return
        if not self._authorized(req.get_header("Authorization")):
            resp.status = falcon.HTTP_401
            resp.set_header("WWW-Authenticate", 'Basic realm="MG API"')
            resp.media = {"message": "Forbidden"}
            return
        fields = _form_fields(req)
        problem = _missing(fields)
        if problem:
            resp.status = falcon.HTTP_400
            resp.media = {"message": problem}
            return
        mail = Mail(id=f"<{time.strftime('%Y%m%d%H%M%S')}.{uuid.uuid4().hex}@{domain}>", domain=domain, fields=fields)
        with self._changed:
            self._mails.append(mail)
            self._changed.notify_all()
        resp.media = {"id": mail.id, "message": "Queued. Thank you."}

    def _authorized(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, key = base64.b64decode(encoded, validate=True).partition(b":")
        except binascii.Error:
            return False
        return hmac.compare_digest(user, MAILGUN_USER.encode()) and hmac.compare_digest(key, self.key.encode())
