"""The ``/v1`` HTTP layer on its own: token, input checks, status codes, streaming, executions' records;
and the replica's side of execution logs (request ids on its log lines).

The control plane behind it is a small in-test stand-in (the real one is
exercised end to end in test_control_api_pack.py and test_cli.py); the
executions run through a stand-in internal listener that logs like a replica.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import falcon
import falcon.asgi
import falcon.inspect
import falcon.testing
import pytest

from gateway import executions as executions_module
from gateway.app import create_internal_app, create_public_app
from gateway.balancer import Balancer
from gateway.control import ControlError
from gateway.control_api import ControlApi
from gateway.executions import Executions
from gateway.proxy import Proxy
from gateway.registry import Registry
from gateway.replica_logs import ReplicaLogs
from runner.database import create_engine, utcnow
from runner.logs import JsonFormatter
from tests.support import function_client, make_settings, migrated, serving

TOKEN = "unit-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE_PARAMS = {"name": "i", "number": "1", "alias": "live", "execution_id": "0" * 32}
MANIFEST = {
    "name": "i",
    "description": "",
    "trigger": {"type": "http", "public_prefix": "/srvi", "queue": None, "path": None},
    "limits": {"timeout": 5.0, "memory_mb": 256, "concurrency": 10},
    "scaling": {"min": 1, "max": 4, "target": 10},
    "reads": [],
}
SCALING = {"replicas": 1, "min": 1, "max": 4, "target": 10}


class StandInControl:
    """The ControlPlane's interface over one function ``i`` with one version; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def _check(self, name: str) -> None:
        if name != "i":
            raise ControlError(404, f"No function is named {name!r}.")

    def _function(self) -> dict[str, Any]:
        return {
            "name": "i",
            "description": "",
            "trigger": "http",
            "public_prefix": "/srvi",
            "live": {"version": 1, "canary": None},
            "scaling": SCALING,
            "versions": 1,
        }

    async def list_functions(self) -> list[dict[str, Any]]:
        return [self._function()]

    async def show_function(self, name: str) -> dict[str, Any]:
        self._check(name)
        return {**self._function(), "manifest": MANIFEST, "aliases": []}

    async def update_function(self, name: str, description: str | None) -> dict[str, Any]:
        self._check(name)
        self.calls.append(("update", name, description))
        return await self.show_function(name)

    async def delete_function(self, name: str) -> None:
        self._check(name)
        self.calls.append(("delete", name))

    async def create_version(self, name: str, package: bytes, description: str = "") -> dict[str, Any]:
        self.calls.append(("create_version", name, len(package), description))
        return {"function": name, "version": 2, "sha256": "0" * 64, "size": len(package), "created": True}

    async def list_versions(self, name: str) -> list[dict[str, Any]]:
        self._check(name)
        return []

    async def show_version(self, name: str, number: int) -> dict[str, Any]:
        self._check(name)
        if number != 1:
            raise ControlError(404, f"Function {name} has no version {number}.")
        return {"function": name, "version": 1}

    async def show_alias(self, name: str, alias: str) -> dict[str, Any]:
        self._check(name)
        return {"function": name, "alias": alias, "version": 1, "canary": None}

    async def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        canary_version: int | None = None,
        canary_weight: int = 0,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        self._check(name)
        self.calls.append(("set_alias", name, alias, version, canary_version, canary_weight))
        if version == 9:
            raise ControlError(422, "The new version of i failed its health check.")
        for step in ("starting 1 replica", "replica healthy"):
            if progress is not None:
                progress(step)
            await asyncio.sleep(0.01)
        canary = None if canary_version is None else {"version": canary_version, "weight": canary_weight}
        return {"function": name, "alias": alias, "version": version, "canary": canary, "replicas": []}

    async def rollback(self, name: str, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        self._check(name)
        return {"function": name, "alias": "live", "version": 1, "canary": None, "replicas": []}

    async def scale(
        self, name: str, replicas: int | None = None, min: int | None = None, max: int | None = None  # noqa: A002
    ) -> dict[str, int]:
        self._check(name)
        self.calls.append(("scale", name, replicas, min, max))
        return {**SCALING, "replicas": replicas or 1}

    def scaling(self, name: str) -> dict[str, int]:
        return SCALING

    async def replicas(self) -> list[dict[str, Any]]:
        return [{"id": "i-1", "function": "i", "version": 1, "healthy": True}, {"id": "s-1", "function": "s", "version": 1}]


def fake_replica(logs: Path) -> falcon.App:
    """A stand-in internal listener: ``/fn/i/...`` answers like I and logs the request id as a replica would."""

    class Answer:
        def on_get(self, req: falcon.Request, resp: falcon.Response, tail: str) -> None:
            if tail == "slow":
                time.sleep(0.3)
            if tail == "missing":
                raise falcon.HTTPNotFound(title="Unknown customer", description="No customer has the id 0.")
            request_id = req.get_header("X-Request-Id")
            folder = logs / "i"
            folder.mkdir(parents=True, exist_ok=True)
            entry = {"ts": "2026-01-01T00:00:00.000Z", "level": "info", "logger": "tombola.access", "msg": "request handled",
                     "version": "1", "request_id": request_id, "path": f"/{tail}"}
            with open(folder / "i-1.log", "a") as file:
                file.write(json.dumps(entry) + "\n")
            resp.media = {"id": 42, "tail": tail}

        on_post = on_get

    app = falcon.App()
    app.add_route("/fn/i/{tail}", Answer())
    return app


Scenario = Callable[[falcon.testing.ASGIConductor, StandInControl, ControlApi], Awaitable[None]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., None]]:
    """Run a scenario against the internal app (or the public one) with the stand-in control plane."""
    tmp_path = tmp_path_factory.mktemp("control_api")
    engine = create_engine(f"sqlite:///{tmp_path / 'control.db'}")
    executions_module.metadata.create_all(engine)
    logs = ReplicaLogs(tmp_path / "logs")

    with serving(fake_replica(tmp_path / "logs")) as internal_url:

        def runner(scenario: Scenario, public: bool = False) -> None:
            async def main() -> None:
                control = StandInControl()
                async with aiohttp.ClientSession() as session:
                    api = ControlApi(control, Executions(engine, session, internal_url, logs), logs, TOKEN, 1024)  # type: ignore[arg-type]
                    registry = Registry()
                    proxy = Proxy(registry, Balancer(), session, 1024)
                    factory = create_public_app if public else create_internal_app
                    async with falcon.testing.ASGIConductor(factory(registry, proxy, api)) as conductor:
                        await scenario(conductor, control, api)
                    await api.stop()

            asyncio.run(main())

        yield runner
    engine.dispose()


