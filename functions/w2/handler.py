"""W2 — ``POST /messages``: mails the shop's admins once per play.

Idempotent per play: the ``mails`` table remembers each play id that was
mailed, so a redelivered message is not mailed again. A message whose claim
was given back or taken over (runner.plays) is discarded unmailed. A mail API
that cannot take the mail now gives a 503 (the runner retries until it can);
one that answers with an error gives a 502 (retried, then dead-lettered).
"""

from __future__ import annotations

import logging

import falcon
import sqlalchemy as sa

from mailer import Mailer, open_mailer
from runner import plays
from runner.context import Context
from runner.database import mails, utcnow
from runner.messages import PlayMessage

log = logging.getLogger("tombola.w2")


class AdminMail:
    """Mails one play to the admins."""

    def __init__(self, ctx: Context, mailer: Mailer) -> None:
        self.ctx = ctx
        self.mailer = mailer

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        message = PlayMessage.from_media(req.get_media())
        if not plays.settle(self.ctx.database, message):
            resp.media = {"status": "discarded", "play_id": message.play_id}
            return
        if self._already_sent(message.play_id):
            resp.media = {"status": "duplicate", "play_id": message.play_id}
            return
        subject = f"Tombola: customer {message.id} won {message.price}"
        text = (
            f"Customer {message.id} played the tombola at {message.played_at.isoformat(timespec='seconds')}Z "
            f"and won: {message.price}.\nPlay id: {message.play_id}\n"
        )
        mail_id = self.mailer.send(message.play_id, subject, text)
        self._remember(message)
        log.info("admin mail sent", extra={"customer": message.id, "play_id": message.play_id, "mail_id": mail_id})
        resp.media = {"status": "sent", "play_id": message.play_id, "mail_id": mail_id}

    def _already_sent(self, play_id: str) -> bool:
        with self.ctx.database.connect() as connection:
            found = connection.execute(sa.select(mails.c.play_id).where(mails.c.play_id == play_id)).first()
        return found is not None

    def _remember(self, message: PlayMessage) -> None:
        try:
            with self.ctx.database.begin() as connection:
                connection.execute(
                    mails.insert().values(play_id=message.play_id, customer_id=message.id, sent_at=utcnow())
                )
        except sa.exc.IntegrityError:
            pass  # another replica recorded the same play's mail


def routes(ctx: Context) -> dict[str, object]:
    return {"/messages": AdminMail(ctx, open_mailer(ctx.settings))}
