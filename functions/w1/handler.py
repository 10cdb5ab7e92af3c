"""W1 — ``POST /messages``: stores a play's picture as ``<id>.jpg`` and records the play.

Idempotent: the same message twice stores the same picture and records the
same play. The runner acknowledges the message only after a 2xx answer.
"""

from __future__ import annotations

import logging

import falcon

from runner import plays
from runner.context import Context
from runner.messages import PlayMessage

log = logging.getLogger("tombola.w1")


class PlayRecorder:
    """Records one play message."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        message = PlayMessage.from_media(req.get_media())
        key = plays.picture_key(message.id)
        self.ctx.store.put(key, message.picture, "image/jpeg")
        plays.record(self.ctx.database, message.id, message.play_id, message.price, message.played_at, key)
        log.info("play recorded", extra={"customer": message.id, "play_id": message.play_id})
        resp.media = {"status": "recorded", "id": message.id, "picture": key}


def routes(ctx: Context) -> dict[str, object]:
    return {"/messages": PlayRecorder(ctx)}
