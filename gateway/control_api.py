"""The control plane's HTTP API under ``/v1``: functions, versions, aliases, scaling, executions, logs, replicas.

Every ``/v1`` path but ``/v1/openapi.json`` needs ``Authorization: Bearer
<token>``; the token is compared in constant time. Resources are thin: they
check the input, call the ControlPlane (gateway.control), Executions
(gateway.executions) or DeadLetters (gateway.dead_letters) and answer JSON. A ControlError becomes its status with
its message; bad input is a 4xx that says what is wrong, never a 500.
``gateway.openapi`` documents every route; a test keeps both in step.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import io
import json
import logging
import re
import zipfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import falcon
import falcon.asgi
import sqlalchemy.exc

from gateway import openapi, packages
from gateway.config import GatewayConfig
from gateway.control import ControlError, ControlPlane
from gateway.dead_letters import DeadLetters, Selection
from gateway.executions import ExecutionRequest, Executions, Target, link
from gateway.replica_logs import ReplicaLogs
from runner import manifest as manifest_module
from runner.database import create_engine
from runner.errors import BackendUnavailable
from runner.manifest import NAME_PATTERN, ManifestError
from runner.settings import Settings

log = logging.getLogger("tombola.gateway")
Progress = Callable[[str], None]
T = TypeVar("T")

PREFIX = "/v1"
PUBLIC_PATHS = frozenset({"/v1/openapi.json"})
ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed"})
NDJSON = "application/x-ndjson"
MAX_DESCRIPTION = 200
MAX_LOG_LINES = 10_000
MAX_LISTED = 500
MAX_SELECTED = 1000
MAX_MESSAGE_ID = 255
EXECUTION_ID = re.compile(r"[0-9a-f]{32}")
EXECUTION_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,2047}")
EXECUTION_METHODS = ("GET", "POST")


class TokenAuth:
    """Middleware: ``/v1`` answers 401 unless the request carries the control-plane token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if not (req.path == PREFIX or req.path.startswith(PREFIX + "/")) or req.path in PUBLIC_PATHS:
            return
        scheme, _, credentials = (req.get_header("Authorization") or "").partition(" ")
        given = credentials.strip().encode()
        # An unset token matches nothing; compare_digest takes as long whatever the difference.
        if scheme.lower() != "bearer" or not self._token or not hmac.compare_digest(given, self._token):
            raise falcon.HTTPUnauthorized(
                title="Token required",
                description="Send the control-plane token as 'Authorization: Bearer <token>'.",
                challenges=['Bearer realm="tombola"'],
            )


# Input ---------------------------------------------------------------------------------------------------------


def _unprocessable(description: str) -> falcon.HTTPUnprocessableEntity:
    return falcon.HTTPUnprocessableEntity(title="Invalid request", description=description)


def _media_type(req: falcon.asgi.Request) -> str:
    return (req.content_type or "").split(";")[0].strip().lower()


async def _body(req: falcon.asgi.Request, limit: int) -> bytes:
    """The request body; 413 when it is larger than ``limit`` bytes."""
    too_large = falcon.HTTPContentTooLarge(title="Body too large", description=f"The body is limited to {limit} bytes.")
    if req.content_length is not None and req.content_length > limit:
        raise too_large
    data: bytes = await req.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data


