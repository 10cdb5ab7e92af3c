"""The OpenAPI 3.1 document of the public listener, served at ``GET /openapi.json``.

The lottery's four public functions as the gateway publishes them (I, S, B and
P under their prefixes), the gateway's own answers around them (429 for a
client past its plays, 403 for a write from another site, 502/503/504 when no
replica answers in time) and the gateway's pages. The control plane has its
own document (gateway.openapi, ``/v1/openapi.json``); tests/test_bad_input.py
checks that this one names exactly the public routes, and
tests/test_schemathesis.py that the pack answers as it says.
"""

from __future__ import annotations

import json
from typing import Any

import falcon
import falcon.asgi

from gateway.openapi import SCHEMAS as CONTROL_SCHEMAS
from gateway.openapi import Schema, _answer, _error_response, _json, _parameter, _ref

JPEG = "image/jpeg"
PROXIED = (502, 503, 504)  # no replica answered, none is available, or not within the deadline
ERRORS = (400, 403, 404, 409, 413, 429, *PROXIED)

CUSTOMER_ID = _parameter(
    "id", "path", {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"}, "The customer's id: 1 to 999999999, no leading zero."
)
NAME = _parameter("name", "path", {"type": "string"}, "A file of the page (index.html, app.js, style.css...).")
IF_NONE_MATCH = _parameter("If-None-Match", "header", {"type": "string"}, "The ETag of the copy the client holds.")
IF_MODIFIED_SINCE = _parameter("If-Modified-Since", "header", {"type": "string"}, "An HTTP date; ignored when not one.")
PAGE_ID = _parameter("id", "query", {"type": "string"}, "The customer the page opens on (the page checks it).")

SCHEMAS: dict[str, Schema] = {
    "Error": CONTROL_SCHEMAS["Error"],
    "Customer": {
        "type": "object",
        "required": ["id", "firstname", "lastname", "email"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "firstname": {"type": "string"},
            "lastname": {"type": "string"},
            "email": {"type": "string"},
        },
    },
    "PlayStatus": {
        "type": "object",
        "required": ["id", "status", "played_at", "price"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "status": {"type": "string", "enum": ["not_played", "playing", "played"]},
            "played_at": {"type": ["string", "null"], "format": "date-time"},
            "price": {"type": ["string", "null"]},
        },
    },
    "Play": {
        "type": "object",
        "required": ["status", "price", "play_id"],
        "properties": {
            "status": {"const": "ok"},
            "price": {"type": "string", "minLength": 1},
            "play_id": {"type": "string"},
        },
    },
    "Picture": {
        "oneOf": [
            {
                "type": "object",
                "required": ["status", "img", "url"],
                "properties": {
                    "status": {"const": "ok"},
                    "img": {"type": "string", "contentEncoding": "base64", "contentMediaType": JPEG},
                    "url": {"type": "string", "description": "Where the JPEG itself is."},
                },
            },
            {"type": "object", "required": ["status"], "properties": {"status": {"const": "ko"}}},
        ],
    },
    "StorageUnavailable": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "storage_unavailable"}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "functions"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "functions": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["replicas", "healthy"],
                    "properties": {"replicas": {"type": "integer"}, "healthy": {"type": "integer"}},
                },
            },
        },
    },
    "Status": {
        "type": "object",
        "required": ["status", "generated_at", "window_seconds", "functions"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "generated_at": {"type": "string", "format": "date-time"},
            "window_seconds": {"type": "integer"},
            "functions": {"type": "array", "items": {"type": "object", "required": ["name", "state", "replicas"]}},
        },
    },
}


def _operation(
    summary: str, answers: dict[int, dict[str, Any]], errors: tuple[int, ...], *parameters: dict[str, Any]
) -> dict[str, Any]:
    """An operation: its answers and the errors it may give."""
    responses: dict[str, Any] = {str(status): answer for status, answer in answers.items()}
    for status in errors:
        responses.setdefault(str(status), {"$ref": f"#/components/responses/{status}"})
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = list(parameters)
    return operation


def _page(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


NOT_MODIFIED = {304: {"description": "The client's copy is current (If-None-Match)."}}
VALIDATORS = {
    "ETag": {"schema": {"type": "string"}, "description": "The picture's entity tag."},
    "Last-Modified": {"schema": {"type": "string"}, "description": "When it was stored."},
}

PATHS: dict[str, dict[str, Any]] = {
    "/srvi/user/{id}": {
        "get": _operation(
            "I: who the customer is", {200: _answer("The customer.", _ref("Customer"))}, (400, 404, *PROXIED), CUSTOMER_ID
        ),
    },
    "/srvs/user/{id}": {
        "get": _operation(
            "S: whether the customer has played",
            {200: _answer("The status.", _ref("PlayStatus"))},
            (400, *PROXIED),
            CUSTOMER_ID,
        ),
    },
    "/srvb/user/{id}": {
        "post": _operation(
            "B: play, once per customer (the prize is drawn by W; the play goes on to W1 and W2)",
            {
                200: _answer("The prize won.", _ref("Play")),
                409: _answer("The customer has played already.", _ref("Error")),
                429: {**_error_response(429), "headers": {"Retry-After": {"schema": {"type": "string"}}}},
                503: _answer("W or the broker is unavailable: the play is given back, retry.", _ref("Error")),
            },
            (400, 403, 404, 413, *PROXIED),
            CUSTOMER_ID,
        ),
    },
    "/srvp/user/{id}": {
        "get": _operation(
            "P: the customer's prize picture, inline",
            {
                200: _answer("The picture, or ko while there is none.", _ref("Picture")),
                503: {
                    "description": "The object store (or every replica of P) is unavailable.",
                    "content": _json({"oneOf": [_ref("StorageUnavailable"), _ref("Error")]}),
                },
            },
            (400, 502, 504),
            CUSTOMER_ID,
        ),
    },
    "/srvp/user/{id}/image": {
        "get": _operation(
            "P: the prize picture as a JPEG, with validators",
            {
                200: {"description": "The JPEG.", "headers": VALIDATORS, "content": {JPEG: {"schema": {"type": "string"}}}},
                **NOT_MODIFIED,
            },
            (400, 404, *PROXIED),
            CUSTOMER_ID,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
        ),
    },
    "/": {"get": _operation("The page", {200: _page("The lottery's page."), **NOT_MODIFIED}, (), PAGE_ID)},
    "/static/{name}": {
        "get": _operation("A file of the page", {200: {"description": "The file."}, **NOT_MODIFIED}, (404,), NAME),
    },
    "/healthz": {"get": _operation("The gateway's health", {200: _answer("Replicas per function.", _ref("Health"))}, ())},
    "/status": {"get": _operation("The health page, for people", {200: _page("The page.")}, ())},
    "/status.json": {
        "get": _operation("The health page, for programs", {200: _answer("Every function's state.", _ref("Status"))}, ()),
    },
    "/openapi.json": {"get": _operation("This document", {200: _answer("The OpenAPI document.", {"type": "object"})}, ())},
}


def document() -> dict[str, Any]:
    """The OpenAPI document as data."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tombola",
            "version": "1",
            "description": "The lottery's public API: who a customer is (I), whether they played (S), play (B) "
            "and the prize picture (P), as the gateway publishes them. Errors are JSON {title, description}.",
        },
        "servers": [{"url": "/"}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": {str(status): _error_response(status) for status in ERRORS},
        },
    }


class PublicOpenApiDocument:
    """``GET /openapi.json``."""

    def __init__(self) -> None:
        self.data = json.dumps(document(), indent=1).encode()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.data
