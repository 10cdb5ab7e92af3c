"""Where W2's mails go: a Mailgun-compatible HTTP API, or an outbox folder by default."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

import requests

from runner.errors import BackendError, BackendUnavailable
from runner.settings import Settings

MAIL_TIMEOUT = (3.0, 10.0)
# Answers that mean "not now": the mail waits (retried without limit) rather than being given up.
# A refused key is one of them: the operator fixes the configuration, and no mail is lost meanwhile.
NOT_NOW = frozenset({401, 403, 429, 502, 503, 504})


class Mailer(Protocol):
    def send(self, play_id: str, subject: str, text: str) -> str:
        """Send one mail; return its message id; raise BackendUnavailable (not now) or BackendError (failed)."""


class MailgunMailer:
    """Posts to ``{TOMBOLA_MAIL_URL}/{domain}/messages`` with HTTP Basic ``api:<key>``."""

    def __init__(self, settings: Settings) -> None:
        self.endpoint = f"{settings.mail_url.rstrip('/')}/{settings.mail_domain}/messages"
        self.auth = ("api", settings.mail_api_key)
        self.sender = settings.mail_from
        self.recipient = settings.mail_to
        self.session = requests.Session()

    def send(self, play_id: str, subject: str, text: str) -> str:
        fields = {
            "from": self.sender,
            "to": self.recipient,
            "subject": subject,
            "text": text,
            "h:X-Tombola-Play-Id": play_id,
            "v:play_id": play_id,
        }
        try:
            answer = self.session.post(self.endpoint, data=fields, auth=self.auth, timeout=MAIL_TIMEOUT)
        except requests.RequestException as error:
            raise BackendUnavailable("mail API", type(error).__name__) from error
        if answer.status_code in NOT_NOW:
            raise BackendUnavailable("mail API", f"answered {answer.status_code}")
        if answer.status_code != 200:
            raise BackendError("mail API", f"answered {answer.status_code}")
        try:
            return str(answer.json().get("id", ""))
        except ValueError:
            return ""


class OutboxMailer:
    """The embedded default: each mail is a JSON file in ``$TOMBOLA_HOME/outbox``."""

    def __init__(self, settings: Settings) -> None:
        self.folder = settings.home / "outbox"
        self.sender = settings.mail_from
        self.recipient = settings.mail_to

    def send(self, play_id: str, subject: str, text: str) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        mail = {"from": self.sender, "to": self.recipient, "subject": subject, "text": text, "play_id": play_id}
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(mail, file, indent=2)
        target = self.folder / f"{play_id}.json"
        os.replace(temporary, target)
        return str(Path(target).name)


def open_mailer(settings: Settings) -> Mailer:
    return MailgunMailer(settings) if settings.mail_url else OutboxMailer(settings)