def v1_routes(app: falcon.asgi.App) -> list[tuple[str, str]]:
    """Every (URI template, method) the app serves under /v1, Falcon's own default responders left out."""
    return [
        (route.path, method.method)
        for route in falcon.inspect.inspect_routes(app)
        if route.path.startswith("/v1/")
        for method in route.methods
        if not method.internal
    ]


def concrete(template: str) -> str:
    path = template
    for name, value in SAMPLE_PARAMS.items():
        path = path.replace(f"{{{name}}}", value).replace(f"{{{name}:int(min=1)}}", value)
    assert "{" not in path, path
    return path


def test_every_protected_route_wants_the_token(run: Callable[..., None]) -> None:
    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        routes = v1_routes(conductor.app)
        assert len(routes) >= 19, routes
        refused = 0
        for template, method in routes:
            if template == "/v1/openapi.json":
                continue
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
                result = await conductor.simulate_request(method, concrete(template), headers=headers, body=b"{}")
                assert result.status_code == 401, (method, template, headers, result.text)
                assert result.headers["WWW-Authenticate"].startswith("Bearer"), (method, template)
                assert result.json["title"] == "Token required"
                refused += 1
        assert refused >= 18 * 5
        assert control.calls == []  # nothing reached the control plane
        # Unknown /v1 paths are refused first too: no probing of what exists.
        assert (await conductor.simulate_get("/v1/nothing/here")).status_code == 401
        assert (await conductor.simulate_get("/v1")).status_code == 401
        document = await conductor.simulate_get("/v1/openapi.json")
        assert document.status_code == 200 and document.json["openapi"].startswith("3.1")

    run(scenario)
    run(scenario, public=True)