async def _json_object(req: falcon.asgi.Request, limit: int, fields: frozenset[str]) -> dict[str, Any]:
    """The body as a JSON object holding only ``fields``."""
    if _media_type(req) not in ("", falcon.MEDIA_JSON):
        raise falcon.HTTPUnsupportedMediaType(title="JSON expected", description="Send the body as application/json.")
    raw = await _body(req, limit)
    if not raw.strip():
        raise falcon.HTTPBadRequest(title="Body required", description="This request needs a JSON object as its body.")
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise falcon.HTTPBadRequest(title="Invalid JSON", description=f"The body is not valid JSON: {error}.") from None
    except RecursionError:
        raise falcon.HTTPBadRequest(title="Invalid JSON", description="The body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise _unprocessable("The body must be a JSON object.")
    unknown = sorted(set(data) - fields)
    if unknown:
        raise _unprocessable(f"Unknown field(s): {', '.join(unknown)}; expected {', '.join(sorted(fields))}.")
    return data


def _integer(data: dict[str, Any], key: str, low: int, high: int) -> int | None:
    """``data[key]`` when it is a whole number in [low, high]; None when absent or null."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _unprocessable(f"{key} must be a whole number from {low} to {high}.")
    return value


def _required_integer(data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = _integer(data, key, low, high)
    if value is None:
        raise _unprocessable(f"{key} is required.")
    return value


def _description(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise _unprocessable(f"{where} must be text of at most {MAX_DESCRIPTION} characters.")
    return value


# Resources -----------------------------------------------------------------------------------------------------


class OpenApiDocument:
    """``GET /v1/openapi.json``: the API's description (no token needed)."""

    def __init__(self) -> None:
        self.data = json.dumps(openapi.document(), indent=1).encode()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.data


class Functions:
    """``/v1/functions``: list them; create one from its first package."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"functions": await self.control.list_functions()}

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        package, description = await _package(req)
        name = _named_function(package)
        if any(function["name"] == name for function in await self.control.list_functions()):
            raise falcon.HTTPConflict(
                title="Function exists",
                description=f"A function named {name} exists; upload to /v1/functions/{name}/versions instead.",
            )
        resp.media = await self.control.create_version(name, package, description)
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/functions/{name}"


class Function:
    """``/v1/functions/{name}``: show, update (description) or delete one function."""

    def __init__(self, control: ControlPlane, limit: int) -> None:
        self.control = control
        self.limit = limit

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        resp.media = await self.control.show_function(name)

    async def on_patch(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        data = await _json_object(req, self.limit, frozenset({"description"}))
        if "description" not in data:
            raise _unprocessable("Nothing to update: send description.")
        resp.media = await self.control.update_function(name, _description(data["description"], "description"))

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        await self.control.delete_function(name)
        resp.status = falcon.HTTP_204


def _named_function(package: bytes) -> str:
    """The function a package's manifest names (the control plane checks the rest of the package)."""
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            info = archive.getinfo("manifest.toml")
            if info.file_size > packages.MAX_MANIFEST:
                raise _unprocessable("manifest.toml is too large.")
            return manifest_module.loads(archive.read(info).decode("utf-8")).name
    except KeyError:
        raise _unprocessable("The package has no manifest.toml at its root.") from None
    except (UnicodeDecodeError, ManifestError) as error:
        raise _unprocessable(f"manifest.toml: {error}") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError) as error:
        description = f"The body is not a valid zip archive: {error}."
        raise falcon.HTTPBadRequest(title="Invalid package", description=description) from None


async def _package(req: falcon.asgi.Request) -> tuple[bytes, str]:
    """The uploaded zip and the ``description`` query parameter."""
    if _media_type(req) not in ZIP_TYPES:
        raise falcon.HTTPUnsupportedMediaType(title="Zip expected", description="Send the package as application/zip.")
    description = req.get_param("description", default="")
    if len(description) > MAX_DESCRIPTION:
        raise falcon.HTTPInvalidParam(f"It must be at most {MAX_DESCRIPTION} characters.", "description")
    package = await _body(req, packages.MAX_PACKAGE)
    if not package:
        raise falcon.HTTPBadRequest(title="Package required", description="The body must be the function's zip.")
    return package, description


class Versions:
    """``/v1/functions/{name}/versions``: list them; upload a new one (the function is created if new)."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        resp.media = {"function": name, "versions": await self.control.list_versions(name)}

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        package, description = await _package(req)
        version = await self.control.create_version(name, package, description)
        resp.status = falcon.HTTP_201 if version.get("created", True) else falcon.HTTP_200
        resp.location = f"/v1/functions/{name}/versions/{version['version']}"
        resp.media = version


class Version:
    """``/v1/functions/{name}/versions/{number}``: one version (immutable)."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str, number: int) -> None:
        resp.media = await self.control.show_version(name, number)


