"""The health page: every function, its live version, replicas, health and last minute of traffic.

``GET /status.json`` for programs, ``GET /status`` for people (the same facts
as HTML; ``/static/status.js`` refreshes it every two seconds). Both are on
the public listener, so they hold nothing secret: on the internal one only,
each replica also shows its URL. Everything comes from the gateway's memory
(the registry, the control plane's scaling, the one-minute counters of
gateway.metrics), never from the database or Prometheus: the page still
answers when a backend is down.
"""

from __future__ import annotations

import datetime
import html
import time
from typing import Any, Protocol

import falcon
import falcon.asgi

from gateway.control import ControlError
from gateway.metrics import RECENT_SECONDS, Metrics, replica_state
from gateway.registry import Registry
from runner.manifest import Manifest


class Scales(Protocol):
    """What the status needs of the control plane."""

    def scaling(self, name: str) -> dict[str, int]:
        """``{"replicas", "min", "max", "target"}`` of the function ``name`` now; ControlError if it runs none."""
        ...


def live(traffic: dict[int, int]) -> list[dict[str, int]]:
    """The versions taking requests and their share in percent, the largest first (a canary comes second)."""
    total = sum(traffic.values())
    ranked = sorted(traffic.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return [{"version": version, "weight": weight * 100 // total} for version, weight in ranked]


class StatusReport:
    """Builds the status of every function."""

    def __init__(self, registry: Registry, metrics: Metrics, control: Scales) -> None:
        self.registry = registry
        self.metrics = metrics
        self.control = control

    def asleep(self, name: str) -> bool:
        """True when the function ``name`` is scaled to zero (no replica is wanted)."""
        scaling = self._scaling(name)
        return scaling is not None and scaling["replicas"] == 0

    def _scaling(self, name: str) -> dict[str, int] | None:
        """The scaling of ``name``; None when this gateway does not run it (its replicas are remote)."""
        try:
            return self.control.scaling(name)
        except ControlError:
            return None

    def build(self, internal: bool) -> dict[str, Any]:
        """The status document; replica URLs only when ``internal``."""
        now = time.monotonic()
        functions = [self._function(manifest, now, internal) for manifest in self.registry.functions()]
        healthy = all(function["state"] in ("ok", "idle") for function in functions)
        return {
            "status": "ok" if healthy else "degraded",
            "generated_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "window_seconds": RECENT_SECONDS,
            "functions": functions,
        }

    def _function(self, manifest: Manifest, now: float, internal: bool) -> dict[str, Any]:
        name = manifest.name
        measures = self.metrics.function(name)
        requests, errors = measures.recent.totals(now)
        scaling = self._scaling(name)
        replicas = []
        for replica in self.registry.replicas(name):
            entry: dict[str, Any] = {
                "id": replica.id,
                "version": replica.version,
                "state": replica_state(replica),
                "in_flight": replica.in_flight,
            }
            if internal:
                entry["url"] = replica.url
            replicas.append(entry)
        available = sum(replica["state"] == "healthy" for replica in replicas)
        if available == 0:
            state = "idle" if scaling is not None and scaling["replicas"] == 0 else "down"
        else:
            state = "ok" if available == len(replicas) else "degraded"
        return {
            "name": name,
            "description": manifest.description,
            "trigger": manifest.trigger.type,
            "public_prefix": manifest.trigger.public_prefix,
            "state": state,
            "live": live(self.registry.traffic(name) or {}),
            "scaling": scaling,
            "in_flight": measures.in_flight,
            "recent": {
                "requests": requests,
                "errors": errors,
                "requests_per_second": round(requests / RECENT_SECONDS, 3),
                "error_rate": round(errors / requests, 4) if requests else 0.0,
            },
            "replicas": replicas,
        }


class StatusJson:
    """``GET /status.json``."""

    def __init__(self, report: StatusReport, internal: bool) -> None:
        self.report = report
        self.internal = internal

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.cache_control = ["no-store"]
        resp.media = self.report.build(self.internal)


class StatusPage:
    """``GET /status``: the same facts as a page in the pack's style."""

    def __init__(self, report: StatusReport, internal: bool) -> None:
        self.report = report
        self.internal = internal

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.cache_control = ["no-store"]
        resp.content_type = falcon.MEDIA_HTML
        resp.text = render(self.report.build(self.internal))


STATES = {
    "ok": "Every replica is healthy.",
    "degraded": "Some replicas are unhealthy.",
    "down": "No replica is available.",
    "idle": "Scaled to zero: the next request starts a replica.",
}


def render(status: dict[str, Any]) -> str:
    """The page for a status document."""
    summary = "All functions are up." if status["status"] == "ok" else "Some functions are degraded."
    panels = "\n".join(_panel(function) for function in status["functions"])
    return PAGE.format(
        state=status["status"],
        summary=summary,
        generated=html.escape(status["generated_at"]),
        window=status["window_seconds"],
        panels=panels,
    )


def _panel(function: dict[str, Any]) -> str:
    name = html.escape(function["name"])
    split = len(function["live"]) > 1
    versions = ", ".join(
        f"v{entry['version']}" + (f" ({entry['weight']} %)" if split else "") for entry in function["live"]
    )
    scaling = function["scaling"]
    bounds = "" if scaling is None else f" (min {scaling['min']}, max {scaling['max']})"
    recent = function["recent"]
    replicas = "\n".join(
        f'<tr><td>{html.escape(replica["id"])}</td><td>v{replica["version"]}</td>'
        f'<td><span class="state" data-state="{replica["state"]}">{replica["state"]}</span></td>'
        f'<td>{replica["in_flight"]}</td></tr>'
        for replica in function["replicas"]
    )
    return PANEL.format(
        name=name,
        state=function["state"],
        state_text=STATES[function["state"]],
        description=html.escape(function["description"]),
        versions=versions or "none",
        healthy=sum(replica["state"] == "healthy" for replica in function["replicas"]),
        total=len(function["replicas"]),
        bounds=bounds,
        in_flight=function["in_flight"],
        requests=recent["requests"],
        errors=recent["errors"],
        error_rate=f"{recent['error_rate'] * 100:.1f}",
        replicas=replicas or '<tr><td colspan="4">No replica.</td></tr>',
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light">
  <title>Tombola — status</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/style.css">
  <link rel="stylesheet" href="/static/status.css">
  <script src="/static/status.js" defer></script>
</head>
<body>
  <header class="masthead">
    <img class="logo" src="/static/favicon.svg" alt="" width="48" height="48">
    <div>
      <h1>Tombola status</h1>
      <p class="tagline">Every function, its version, replicas and recent errors.</p>
    </div>
  </header>
  <main id="status">
    <p class="overall" data-state="{state}" role="status">{summary} <span class="hint">As of {generated};
      requests and errors over the last {window} s.</span></p>
    <div class="panels">
{panels}
    </div>
  </main>
  <footer>
    <p>The same as JSON: <a href="/status.json">/status.json</a>. This page refreshes every 2 s.</p>
  </footer>
</body>
</html>
"""

PANEL = """      <section class="panel" aria-labelledby="function-{name}">
        <h2 id="function-{name}"><span class="badge" aria-hidden="true">{name}</span> {name}
          <span class="state" data-state="{state}">{state}</span></h2>
        <p class="hint">{description}</p>
        <dl class="identity">
          <dt>Health</dt><dd>{state_text}</dd>
          <dt>Live</dt><dd>{versions}</dd>
          <dt>Replicas</dt><dd>{healthy} healthy of {total}{bounds}</dd>
          <dt>In flight</dt><dd>{in_flight}</dd>
          <dt>Last minute</dt><dd>{requests} requests, {errors} errors ({error_rate} %)</dd>
        </dl>
        <table class="replicas">
          <thead><tr><th scope="col">Replica</th><th scope="col">Version</th><th scope="col">State</th>
            <th scope="col">In flight</th></tr></thead>
          <tbody>
{replicas}
          </tbody>
        </table>
      </section>"""