def test_an_empty_token_opens_nothing() -> None:
    async def scenario() -> None:
        app = falcon.asgi.App()
        ControlApi(StandInControl(), None, None, "", 1024).install(app)  # type: ignore[arg-type]
        async with falcon.testing.ASGIConductor(app) as conductor:
            for header in ("Bearer ", "Bearer", ""):
                result = await conductor.simulate_get("/v1/functions", headers={"Authorization": header})
                assert result.status_code == 401

    asyncio.run(scenario())


def test_deeply_nested_json_is_a_400() -> None:
    async def scenario() -> None:
        app = falcon.asgi.App()
        ControlApi(StandInControl(), None, None, TOKEN, 64 * 1024).install(app)  # type: ignore[arg-type]
        async with falcon.testing.ASGIConductor(app) as conductor:
            nested = b"[" * 30_000 + b"]" * 30_000
            result = await conductor.simulate_put("/v1/functions/i/scaling", body=nested, headers=AUTH)
            assert result.status_code == 400 and result.json["description"] == "The body is nested too deeply."

    asyncio.run(scenario())


def test_reads_and_control_errors(run: Callable[..., None]) -> None:
    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        listed = await conductor.simulate_get("/v1/functions", headers=AUTH)
        assert listed.status_code == 200 and listed.json["functions"][0]["name"] == "i"
        unknown = await conductor.simulate_get("/v1/functions/nope", headers=AUTH)
        assert unknown.status_code == 404
        assert unknown.json == {"title": "Not Found", "description": "No function is named 'nope'."}
        assert (await conductor.simulate_get("/v1/functions/i/versions/2", headers=AUTH)).status_code == 404
        assert (await conductor.simulate_get("/v1/functions/i/versions/abc", headers=AUTH)).status_code == 404
        assert (await conductor.simulate_get("/v1/functions/i/versions/0", headers=AUTH)).status_code == 404
        assert (await conductor.simulate_get("/v1/functions/i/scaling", headers=AUTH)).json == SCALING
        replicas = await conductor.simulate_get("/v1/replicas", params={"function": "s"}, headers=AUTH)
        assert [replica["id"] for replica in replicas.json["replicas"]] == ["s-1"]
        assert (await conductor.simulate_get("/v1/executions/" + "f" * 32, headers=AUTH)).status_code == 404
        assert (await conductor.simulate_get("/v1/executions/'; drop", headers=AUTH)).status_code == 404
        assert (await conductor.simulate_get("/v1/executions", params={"function": "../x"}, headers=AUTH)).status_code == 400
        assert (await conductor.simulate_get("/v1/executions", params={"limit": "0"}, headers=AUTH)).status_code == 400
        assert (await conductor.simulate_get("/v1/functions/i/logs", params={"lines": "x"}, headers=AUTH)).status_code == 400
        assert (await conductor.simulate_get("/v1/functions/i/logs", params={"lines": "0"}, headers=AUTH)).status_code == 400
        empty = await conductor.simulate_get("/v1/functions/i/logs", headers=AUTH)
        assert empty.json == {"function": "i", "lines": []}
        deleted = await conductor.simulate_delete("/v1/functions/i", headers=AUTH)
        assert deleted.status_code == 204 and control.calls == [("delete", "i")]

    run(scenario)


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status"),
    [
        ("PATCH", "/v1/functions/i", b"{not json", "application/json", 400),
        ("PATCH", "/v1/functions/i", b"", "application/json", 400),
        ("PATCH", "/v1/functions/i", b"description=x", "application/x-www-form-urlencoded", 415),
        ("PATCH", "/v1/functions/i", b"[1]", "application/json", 422),
        ("PATCH", "/v1/functions/i", b'{"name": "j"}', "application/json", 422),
        ("PATCH", "/v1/functions/i", b'{"description": 5}', "application/json", 422),
        ("PATCH", "/v1/functions/i", b'{"description": "' + b"x" * 201 + b'"}', "application/json", 422),
        ("PATCH", "/v1/functions/i", b'{"description": "' + b"x" * 2000 + b'"}', "application/json", 413),
        ("PUT", "/v1/functions/i/aliases/live", b'{"version": "2"}', "application/json", 422),
        ("PUT", "/v1/functions/i/aliases/live", b'{"version": true}', "application/json", 422),
        ("PUT", "/v1/functions/i/aliases/live", b'{"version": 0}', "application/json", 422),
        ("PUT", "/v1/functions/i/aliases/live", b'{"canary": null}', "application/json", 422),
        ("PUT", "/v1/functions/i/aliases/live", b'{"version": 2, "canary": {"version": 3}}', "application/json", 422),
        ("PUT", "/v1/functions/i/aliases/live", b'{"version": 2, "canary": {"version": 3, "weight": 100}}', None, 422),
        ("PUT", "/v1/functions/i/aliases/live", b'{"version": 2, "canary": {"version": 2, "weight": 10}}', None, 422),
        ("PUT", "/v1/functions/i/aliases/live", b'{"version": 9}', None, 422),  # the control plane's own 422
        ("PUT", "/v1/functions/nope/aliases/live", b'{"version": 2}', None, 404),
        ("PUT", "/v1/functions/i/scaling", b"{}", "application/json", 422),
        ("PUT", "/v1/functions/i/scaling", b'{"replicas": -1}', "application/json", 422),
        ("PUT", "/v1/functions/i/scaling", b'{"replicas": 65}', "application/json", 422),
        ("PUT", "/v1/functions/i/scaling", b'{"replicas": 1.5}', "application/json", 422),
        ("POST", "/v1/functions/i/executions", b'{"method": "DELETE"}', "application/json", 422),
        ("POST", "/v1/functions/i/executions", b'{"method": "GET", "body": {"a": 1}}', "application/json", 422),
        ("POST", "/v1/functions/i/executions", b'{"path": "user/42"}', "application/json", 422),
        ("POST", "/v1/functions/i/executions", b'{"path": "/a/../../v1/functions"}', "application/json", 422),
        ("POST", "/v1/functions/i/executions", b'{"path": "/a b"}', "application/json", 422),
        ("POST", "/v1/functions/i/executions", b'{"path": 42}', "application/json", 422),
        ("POST", "/v1/functions/i/executions", b'{"async": "yes"}', "application/json", 422),
        ("POST", "/v1/functions/i/executions", b'{"body": "' + "\u00e9".encode() * 400 + b'"}', "application/json", 413),
        ("POST", "/v1/functions/nope/executions", b"{}", "application/json", 404),
        ("POST", "/v1/functions/i/versions", b"PK\x03\x04", "text/plain", 415),
        ("POST", "/v1/functions/i/versions", b"", "application/zip", 400),
        ("POST", "/v1/functions", b"not a zip", "application/zip", 400),
        ("POST", "/v1/functions", b"", None, 415),
    ],
)
def test_bad_input_is_a_clear_4xx(
    run: Callable[..., None], method: str, path: str, body: bytes, content_type: str | None, status: int
) -> None:
    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
        result = await conductor.simulate_request(method, path, body=body, headers=headers)
        assert result.status_code == status, result.text
        assert set(result.json) == {"title", "description"} and result.json["description"]

    run(scenario)


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_packages(run: Callable[..., None]) -> None:
    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        zipped = {**AUTH, "Content-Type": "application/zip"}
        uploaded = await conductor.simulate_post(
            "/v1/functions/i/versions", body=b"PK-data", params={"description": "faster"}, headers=zipped
        )
        assert uploaded.status_code == 201 and uploaded.headers["Location"] == "/v1/functions/i/versions/2"
        assert control.calls[-1] == ("create_version", "i", 7, "faster")
        too_long = await conductor.simulate_post(
            "/v1/functions/i/versions", body=b"x", params={"description": "d" * 201}, headers=zipped
        )
        assert too_long.status_code == 400
        huge = await conductor.simulate_post("/v1/functions/i/versions", body=b"x" * (10 * 2**20 + 1), headers=zipped)
        assert huge.status_code == 413
        # POST /v1/functions creates: the name comes from the manifest; an existing name is a conflict.

        def package(name: str) -> bytes:
            return _zip({"manifest.toml": f'name = "{name}"\n[trigger]\ntype = "http"\n'})

        existing = await conductor.simulate_post("/v1/functions", body=package("i"), headers=zipped)
        assert existing.status_code == 409 and "/v1/functions/i/versions" in existing.json["description"]
        created = await conductor.simulate_post("/v1/functions", body=package("j"), headers=zipped)
        assert created.status_code == 201 and created.headers["Location"] == "/v1/functions/j"
        nameless = await conductor.simulate_post("/v1/functions", body=_zip({"handler.py": ""}), headers=zipped)
        assert nameless.status_code == 422 and "manifest.toml" in nameless.json["description"]
        invalid = await conductor.simulate_post("/v1/functions", body=_zip({"manifest.toml": "name = 'J!'"}), headers=zipped)
        assert invalid.status_code == 422

    run(scenario)


