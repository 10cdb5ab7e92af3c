"""The OpenAPI document names exactly the ``/v1`` routes and methods the gateway serves, and says how they fail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import falcon.asgi
import falcon.inspect

from gateway import openapi
from gateway.app import create_internal_app, create_public_app
from gateway.balancer import Balancer
from gateway.control_api import ControlApi
from gateway.proxy import Proxy
from gateway.registry import Registry

CONVERTER = re.compile(r"\{(\w+):[^}]*\}")
METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def served(app: falcon.asgi.App) -> set[tuple[str, str]]:
    """(path template as OpenAPI writes it, method) of every /v1 responder, Falcon's defaults left out."""
    return {
        (CONVERTER.sub(r"{\1}", route.path), method.method.lower())
        for route in falcon.inspect.inspect_routes(app)
        if route.path.startswith("/v1")
        for method in route.methods
        if not method.internal
    }


def apps() -> list[falcon.asgi.App]:
    api = ControlApi(None, None, None, "token", 1024)  # type: ignore[arg-type]  # routes only: nothing is called
    registry = Registry()
    proxy = Proxy(registry, Balancer(registry), None, 1024)  # type: ignore[arg-type]
    return [create_internal_app(registry, proxy, api), create_public_app(registry, proxy, api)]


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method in METHODS}


def test_every_route_is_documented_and_every_documented_route_is_served() -> None:
    document = openapi.document()
    for app in apps():
        routes = served(app)
        assert len(routes) >= 19
        assert routes == documented(document)


def test_every_protected_operation_documents_401_and_its_parameters() -> None:
    document = openapi.document()
    assert document["openapi"] == "3.1.0" and document["security"] == [{"token": []}]
    for path, item in document["paths"].items():
        placeholders = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            public = operation.get("security") == []
            assert public == (path == "/v1/openapi.json"), (method, path)
            assert ("401" in operation["responses"]) != public, (method, path)
            assert any(status.startswith("2") for status in operation["responses"]), (method, path)
            in_path = {parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "path"}
            assert in_path == placeholders, (method, path)
            if method in ("put", "patch") or (method == "post" and path.endswith(("/versions", "/executions", "/functions"))):
                assert operation["requestBody"]["required"], (method, path)
                assert "415" in operation["responses"] and "413" in operation["responses"], (method, path)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def test_every_reference_resolves() -> None:
    document = openapi.document()
    references = set(_references(document))
    assert references
    for reference in references:
        node: Any = document
        for part in reference.removeprefix("#/").split("/"):
            assert part in node, reference
            node = node[part]
