"""Executions: one request run on a function on behalf of the control plane, and its record.

An execution goes through the gateway's internal listener (``/fn/<function>``)
like any internal caller, so it gets the same balancing, deadline, retries and
cold start as the function's other traffic. Its id is sent as ``X-Request-Id``:
the replica logs it on every line of that request, which is how the record's
``logs`` are found. A synchronous execution answers once it is done; an
asynchronous one runs as a task of the gateway and is read back by its id.
Every execution is a row of the ``executions`` table, kept for a week.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import time
import uuid
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from yarl import URL

from gateway.replica_logs import LogLine, ReplicaLogs
from runner.app import REQUEST_ID_HEADER
from runner.database import isoformat, utcnow

log = logging.getLogger("tombola.gateway")

MAX_RESULT_BYTES = 1024 * 1024
SLACK = 30.0  # beyond the function's timeout: a cold start may come first
LOG_WAIT = (0.05, 0.1, 0.2, 0.4)  # a replica's last line may reach its file just after the answer
STOP_GRACE = 5.0
RETENTION = datetime.timedelta(days=7)
PRUNE_INTERVAL = 3600.0

# Microseconds on MariaDB too, so that the newest execution lists first.
MOMENT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

metadata = sa.MetaData()

executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("function", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("result", sa.JSON),
    sa.Column("created_at", MOMENT, nullable=False),
    sa.Column("finished_at", MOMENT),
    sa.Column("duration", sa.Float),
    sa.Column("logs", sa.JSON),
    sa.Index("ix_executions_function_created", "function", "created_at"),
    sa.Index("ix_executions_created", "created_at"),
)


@dataclasses.dataclass(frozen=True)
class ExecutionRequest:
    """What to run: an HTTP request to the function, its body a JSON value or None."""

    method: str
    path: str
    body: Any = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Target:
    """The function to run: its name, its live version and its timeout."""

    function: str
    version: int | None
    timeout: float


def link(execution_id: str) -> str:
    """The control-plane path of an execution."""
    return f"/v1/executions/{execution_id}"


def _record(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "function": row.function,
        "version": row.version,
        "status": row.status,
        "request": row.request,
        "result": row.result,
        "created_at": isoformat(row.created_at),
        "finished_at": isoformat(row.finished_at),
        "duration": row.duration,
        "logs": row.logs or [],
        "links": {"self": link(row.id)},
    }


def _summary(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "function": row.function,
        "version": row.version,
        "status": row.status,
        "request": {"method": row.request["method"], "path": row.request["path"]},
        "result_status": (row.result or {}).get("status"),
        "created_at": isoformat(row.created_at),
        "finished_at": isoformat(row.finished_at),
        "duration": row.duration,
        "links": {"self": link(row.id)},
    }


def _decode(data: bytes, content_type: str) -> tuple[Any, bool]:
    """A function's answer as JSON when it is JSON, else as text; and whether it was cut."""
    truncated = len(data) > MAX_RESULT_BYTES
    if not truncated and content_type.split(";")[0].strip().lower() == "application/json":
        try:
            return json.loads(data), False
        except (ValueError, RecursionError):
            pass
    return data[:MAX_RESULT_BYTES].decode("utf-8", "replace"), truncated


def _served_version(lines: list[LogLine], fallback: int | None) -> int | None:
    """The version named by the replica that logged the request, else ``fallback``."""
    for line in lines:
        version = line.field("version")
        if isinstance(version, str) and version.isdigit():
            return int(version)
    return fallback