def test_alias_update_streams_its_progress(run: Callable[..., None]) -> None:
    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        body = {"version": 1, "canary": {"version": 2, "weight": 10}}
        plain = await conductor.simulate_put("/v1/functions/i/aliases/live", json=body, headers=AUTH)
        assert plain.status_code == 200 and plain.json["canary"] == {"version": 2, "weight": 10}
        assert control.calls[-1] == ("set_alias", "i", "live", 1, 2, 10)
        streamed = await conductor.simulate_put(
            "/v1/functions/i/aliases/live", json={"version": 2}, headers={**AUTH, "Accept": "application/x-ndjson"}
        )
        assert streamed.status_code == 200 and streamed.headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in streamed.text.splitlines()]
        assert lines[:2] == [{"progress": "starting 1 replica"}, {"progress": "replica healthy"}]
        assert lines[2]["result"]["version"] == 2
        failed = await conductor.simulate_put(
            "/v1/functions/i/aliases/live", json={"version": 9}, headers={**AUTH, "Accept": "application/x-ndjson"}
        )
        error = json.loads(failed.text.splitlines()[-1])["error"]
        assert (error["status"], error["description"]) == (422, "The new version of i failed its health check.")
        rolled = await conductor.simulate_post("/v1/functions/i/rollback", headers={**AUTH, "Accept": "application/x-ndjson"})
        assert json.loads(rolled.text.splitlines()[-1])["result"]["version"] == 1

    run(scenario)


