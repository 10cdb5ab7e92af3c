"""The OpenAPI 3.1 document of the control plane, served at ``GET /v1/openapi.json``.

Built from small helpers so that each operation reads as one line of intent;
tests/test_control_api_openapi.py checks that it names exactly the routes and
methods the gateway serves.
"""

from __future__ import annotations

import http
from typing import Any

from gateway.packages import MAX_PACKAGE

Schema = dict[str, Any]

ERRORS = (400, 401, 404, 409, 413, 415, 422, 503)
TOKEN: list[dict[str, list[str]]] = [{"token": []}]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _list_of(key: str, item: str, **more: Schema) -> Schema:
    properties = {key: {"type": "array", "items": _ref(item)}, **more}
    return {"type": "object", "required": list(properties), "properties": properties}


def _parameter(name: str, where: str, schema: Schema, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "description": description, "schema": schema}


NAME = _parameter("name", "path", {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"}, "The function's name.")
NUMBER = _parameter("number", "path", {"type": "integer", "minimum": 1}, "The version's number.")
ALIAS = _parameter("alias", "path", {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$"}, "The alias, e.g. live.")
EXECUTION = _parameter("execution_id", "path", {"type": "string", "pattern": "^[0-9a-f]{32}$"}, "The execution's id.")
LINES = _parameter("lines", "query", {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 100}, "How many lines.")
DESCRIPTION = _parameter("description", "query", {"type": "string", "maxLength": 200}, "What this version changes.")
LIMIT = _parameter("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "How many.")


def _answer(description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {"description": description, **({"content": _json(schema)} if schema else {})}


def _operation(
    summary: str,
    answers: dict[int, dict[str, Any]],
    errors: tuple[int, ...],
    parameters: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    """An operation: its answers, the errors it may give (401 too unless public) and its input."""
    responses: dict[str, Any] = {str(status): answer for status, answer in answers.items()}
    for status in sorted({*errors, *(() if public else (401,))}):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    return operation


def _json_body(schema: Schema) -> dict[str, Any]:
    return {"required": True, "content": _json(schema)}


ZIP_BODY = {
    "required": True,
    "description": f"The function's folder as a zip: manifest.toml, handler.py and its own modules "
    f"({MAX_PACKAGE // 2**20} MiB at most).",
    "content": {
        "application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}},
        "application/x-zip-compressed": {"schema": {"type": "string", "contentMediaType": "application/zip"}},
    },
}

DEPLOYED = {
    "description": "Where the alias points now, with the function's replicas. "
    "With `Accept: application/x-ndjson`, progress lines while it works "
    '(`{"progress": "..."}`), then `{"result": Alias}` or `{"error": {"status", "title", "description"}}`.',
    "content": {
        **_json(_ref("Alias")),
        "application/x-ndjson": {"schema": _ref("AliasProgress")},
    },
}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["title", "description"],
        "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
    },
    "Split": {
        "type": ["object", "null"],
        "description": "A share of the alias's traffic sent to another version (canary).",
        "required": ["version", "weight"],
        "properties": {
            "version": {"type": "integer", "minimum": 1},
            "weight": {"type": "integer", "minimum": 1, "maximum": 99, "description": "Percent of requests."},
        },
    },
    "Scaling": {
        "type": "object",
        "properties": {
            "replicas": {"type": "integer", "minimum": 0, "description": "Replicas wanted now."},
            "min": {"type": "integer", "minimum": 0, "description": "The autoscaler's lower bound (0: scale to zero)."},
            "max": {"type": "integer", "minimum": 1, "description": "The autoscaler's upper bound."},
            "target": {"type": "integer", "minimum": 1, "description": "In-flight executions per replica aimed at."},
        },
    },
    "ScalingUpdate": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "replicas": {"type": "integer", "minimum": 0, "maximum": 64},
            "min": {"type": "integer", "minimum": 0, "maximum": 64},
            "max": {"type": "integer", "minimum": 1, "maximum": 64},
        },
    },
    "Live": {
        "type": ["object", "null"],
        "description": "The version the live alias serves, and its canary if any; null before the first deploy.",
        "properties": {"version": {"type": "integer"}, "canary": _ref("Split")},
    },
    "Function": {
        "type": "object",
        "required": ["name", "trigger", "live", "scaling", "versions"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "trigger": {"type": ["string", "null"], "enum": ["http", "queue", None]},
            "public_prefix": {"type": ["string", "null"], "description": "Its public path on the gateway, if public."},
            "live": _ref("Live"),
            "scaling": {"anyOf": [_ref("Scaling"), {"type": "null"}]},
            "versions": {"type": "integer", "description": "How many versions it has."},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "FunctionDetail": {
        "allOf": [
            _ref("Function"),
            {
                "type": "object",
                "properties": {
                    "manifest": {
                        "type": ["object", "null"],
                        "description": "The live version's manifest.toml as data (else the latest version's).",
                    },
                    "aliases": {"type": "array", "items": _ref("Alias")},
                },
            },
        ]
    },
    "FunctionUpdate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["description"],
        "properties": {"description": {"type": "string", "maxLength": 200}},
    },
    "Version": {
        "type": "object",
        "required": ["function", "version", "sha256", "size", "created_at"],
        "properties": {
            "function": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "sha256": {"type": "string", "description": "Checksum of the package."},
            "size": {"type": "integer", "description": "Bytes of the package."},
            "description": {"type": "string"},
            "manifest": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
            "created": {"type": "boolean", "description": "False when the upload was the same package as this version."},
        },
    },
    "Alias": {
        "type": "object",
        "required": ["function", "alias", "version"],
        "properties": {
            "function": {"type": "string"},
            "alias": {"type": "string"},
            "version": {"type": "integer"},
            "canary": _ref("Split"),
            "updated_at": {"type": ["string", "null"], "format": "date-time"},
            "replicas": {"type": "array", "items": _ref("Replica"), "description": "After a deploy: its replicas."},
        },
    },
    "AliasUpdate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["version"],
        "properties": {"version": {"type": "integer", "minimum": 1}, "canary": _ref("Split")},
    },
    "AliasProgress": {
        "type": "object",
        "description": "One line of the NDJSON stream.",
        "properties": {"progress": {"type": "string"}, "result": _ref("Alias"), "error": {"type": "object"}},
    },
    "Replica": {
        "type": "object",
        "required": ["id", "function", "version", "healthy"],
        "properties": {
            "id": {"type": "string"},
            "function": {"type": "string"},
            "version": {"type": "integer"},
            "url": {"type": "string"},
            "healthy": {"type": "boolean"},
            "draining": {"type": "boolean"},
            "in_flight": {"type": "integer"},
            "pid": {"type": ["integer", "null"]},
            "state": {"type": "string", "enum": ["starting", "running", "stopping"]},
        },
    },
    "ExecutionRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "method": {"type": "string", "enum": ["GET", "POST"], "description": "Default: GET, or POST with a body."},
            "path": {
                "type": "string",
                "description": "The function's path, e.g. /user/42 (default: a queue function's message path, else /).",
            },
            "body": {"description": "Any JSON value, sent as the request's JSON body; null for none."},
            "async": {"type": "boolean", "default": False, "description": "Answer 202 at once and run in the background."},
        },
    },
    "ExecutionAccepted": {
        "type": "object",
        "required": ["id", "status", "links"],
        "properties": {
            "id": {"type": "string"},
            "status": {"const": "running"},
            "links": {"type": "object", "properties": {"self": {"type": "string"}}},
        },
    },
    "ExecutionSummary": {
        "type": "object",
        "required": ["id", "function", "status", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "function": {"type": "string"},
            "version": {"type": ["integer", "null"]},
            "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
            "request": {"type": "object", "properties": {"method": {"type": "string"}, "path": {"type": "string"}}},
            "result_status": {"type": ["integer", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "duration": {"type": ["number", "null"], "description": "Seconds."},
            "links": {"type": "object", "properties": {"self": {"type": "string"}}},
        },
    },
    "Execution": {
        "type": "object",
        "required": ["id", "function", "status", "request", "result", "created_at", "logs"],
        "properties": {
            "id": {"type": "string", "description": "Also the X-Request-Id the replica saw and logged."},
            "function": {"type": "string"},
            "version": {"type": ["integer", "null"], "description": "The version that served it."},
            "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
            "request": {
                "type": "object",
                "properties": {"method": {"type": "string"}, "path": {"type": "string"}, "body": {}},
            },
            "result": {
                "type": ["object", "null"],
                "description": "The function's answer: its status and its body (JSON when it answered JSON, else text).",
                "properties": {"status": {"type": "integer"}, "body": {}, "truncated": {"type": "boolean"}},
            },
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "duration": {"type": ["number", "null"], "description": "Seconds."},
            "logs": {"type": "array", "items": _ref("LogLine"), "description": "The replica's lines for this request."},
            "links": {"type": "object", "properties": {"self": {"type": "string"}}},
        },
    },
    "DeadLetter": {
        "type": "object",
        "required": ["id", "attempts", "error", "first_failed_at", "replays", "summary"],
        "properties": {
            "id": {"type": "string", "description": "The message's id (a play's is its play id)."},
            "attempts": {"type": "integer", "description": "How many times the function failed it (a 4xx: once)."},
            "error": {"type": "string", "description": "The function's last answer: status and the start of its body."},
            "first_failed_at": {"type": ["string", "null"], "format": "date-time"},
            "replays": {"type": "integer", "description": "How many times an operator replayed it."},
            "summary": {"type": "string", "description": "Its body's fields, long values abbreviated."},
        },
    },
    "DeadLetters": {
        "type": "object",
        "required": ["function", "queue", "count", "dead_letters"],
        "properties": {
            "function": {"type": "string"},
            "queue": {"type": "string", "description": "The dead-letter queue, e.g. tombola.w1.dead."},
            "count": {"type": "integer", "description": "How many dead letters it holds."},
            "dead_letters": {"type": "array", "items": _ref("DeadLetter"), "description": "The first ones, oldest first."},
        },
    },
    "DeadLetterSelection": {
        "type": "object",
        "additionalProperties": False,
        "description": "Either ids or all.",
        "properties": {
            "ids": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "The ids of the dead letters to take.",
            },
            "all": {"const": True, "description": "Take every dead letter the queue holds."},
        },
    },
    "DeadLetterOutcome": {
        "type": "object",
        "required": ["function", "queue", "missing"],
        "properties": {
            "function": {"type": "string"},
            "queue": {"type": "string"},
            "replayed": {"type": "integer", "description": "How many went back to the function's queue."},
            "purged": {"type": "integer", "description": "How many were deleted."},
            "missing": {"type": "array", "items": {"type": "string"}, "description": "Ids asked for and not found."},
        },
    },
    "LogLine": {
        "type": "object",
        "required": ["replica", "line"],
        "properties": {
            "replica": {"type": "string", "description": "The replica that wrote it."},
            "line": {"type": "string", "description": "The line as written (JSON for the runner's own lines)."},
        },
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/v1/openapi.json": {
        "get": _operation("This document", {200: _answer("The OpenAPI document.", {"type": "object"})}, (), public=True),
    },
    "/v1/functions": {
        "get": _operation("List the functions", {200: _answer("Every function.", _list_of("functions", "Function"))}, (503,)),
        "post": _operation(
            "Create a function from its first package (its name comes from manifest.toml)",
            {201: _answer("The function's version 1.", _ref("Version"))},
            (400, 409, 413, 415, 422, 503),
            (DESCRIPTION,),
            ZIP_BODY,
        ),
    },
    "/v1/functions/{name}": {
        "get": _operation("Show a function", {200: _answer("The function.", _ref("FunctionDetail"))}, (404, 503), (NAME,)),
        "patch": _operation(
            "Update a function's description",
            {200: _answer("The function.", _ref("FunctionDetail"))},
            (400, 404, 413, 415, 422, 503),
            (NAME,),
            _json_body(_ref("FunctionUpdate")),
        ),
        "delete": _operation(
            "Delete a function: stop its replicas, remove its routes, versions and aliases",
            {204: _answer("Deleted.")},
            (404, 409, 503),
            (NAME,),
        ),
    },
    "/v1/functions/{name}/versions": {
        "get": _operation(
            "List a function's versions",
            {200: _answer("Its versions, oldest first.", _list_of("versions", "Version", function={"type": "string"}))},
            (404, 503),
            (NAME,),
        ),
        "post": _operation(
            "Upload a new version (the function is created if new); the same package again gives the same version",
            {
                201: _answer("The new version.", _ref("Version")),
                200: _answer("The same package as the latest version.", _ref("Version")),
            },
            (400, 404, 409, 413, 415, 422, 503),
            (NAME, DESCRIPTION),
            ZIP_BODY,
        ),
    },
    "/v1/functions/{name}/versions/{number}": {
        "get": _operation("Show a version", {200: _answer("The version.", _ref("Version"))}, (404, 503), (NAME, NUMBER)),
    },
    "/v1/functions/{name}/aliases/{alias}": {
        "get": _operation("Show where an alias points", {200: _answer("The alias.", _ref("Alias"))}, (404, 503), (NAME, ALIAS)),
        "put": _operation(
            "Point an alias at a version, optionally with a canary split; for live this is the rolling deploy",
            {200: DEPLOYED},
            (400, 404, 409, 413, 415, 422, 503),
            (NAME, ALIAS),
            _json_body(_ref("AliasUpdate")),
        ),
    },
    "/v1/functions/{name}/rollback": {
        "post": _operation(
            "Point live back at the version it served before (a rolling update too)",
            {200: DEPLOYED},
            (404, 409, 422, 503),
            (NAME,),
        ),
    },
    "/v1/functions/{name}/scaling": {
        "get": _operation("Show a function's scaling", {200: _answer("Its scaling.", _ref("Scaling"))}, (404, 503), (NAME,)),
        "put": _operation(
            "Set the replicas wanted and the autoscaler's bounds; answers once the replicas are healthy",
            {200: _answer("Its scaling now.", _ref("Scaling"))},
            (400, 404, 413, 415, 422, 503),
            (NAME,),
            _json_body(_ref("ScalingUpdate")),
        ),
    },
    "/v1/functions/{name}/executions": {
        "post": _operation(
            "Run a request on the function: at once (200, the finished execution) or in the background (202)",
            {200: _answer("The finished execution.", _ref("Execution")), 202: _answer("Started.", _ref("ExecutionAccepted"))},
            (400, 404, 413, 415, 422, 503),
            (NAME,),
            _json_body(_ref("ExecutionRequest")),
        ),
    },
    "/v1/functions/{name}/logs": {
        "get": _operation(
            "The last lines logged by the function's replicas, oldest first",
            {200: _answer("Its lines.", _list_of("lines", "LogLine", function={"type": "string"}))},
            (400, 404, 503),
            (NAME, LINES),
        ),
    },
    "/v1/functions/{name}/dead-letters": {
        "get": _operation(
            "List the messages a queue function gave up on, oldest first; none is removed",
            {200: _answer("Its dead letters.", _ref("DeadLetters"))},
            (400, 404, 503),
            (NAME, LIMIT),
        ),
    },
    "/v1/functions/{name}/dead-letters/replay": {
        "post": _operation(
            "Send dead letters back to the function's queue, their attempts reset",
            {200: _answer("How many were replayed.", _ref("DeadLetterOutcome"))},
            (400, 404, 413, 415, 422, 503),
            (NAME,),
            _json_body(_ref("DeadLetterSelection")),
        ),
    },
    "/v1/functions/{name}/dead-letters/purge": {
        "post": _operation(
            "Delete dead letters",
            {200: _answer("How many were deleted.", _ref("DeadLetterOutcome"))},
            (400, 404, 413, 415, 422, 503),
            (NAME,),
            _json_body(_ref("DeadLetterSelection")),
        ),
    },
    "/v1/executions": {
        "get": _operation(
            "The latest executions, newest first",
            {200: _answer("The executions.", _list_of("executions", "ExecutionSummary"))},
            (400, 503),
            (_parameter("function", "query", {"type": "string"}, "Only this function's."), LIMIT),
        ),
    },
    "/v1/executions/{execution_id}": {
        "get": _operation(
            "Show an execution: status, result, duration and logs",
            {200: _answer("The execution.", _ref("Execution"))},
            (404, 503),
            (EXECUTION,),
        ),
    },
    "/v1/replicas": {
        "get": _operation(
            "Every replica and its health",
            {200: _answer("The replicas.", _list_of("replicas", "Replica"))},
            (400, 503),
            (_parameter("function", "query", {"type": "string"}, "Only this function's."),),
        ),
    },
}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": http.HTTPStatus(status).phrase, "content": _json(_ref("Error"))}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
    return response


def document() -> dict[str, Any]:
    """The OpenAPI document as data."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tombola control plane",
            "version": "1",
            "description": "Functions, versions, aliases (deploys and canaries), scaling, executions, logs, "
            "dead letters and replicas of a tombola pack. Every operation but this document needs the control-plane token.",
        },
        "servers": [{"url": "/"}],
        "security": TOKEN,
        "paths": PATHS,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer", "description": "TOMBOLA_TOKEN"}},
            "schemas": SCHEMAS,
            "responses": {str(status): _error_response(status) for status in ERRORS},
        },
    }