class Deploys:
    """Rolling updates started over HTTP; with ``Accept: application/x-ndjson`` their progress is streamed.

    The update runs as a task of its own: a client that leaves does not stop
    it half-way. The stream is ``{"progress": ...}`` lines while it works,
    then ``{"result": ...}`` or ``{"error": {"status", "title", "description"}}``.
    """

    def __init__(self) -> None:
        self._running: set[asyncio.Task[dict[str, Any]]] = set()

    async def answer(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, deploy: Callable[[Progress | None], Awaitable[dict[str, Any]]]
    ) -> None:
        """Run ``deploy`` and answer its result, streamed with its progress if the client prefers NDJSON."""
        if req.client_prefers([falcon.MEDIA_JSON, NDJSON]) != NDJSON:
            resp.media = await deploy(None)
            return
        resp.content_type = NDJSON
        resp.stream = self._stream(deploy)

    async def _stream(self, deploy: Callable[[Progress | None], Awaitable[dict[str, Any]]]) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        messages: asyncio.Queue[str] = asyncio.Queue()

        def say(message: str) -> None:  # from the event loop or from a thread
            loop.call_soon_threadsafe(messages.put_nowait, message)

        task = asyncio.ensure_future(deploy(say))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        while not task.done() or not messages.empty():
            message = asyncio.ensure_future(messages.get())
            await asyncio.wait({message, task}, return_when=asyncio.FIRST_COMPLETED)
            if message.done():
                yield _line({"progress": message.result()})
            else:
                message.cancel()
        try:
            yield _line({"result": task.result()})
        except ControlError as error:
            yield _line({"error": _error(error.status, str(error))})
        except Exception:
            log.exception("deploy failed")
            yield _line({"error": _error(500, "The deploy failed; the error was logged.")})


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def _error(status: int, description: str) -> dict[str, Any]:
    return {"status": status, "title": http.HTTPStatus(status).phrase, "description": description}


class Alias:
    """``/v1/functions/{name}/aliases/{alias}``: where an alias points; point it (for ``live``: deploy)."""

    def __init__(self, control: ControlPlane, deploys: Deploys, limit: int) -> None:
        self.control = control
        self.deploys = deploys
        self.limit = limit

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str, alias: str) -> None:
        resp.media = await self.control.show_alias(name, alias)

    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str, alias: str) -> None:
        data = await _json_object(req, self.limit, frozenset({"version", "canary"}))
        version = _required_integer(data, "version", 1, 2**31 - 1)
        canary = data.get("canary")
        canary_version, weight = None, 0
        if canary is not None:
            if not isinstance(canary, dict) or set(canary) != {"version", "weight"}:
                raise _unprocessable("canary must be null or an object with version and weight.")
            canary_version = _required_integer(canary, "version", 1, 2**31 - 1)
            weight = _required_integer(canary, "weight", 1, 99)
            if canary_version == version:
                raise _unprocessable("The canary must be another version than the alias's own.")

        def deploy(progress: Progress | None) -> Awaitable[dict[str, Any]]:
            return self.control.set_alias(name, alias, version, canary_version, weight, progress=progress)

        await self.deploys.answer(req, resp, deploy)


class Rollback:
    """``POST /v1/functions/{name}/rollback``: ``live`` back to the version it pointed to before (a deploy too)."""

    def __init__(self, control: ControlPlane, deploys: Deploys) -> None:
        self.control = control
        self.deploys = deploys

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        await self.deploys.answer(req, resp, lambda progress: self.control.rollback(name, progress=progress))


class Scaling:
    """``/v1/functions/{name}/scaling``: replicas wanted and the autoscaler's bounds."""

    def __init__(self, control: ControlPlane, limit: int) -> None:
        self.control = control
        self.limit = limit

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        resp.media = (await self.control.show_function(name))["scaling"]

    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        data = await _json_object(req, self.limit, frozenset({"replicas", "min", "max"}))
        wanted = {key: _integer(data, key, 0, 64) for key in ("replicas", "min", "max")}
        if all(value is None for value in wanted.values()):
            raise _unprocessable("Send at least one of replicas, min and max.")
        resp.media = await self.control.scale(name, **wanted)


class FunctionExecutions:
    """``POST /v1/functions/{name}/executions``: run a request on the function, now or in the background."""

    def __init__(self, control: ControlPlane, executions: Executions, limit: int) -> None:
        self.control = control
        self.executions = executions
        self.limit = limit

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        data = await _json_object(req, self.limit, frozenset({"method", "path", "body", "async"}))
        background = data.get("async", False)
        if not isinstance(background, bool):
            raise _unprocessable("async must be true or false.")
        function = await self.control.show_function(name)
        if function["live"] is None or function["manifest"] is None:
            raise falcon.HTTPConflict(title="Not deployed", description=f"Function {name} has no live version: deploy one first.")
        request = self._request(data, function["manifest"])
        if len(json.dumps(request.body)) > self.limit:
            description = f"Execution bodies are limited to {self.limit} bytes."
            raise falcon.HTTPContentTooLarge(title="Body too large", description=description)
        target = Target(name, function["live"]["version"], float(function["manifest"]["limits"]["timeout"]))
        if not background:
            resp.media = await self.executions.run(target, request)
            return
        execution_id = await self.executions.submit(target, request)
        resp.status = falcon.HTTP_202
        resp.location = link(execution_id)
        resp.media = {"id": execution_id, "status": "running", "links": {"self": link(execution_id)}}

    @staticmethod
    def _request(data: dict[str, Any], manifest: dict[str, Any]) -> ExecutionRequest:
        body = data.get("body")
        method = data.get("method", "GET" if body is None else "POST")
        if method not in EXECUTION_METHODS:
            raise _unprocessable(f"method must be one of {', '.join(EXECUTION_METHODS)}.")
        if method == "GET" and body is not None:
            raise _unprocessable("A GET execution takes no body.")
        path = data.get("path", manifest["trigger"].get("path") or "/")
        if not isinstance(path, str) or not EXECUTION_PATH.fullmatch(path):
            raise _unprocessable("path must be an absolute, percent-encoded path such as /user/42.")
        if any(segment in (".", "..") for segment in path.split("?")[0].split("/")):
            raise _unprocessable("path must not hold . or .. segments.")
        return ExecutionRequest(method, path, body)


