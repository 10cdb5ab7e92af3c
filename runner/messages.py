"""The play message B publishes and W1/W2 consume, validated on receipt."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import uuid
from typing import Any

import falcon

from runner.ids import MAX_CUSTOMER_ID


@dataclasses.dataclass(frozen=True)
class PlayMessage:
    id: int
    play_id: str
    price: str
    img: str
    played_at: datetime.datetime

    @classmethod
    def from_media(cls, media: Any) -> PlayMessage:
        """Validate a message body; a bad one is a 400 (the runner dead-letters it)."""
        try:
            customer_id = media["id"]
            if isinstance(customer_id, bool) or not isinstance(customer_id, int) or not 0 < customer_id <= MAX_CUSTOMER_ID:
                raise ValueError("id must be a positive customer id")
            play_id = str(uuid.UUID(media["play_id"]))
            price = media["price"]
            if not isinstance(price, str) or not 0 < len(price) <= 64:
                raise ValueError("price must be a short text")
            img = media["img"]
            base64.b64decode(img, validate=True)
            played_at = datetime.datetime.fromisoformat(media["played_at"])
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise falcon.HTTPBadRequest(title="Invalid play message", description=str(error)) from None
        if played_at.tzinfo is not None:
            played_at = played_at.astimezone(datetime.UTC).replace(tzinfo=None)
        return cls(customer_id, play_id, price, img, played_at)

    @property
    def picture(self) -> bytes:
        return base64.b64decode(self.img)