def test_scaling_and_description(run: Callable[..., None]) -> None:
    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        scaled = await conductor.simulate_put("/v1/functions/i/scaling", json={"replicas": 3, "max": 6}, headers=AUTH)
        assert scaled.status_code == 200 and control.calls[-1] == ("scale", "i", 3, None, 6)
        patched = await conductor.simulate_patch("/v1/functions/i", json={"description": "who is who"}, headers=AUTH)
        assert patched.status_code == 200 and control.calls[-1] == ("update", "i", "who is who")

    run(scenario)


def test_executions_sync_and_async(run: Callable[..., None]) -> None:
    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        done = await conductor.simulate_post("/v1/functions/i/executions", json={"path": "/user42"}, headers=AUTH)
        assert done.status_code == 200, done.text
        execution = done.json
        assert execution["status"] == "succeeded" and execution["version"] == 1
        assert execution["result"] == {"status": 200, "body": {"id": 42, "tail": "user42"}, "truncated": False}
        assert execution["request"] == {"method": "GET", "path": "/user42", "body": None}
        assert [json.loads(line["line"])["request_id"] for line in execution["logs"]] == [execution["id"]]
        assert execution["duration"] >= 0 and execution["finished_at"]

        missing = await conductor.simulate_post("/v1/functions/i/executions", json={"path": "/missing"}, headers=AUTH)
        assert missing.json["status"] == "failed" and missing.json["result"]["status"] == 404

        started = await conductor.simulate_post(
            "/v1/functions/i/executions", json={"path": "/slow", "body": {"n": 1}, "async": True}, headers=AUTH
        )
        assert started.status_code == 202
        accepted = started.json
        assert accepted == {"id": accepted["id"], "status": "running", "links": {"self": f"/v1/executions/{accepted['id']}"}}
        assert started.headers["Location"] == accepted["links"]["self"]
        running = await conductor.simulate_get(accepted["links"]["self"], headers=AUTH)
        assert running.json["status"] == "running" and running.json["result"] is None
        for _ in range(100):
            record = (await conductor.simulate_get(accepted["links"]["self"], headers=AUTH)).json
            if record["status"] != "running":
                break
            await asyncio.sleep(0.05)
        assert record["status"] == "succeeded" and record["request"]["method"] == "POST"
        assert record["result"]["body"] == {"id": 42, "tail": "slow"} and record["duration"] >= 0.3

        listed = (await conductor.simulate_get("/v1/executions", params={"function": "i"}, headers=AUTH)).json["executions"]
        assert [entry["id"] for entry in listed[:3]] == [accepted["id"], missing.json["id"], execution["id"]]
        assert [entry["result_status"] for entry in listed[:3]] == [200, 404, 200]
        assert (await conductor.simulate_get("/v1/executions", params={"function": "s"}, headers=AUTH)).json == {"executions": []}

    run(scenario)