class ExecutionRecords:
    """``/v1/executions`` (the latest, ``?function=``) and ``/v1/executions/{id}`` (one, with result and logs)."""

    def __init__(self, executions: Executions) -> None:
        self.executions = executions

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        function = req.get_param("function")
        if function is not None and not NAME_PATTERN.fullmatch(function):
            raise falcon.HTTPInvalidParam(f"A function name matches {NAME_PATTERN.pattern}.", "function")
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_LISTED, default=50)
        resp.media = {"executions": await self.executions.recent(function, limit)}

    async def on_get_item(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, execution_id: str) -> None:
        record = await self.executions.get(execution_id) if EXECUTION_ID.fullmatch(execution_id) else None
        if record is None:
            raise falcon.HTTPNotFound(title="No such execution", description=f"No execution has the id {execution_id!r}.")
        resp.media = record


class Logs:
    """``GET /v1/functions/{name}/logs?lines=N``: the last lines across the function's replicas."""

    def __init__(self, control: ControlPlane, logs: ReplicaLogs) -> None:
        self.control = control
        self.logs = logs

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        count = req.get_param_as_int("lines", min_value=1, max_value=MAX_LOG_LINES, default=100)
        await self.control.show_function(name)  # 404 for an unknown function
        lines = await asyncio.to_thread(self.logs.tail, name, count)
        resp.media = {"function": name, "lines": [line.as_dict() for line in lines]}