class Executions:
    """Runs executions through the internal listener and keeps their records."""

    def __init__(self, engine: sa.Engine, session: aiohttp.ClientSession, internal_url: str, logs: ReplicaLogs) -> None:
        self.engine = engine
        self.session = session
        self.internal_url = internal_url
        self.logs = logs
        self._tasks: set[asyncio.Task[dict[str, Any]]] = set()
        self._next_prune = 0.0

    async def run(self, target: Target, request: ExecutionRequest) -> dict[str, Any]:
        """Run ``request`` now and answer its finished record."""
        task = await self._start(target, request)
        return await asyncio.shield(task)  # a client that leaves does not stop the execution

    async def submit(self, target: Target, request: ExecutionRequest) -> str:
        """Start ``request`` in the background; answer the execution's id."""
        task = await self._start(target, request)
        return task.get_name()

    async def get(self, execution_id: str) -> dict[str, Any] | None:
        """The record of an execution, or None."""
        query = sa.select(executions).where(executions.c.id == execution_id)
        row = await asyncio.to_thread(self._first, query)
        return None if row is None else _record(row)

    async def recent(self, function: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest executions, newest first, of one function or of all."""
        query = sa.select(executions).order_by(executions.c.created_at.desc(), executions.c.id).limit(limit)
        if function is not None:
            query = query.where(executions.c.function == function)
        rows = await asyncio.to_thread(self._all, query)
        return [_summary(row) for row in rows]

    async def stop(self) -> None:
        """Let running executions finish for a few seconds, then record the rest as failed."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_GRACE)
        for task in set(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _start(self, target: Target, request: ExecutionRequest) -> asyncio.Task[dict[str, Any]]:
        execution_id = uuid.uuid4().hex
        now = utcnow()
        row = {
            "id": execution_id,
            "function": target.function,
            "version": target.version,
            "status": "running",
            "request": request.as_dict(),
            "created_at": now,
        }
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_INTERVAL
            await asyncio.to_thread(self._write, executions.delete().where(executions.c.created_at < now - RETENTION))
        await asyncio.to_thread(self._write, executions.insert().values(**row))
        task = asyncio.create_task(self._execute(execution_id, target, request), name=execution_id)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # logged by _execute; retrieved here so that asyncio does not report it again

    async def _execute(self, execution_id: str, target: Target, request: ExecutionRequest) -> dict[str, Any]:
        started = time.monotonic()
        try:
            result = await self._send(execution_id, target, request)
        except asyncio.CancelledError:
            failure = {"title": "Gateway stopped", "description": "The gateway stopped before the execution finished."}
            await self._finish(execution_id, target, {"status": 503, "body": failure, "truncated": False}, started)
            raise
        try:
            return await self._finish(execution_id, target, result, started)
        except Exception:
            log.exception("execution not recorded", extra={"execution": execution_id, "function": target.function})
            raise

    async def _send(self, execution_id: str, target: Target, request: ExecutionRequest) -> dict[str, Any]:
        """The function's answer: ``{"status", "body", "truncated"}``."""
        headers = {REQUEST_ID_HEADER: execution_id}
        payload = None
        if request.body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(request.body).encode()
        url = URL(f"{self.internal_url}/fn/{target.function}{request.path}", encoded=True)
        try:
            async with self.session.request(
                request.method,
                url,
                headers=headers,
                data=payload,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=target.timeout + SLACK),
            ) as answer:
                body, truncated = _decode(await answer.read(), answer.headers.get("Content-Type", ""))
                return {"status": answer.status, "body": body, "truncated": truncated}
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("execution failed to reach the gateway", extra={"execution": execution_id, "error": repr(error)})
            description = f"The gateway's internal listener did not answer: {type(error).__name__} {error}".strip()
            return {"status": 502, "body": {"title": "Execution failed", "description": description}, "truncated": False}

    async def _finish(self, execution_id: str, target: Target, result: dict[str, Any], started: float) -> dict[str, Any]:
        duration = round(time.monotonic() - started, 4)
        lines = await self._lines(target.function, execution_id)
        values = {
            "status": "succeeded" if 200 <= result["status"] < 400 else "failed",
            "version": _served_version(lines, target.version),
            "result": result,
            "finished_at": utcnow(),
            "duration": duration,
            "logs": [line.as_dict() for line in lines],
        }
        await asyncio.to_thread(self._write, executions.update().where(executions.c.id == execution_id).values(**values))
        log.info(
            "execution finished",
            extra={"execution": execution_id, "function": target.function, "status": values["status"], "duration": duration},
        )
        record = await self.get(execution_id)
        if record is None:
            raise LookupError(f"execution {execution_id} vanished from the executions table")
        return record

    async def _lines(self, function: str, execution_id: str) -> list[LogLine]:
        lines: list[LogLine] = []
        for delay in LOG_WAIT:
            lines = await asyncio.to_thread(self.logs.matching, function, execution_id)
            if any(line.field("logger") == "tombola.access" for line in lines):
                break
            await asyncio.sleep(delay)
        return lines

    def _write(self, statement: sa.Executable) -> None:
        with self.engine.begin() as connection:
            connection.execute(statement)

    def _first(self, query: sa.Select[Any]) -> sa.Row[Any] | None:
        with self.engine.connect() as connection:
            return connection.execute(query).first()

    def _all(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        with self.engine.connect() as connection:
            return list(connection.execute(query))