def test_executions_older_than_a_week_are_forgotten(run: Callable[..., None]) -> None:
    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        old, recent = "a" * 32, "b" * 32
        with api.executions.engine.begin() as connection:
            for execution_id, age in ((old, 8), (recent, 6)):
                connection.execute(
                    executions_module.executions.insert().values(
                        id=execution_id, function="i", status="succeeded", request={"method": "GET", "path": "/"},
                        created_at=utcnow() - datetime.timedelta(days=age),
                    )
                )
        assert (await conductor.simulate_post("/v1/functions/i/executions", json={"path": "/x"}, headers=AUTH)).status_code == 200
        assert (await conductor.simulate_get(f"/v1/executions/{old}", headers=AUTH)).status_code == 404
        assert (await conductor.simulate_get(f"/v1/executions/{recent}", headers=AUTH)).json["status"] == "succeeded"

    run(scenario)


def test_a_stopping_gateway_fails_the_running_executions(run: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executions_module, "STOP_GRACE", 0.05)

    async def scenario(conductor: falcon.testing.ASGIConductor, control: StandInControl, api: ControlApi) -> None:
        started = await conductor.simulate_post("/v1/functions/i/executions", json={"path": "/slow", "async": True}, headers=AUTH)
        await api.executions.stop()
        record = (await conductor.simulate_get(started.json["links"]["self"], headers=AUTH)).json
        assert record["status"] == "failed"
        assert record["result"]["status"] == 503 and record["result"]["body"]["title"] == "Gateway stopped"

    run(scenario)


def test_a_replica_logs_each_request_with_its_id(tmp_path: Path) -> None:
    """The runner's side of execution logs: an access line per request, every line of it tagged with X-Request-Id."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter({"function": "i", "version": "3"}))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        client = function_client("i", migrated(make_settings(tmp_path)))
        assert client.simulate_get("/user/42", headers={"X-Request-Id": "req-42"}).status_code == 200
        assert client.simulate_get("/user/x", headers={"X-Request-Id": "bad id!"}).status_code == 400
        assert client.simulate_get("/healthz", headers={"X-Request-Id": "probe"}).status_code == 200
        logging.getLogger("tombola.test").info("after the requests")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [entry for entry in entries if entry["logger"] == "tombola.access"]
    assert [(entry["path"], entry["status"], entry.get("request_id")) for entry in access] == [
        ("/user/42", 200, "req-42"),
        ("/user/x", 400, None),  # an id that is not sane is not logged
    ]
    assert access[0]["method"] == "GET" and access[0]["duration_ms"] >= 0 and access[0]["version"] == "3"
    assert "request_id" not in entries[-1]  # nothing leaks past the request