class FunctionDeadLetters:
    """``/v1/functions/{name}/dead-letters``: what a queue function gave up on (gateway.dead_letters).

    ``GET`` lists them (``?limit=``) and removes none; ``POST .../replay`` sends
    them back to the function's queue and ``POST .../purge`` deletes them, with
    ``{"ids": [...]}`` or, explicitly, ``{"all": true}``.
    """

    def __init__(self, control: ControlPlane, dead_letters: DeadLetters, limit: int) -> None:
        self.control = control
        self.dead_letters = dead_letters
        self.limit = limit

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_LISTED, default=50)
        listing = await _on_broker(self.dead_letters.list, await self._queue(name), limit)
        resp.media = {"function": name, **listing.as_dict()}

    async def on_post_replay(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        selection = await self._selection(req)
        outcome = await _on_broker(self.dead_letters.replay, await self._queue(name), selection)
        resp.media = {"function": name, "queue": outcome.queue, "replayed": outcome.count, "missing": outcome.missing}

    async def on_post_purge(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        selection = await self._selection(req)
        outcome = await _on_broker(self.dead_letters.purge, await self._queue(name), selection)
        resp.media = {"function": name, "queue": outcome.queue, "purged": outcome.count, "missing": outcome.missing}

    async def _queue(self, name: str) -> str:
        """The queue ``name`` consumes; 404 unless it is a queue function."""
        manifest = (await self.control.show_function(name))["manifest"] or {}
        trigger = manifest.get("trigger") or {}
        if trigger.get("type") != "queue":
            description = f"Function {name} is not triggered by a queue: it has no dead letters."
            raise falcon.HTTPNotFound(title="Not a queue function", description=description)
        queue: str = trigger.get("queue") or name
        return queue

    async def _selection(self, req: falcon.asgi.Request) -> Selection:
        data = await _json_object(req, self.limit, frozenset({"ids", "all"}))
        ids, every = data.get("ids"), data.get("all")
        if (ids is None) == (every is None):
            raise _unprocessable('Send either "ids": [message ids] or "all": true.')
        if every is not None:
            if every is not True:
                raise _unprocessable("all must be true: it takes every dead letter.")
            return Selection(every=True)
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_SELECTED
            or not all(isinstance(item, str) and 0 < len(item) <= MAX_MESSAGE_ID for item in ids)
        ):
            raise _unprocessable(f"ids must be a list of 1 to {MAX_SELECTED} message ids of 1 to {MAX_MESSAGE_ID} characters.")
        return Selection(frozenset(ids))


async def _on_broker(call: Callable[..., T], *args: Any) -> T:
    """Run a blocking broker operation in a thread; the broker unreachable is a 503."""
    try:
        return await asyncio.to_thread(call, *args)
    except BackendUnavailable as error:
        log.warning("message broker unavailable", extra={"error": str(error)})
        raise falcon.HTTPServiceUnavailable(
            title="Message broker unavailable",
            description="The message broker cannot be reached right now; retry shortly.",
            retry_after=2,
        ) from None


class Replicas:
    """``GET /v1/replicas``: every replica and its health (``?function=`` for one function's)."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        function = req.get_param("function")
        replicas = await self.control.replicas()
        resp.media = {"replicas": [replica for replica in replicas if function in (None, replica["function"])]}


# Wiring --------------------------------------------------------------------------------------------------------


async def _control_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, error: ControlError, params: Any) -> None:
    raise falcon.HTTPError(error.status, title=http.HTTPStatus(error.status).phrase, description=str(error))


async def _database_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: Any) -> None:
    log.warning("database unavailable", extra={"path": req.path, "error": type(error).__name__})
    raise falcon.HTTPServiceUnavailable(
        title="Database unavailable", description="The database cannot be reached right now; retry shortly.", retry_after=2
    )


class ControlApi:
    """The ``/v1`` routes and what they need; ``install`` adds them to an app."""

    def __init__(
        self,
        control: ControlPlane,
        executions: Executions,
        logs: ReplicaLogs,
        token: str,
        limit: int,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        """``dead_letters`` defaults to the broker the environment names."""
        self.control = control
        self.executions = executions
        self.logs = logs
        self.token = token
        self.limit = limit
        records = ExecutionRecords(executions)
        deploys = Deploys()
        letters = FunctionDeadLetters(control, dead_letters or DeadLetters(Settings.from_environ()), limit)
        self._routes: list[tuple[str, object, str | None]] = [
            ("/v1/openapi.json", OpenApiDocument(), None),
            ("/v1/functions", Functions(control), None),
            ("/v1/functions/{name}", Function(control, limit), None),
            ("/v1/functions/{name}/versions", Versions(control), None),
            ("/v1/functions/{name}/versions/{number:int(min=1)}", Version(control), None),
            ("/v1/functions/{name}/aliases/{alias}", Alias(control, deploys, limit), None),
            ("/v1/functions/{name}/rollback", Rollback(control, deploys), None),
            ("/v1/functions/{name}/scaling", Scaling(control, limit), None),
            ("/v1/functions/{name}/executions", FunctionExecutions(control, executions, limit), None),
            ("/v1/functions/{name}/logs", Logs(control, logs), None),
            ("/v1/functions/{name}/dead-letters", letters, None),
            ("/v1/functions/{name}/dead-letters/replay", letters, "replay"),
            ("/v1/functions/{name}/dead-letters/purge", letters, "purge"),
            ("/v1/executions", records, None),
            ("/v1/executions/{execution_id}", records, "item"),
            ("/v1/replicas", Replicas(control), None),
        ]

    @classmethod
    def create(
        cls, control: ControlPlane, config: GatewayConfig, settings: Settings, session: aiohttp.ClientSession
    ) -> ControlApi:
        """The API of a gateway: executions recorded in the pack's database, run through its internal listener."""
        logs = ReplicaLogs(settings.home / "logs")
        executions = Executions(create_engine(settings.database_url, settings.database_pool_size), session, config.internal_url, logs)
        return cls(control, executions, logs, config.token, config.max_body, DeadLetters(settings))

    def install(self, app: falcon.asgi.App) -> None:
        """Serve ``/v1`` on ``app``, behind the token."""
        app.add_middleware(TokenAuth(self.token))
        app.add_error_handler(ControlError, _control_error)
        for error in (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError):
            app.add_error_handler(error, _database_error)
        for template, resource, suffix in self._routes:
            app.add_route(template, resource, suffix=suffix)

    async def stop(self) -> None:
        """Finish or fail the running executions; close the database pool."""
        await self.executions.stop()
        self.executions.engine.dispose()
