"""P — prize picture: the picture W1 stored for a customer who played.

``GET /user/{customer_id}`` answers ``{"status": "ok", "img": <base64 JPEG>,
"url": <image URL>}``, ``{"status": "ko"}`` while there is no picture, or
``{"status": "storage_unavailable"}`` (503) when the store cannot be reached.
``GET /user/{customer_id}/image`` serves the JPEG itself, with validators for
conditional requests (answered from the object's metadata alone, which a
replica keeps for MAX_AGE seconds: a stored picture does not change).
"""

from __future__ import annotations

import base64
import datetime
import logging

import falcon

from runner.context import Context
from runner.errors import BackendUnavailable
from runner.ids import parse_customer_id
from runner.kept import KeptLookup
from runner.objectstore import ObjectInfo, StoredObject
from runner.plays import picture_key

JPEG = "image/jpeg"
MAX_AGE = 60
# A stored picture does not change, but a customer's picture is theirs alone: private caches only.
CACHE_CONTROL = ["private", f"max-age={MAX_AGE}"]
log = logging.getLogger("tombola.p")


class Picture:
    """The customer's picture as JSON, inline in base64."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.prefix = ctx.manifest.trigger.public_prefix or ""

    def on_get(self, req: falcon.Request, resp: falcon.Response, customer_id: str) -> None:
        number = parse_customer_id(customer_id)
        try:
            picture = self.ctx.store.get(picture_key(number))
        except BackendUnavailable as error:
            log.warning("store unavailable", extra={"customer": number, "error": str(error)})
            resp.status = falcon.HTTP_503
            resp.retry_after = 2
            resp.cache_control = ["no-store"]
            resp.media = {"status": "storage_unavailable"}
            return
        if picture is None:
            resp.cache_control = ["no-store"]
            resp.media = {"status": "ko"}
            return
        resp.cache_control = CACHE_CONTROL
        resp.media = {
            "status": "ok",
            "img": base64.b64encode(picture.data).decode("ascii"),
            "url": f"{self.prefix}/user/{number}/image",
        }


class Image:
    """The customer's picture as a JPEG, cacheable and conditional (ETag, Last-Modified)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # A stored picture's metadata; the store itself opens on the first request, not at start.
        self._info: KeptLookup[str, ObjectInfo] = KeptLookup(lambda key: ctx.store.head(key), MAX_AGE)

    def on_get(self, req: falcon.Request, resp: falcon.Response, customer_id: str) -> None:
        key = picture_key(parse_customer_id(customer_id))
        if req.if_none_match or _modified_since(req):
            info = self._info(key)
            if info is not None and _not_modified(req, info):
                _validators(resp, info)
                resp.status = falcon.HTTP_304
                return
        picture = self.ctx.store.get(key)
        if picture is None:
            raise falcon.HTTPNotFound(title="No picture", description=f"Customer {customer_id} has no picture yet.")
        _validators(resp, picture)
        resp.content_type = JPEG
        resp.data = picture.data


def _not_modified(req: falcon.Request, info: ObjectInfo) -> bool:
    """Whether the client's copy is current (RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since)."""
    if req.if_none_match:
        return any(tag == "*" or tag == info.etag for tag in req.if_none_match)
    since = _modified_since(req)
    return since is not None and info.last_modified <= since


def _modified_since(req: falcon.Request) -> datetime.datetime | None:
    """If-Modified-Since, or None when absent or not a date (RFC 9110 §13.1.3: then it is ignored)."""
    try:
        return req.if_modified_since
    except falcon.HTTPInvalidHeader:
        return None


def _validators(resp: falcon.Response, item: ObjectInfo | StoredObject) -> None:
    resp.etag = item.etag
    resp.last_modified = item.last_modified
    resp.cache_control = CACHE_CONTROL


def routes(ctx: Context) -> dict[str, object]:
    return {"/user/{customer_id}": Picture(ctx), "/user/{customer_id}/image": Image(ctx)}
