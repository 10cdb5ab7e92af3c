"""Metrics, request ids and the status page: their parts in process, then on a running pack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import falcon
import falcon.asgi
import falcon.testing
import pytest
import requests
from playwright.sync_api import Browser, expect
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_internal_app, create_public_app
from gateway.balancer import Balancer
from gateway.control import ControlError
from gateway.metrics import Metrics, MetricsResource, RecentCounts
from gateway.proxy import Proxy, request_id
from gateway.registry import Registry, Replica
from gateway.status import StatusJson, StatusPage, StatusReport
from runner.manifest import loads
from tests.pack import Pack

FAMILIES = (
    "tombola_requests_total",
    "tombola_request_errors_total",
    "tombola_request_duration_seconds",
    "tombola_in_flight",
    "tombola_replicas",
    "tombola_cold_starts_total",
    "tombola_queue_wait_seconds",
    "tombola_autoscaler_decisions_total",
    "tombola_autoscaler_desired_replicas",
)


class TestRecentCounts:
    def test_counts_the_last_minute_only(self) -> None:
        recent = RecentCounts()
        recent.add(False, 1000.2)
        recent.add(True, 1000.9)
        recent.add(False, 1030.0)
        assert recent.totals(1030.5) == (3, 1)
        assert recent.totals(1059.9) == (3, 1)
        assert recent.totals(1060.0) == (1, 0)  # second 1000 is more than 59 s ago
        assert recent.totals(1200.0) == (0, 0)

    def test_a_slot_is_reused_a_minute_later(self) -> None:
        recent = RecentCounts()
        recent.add(True, 5.0)
        recent.add(False, 65.5)
        assert recent.totals(65.6) == (1, 0)


class TestRequestId:
    @pytest.mark.parametrize("sent", ["abc", "0f" * 32, "trace-2024-01-01"])
    def test_a_sane_one_is_kept(self, sent: str) -> None:
        assert request_id(self.request(sent)) == sent

    @pytest.mark.parametrize("sent", [None, "", "a" * 65, "a b", "é", "x;y", "../etc"])
    def test_anything_else_gets_a_new_one(self, sent: str | None) -> None:
        made = request_id(self.request(sent))
        assert made != sent and len(made) == 32 and int(made, 16) >= 0

    @staticmethod
    def request(sent: str | None) -> falcon.asgi.Request:
        headers = {} if sent is None else {"X-Request-Id": sent}
        return falcon.testing.create_asgi_req(headers=headers)


def small_registry() -> Registry:
    registry = Registry()
    registry.add_function(loads('name = "web"\ndescription = "<b>Web</b> & co"\n[trigger]\ntype = "http"\n'))
    registry.add_function(loads('name = "nap"\n[trigger]\ntype = "http"\n[scaling]\nmin = 0\n'))
    registry.add_function(loads('name = "far"\n[trigger]\ntype = "http"\n'))  # its replicas run on other servers
    for number, (healthy, draining) in enumerate([(True, False), (False, False), (True, True)]):
        replica = Replica(f"web-{number}", "web", 3, f"http://127.0.0.1:{9000 + number}", healthy, draining, number)
        registry.add_replica(replica)
    registry.add_replica(Replica("far-1", "far", 0, "http://10.0.0.7:9000"))
    return registry


class Scales:
    """The control plane's scaling of each function it runs, as the status reads it."""

    def scaling(self, name: str) -> dict[str, int]:
        if name == "far":
            raise ControlError(404, "No function is named 'far'.")
        wanted = {"web": 3, "nap": 0}[name]
        return {"replicas": wanted, "min": 0 if name == "nap" else 1, "max": 4, "target": 50}


def test_metrics_text_after_some_requests() -> None:
    registry = small_registry()
    metrics = Metrics(registry)
    web = metrics.function("web")
    for version, code in (("3", 200), ("3", 200), ("3", 502), ("", 503)):
        web.finished(web.started(), version, code)
    web.started()
    web.queue_wait.observe(0.002)
    app = falcon.asgi.App()
    app.add_route("/metrics", MetricsResource(metrics))
    answer = falcon.testing.TestClient(app).simulate_get("/metrics")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for family in FAMILIES:
        assert f"# TYPE {family} " in answer.text, family
    sample = metrics.prometheus.get_sample_value
    assert sample("tombola_requests_total", {"function": "web", "version": "3", "code": "200"}) == 2
    assert sample("tombola_requests_total", {"function": "web", "version": "", "code": "503"}) == 1
    assert sample("tombola_request_duration_seconds_count", {"function": "web"}) == 4
    assert sample("tombola_queue_wait_seconds_bucket", {"function": "web", "le": "0.005"}) == 1
    assert sample("tombola_in_flight", {"function": "web"}) == 1
    assert sample("tombola_request_errors_total", {"function": "nap", "kind": "timeout"}) == 0
    states = ("healthy", "unhealthy", "draining")
    assert [sample("tombola_replicas", {"function": "web", "state": state}) for state in states] == [1, 1, 1]
    assert sample("tombola_replicas", {"function": "nap", "state": "healthy"}) == 0
    assert web.recent.totals(time.monotonic()) == (4, 2)


def test_status_json_and_page_in_process() -> None:
    registry = small_registry()
    registry.set_traffic("web", {3: 90, 4: 10})
    metrics = Metrics(registry)
    web = metrics.function("web")
    web.finished(web.started(), "3", 200)
    web.finished(web.started(), "3", 500)
    report = StatusReport(registry, metrics, Scales())
    public = report.build(internal=False)
    assert public["status"] == "degraded" and public["window_seconds"] == 60
    far_status, nap_status, web_status = public["functions"]
    assert web_status["state"] == "degraded" and nap_status["state"] == "idle" and report.asleep("nap")
    assert far_status["state"] == "ok" and far_status["scaling"] is None and not report.asleep("far")
    assert web_status["live"] == [{"version": 3, "weight": 90}, {"version": 4, "weight": 10}]
    assert nap_status["live"] == [] and nap_status["scaling"] == {"replicas": 0, "min": 0, "max": 4, "target": 50}
    assert web_status["recent"] == {"requests": 2, "errors": 1, "requests_per_second": 0.033, "error_rate": 0.5}
    assert [replica["state"] for replica in web_status["replicas"]] == ["healthy", "unhealthy", "draining"]
    assert "url" not in web_status["replicas"][0] and "http://" not in str(public)
    internal = report.build(internal=True)
    assert internal["functions"][2]["replicas"][0]["url"] == "http://127.0.0.1:9000"

    app = falcon.asgi.App()
    app.add_route("/status", StatusPage(report, internal=False))
    app.add_route("/status.json", StatusJson(report, internal=False))
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/status.json").json["functions"][0]["name"] == "far"
    page = client.simulate_get("/status")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "&lt;b&gt;Web&lt;/b&gt; &amp; co" in page.text and "<b>Web</b>" not in page.text
    assert "v3 (90 %), v4 (10 %)" in page.text and "Scaled to zero" in page.text
    assert "<script>" not in page.text and "style=" not in page.text and "http://127.0.0.1" not in page.text


def test_metrics_are_public_only_with_the_control_plane_and_sleepers_are_healthy() -> None:
    registry = small_registry()

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            proxy = Proxy(registry, Balancer(registry), session, 1024)
            report = StatusReport(registry, proxy.metrics, Scales())
            public = create_public_app(registry, proxy, None, report)
            internal = create_internal_app(registry, proxy, None, report)
            for app, metrics_status in ((public, 404), (internal, 200)):
                async with falcon.testing.ASGIConductor(app) as client:
                    assert (await client.simulate_get("/metrics")).status_code == metrics_status
                    assert (await client.simulate_get("/status.json")).status_code == 200
                    assert (await client.simulate_get("/status")).status_code == 200
                    assert (await client.simulate_get("/healthz")).json["status"] == "ok"  # nap is asleep, not down
            async with falcon.testing.ASGIConductor(create_internal_app(registry, proxy)) as client:
                assert (await client.simulate_get("/healthz")).json["status"] == "degraded"

    asyncio.run(main())


ECHO_MANIFEST = """
name = "echo"
description = "Answers what it was sent"
[trigger]
type = "http"
public_prefix = "/srve"
[limits]
timeout = 2.0
memory_mb = 256
"""

ECHO_HANDLER = """
import time

import falcon


class Echo:
    def on_get(self, req, resp):
        time.sleep(float(req.get_param("sleep", default="0")))
        resp.status = falcon.code_to_http_status(int(req.get_param("status", default="200")))
        resp.media = {"request_id": req.get_header("X-Request-Id")}


def routes(ctx):
    return {"/": Echo()}
"""


@pytest.fixture(scope="module")
def echo_pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    root = tmp_path_factory.mktemp("metrics")
    (root / "functions" / "echo").mkdir(parents=True)
    (root / "functions" / "echo" / "manifest.toml").write_text(ECHO_MANIFEST)
    (root / "functions" / "echo" / "handler.py").write_text(ECHO_HANDLER)
    pack = Pack(root / "home", {"TOMBOLA_FUNCTIONS_DIR": str(root / "functions")}).start()
    try:
        yield pack
    finally:
        assert pack.stop() == 0, pack.log()


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url``/metrics by name and labels."""
    answer = requests.get(f"{url}/metrics", timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_request_ids_go_to_the_replica_and_come_back(echo_pack: Pack) -> None:
    made = requests.get(f"{echo_pack.url}/srve/", timeout=5)
    assert made.status_code == 200 and len(made.headers["X-Request-Id"]) == 32
    assert made.json()["request_id"] == made.headers["X-Request-Id"]
    sent = requests.get(f"{echo_pack.url}/srve/", headers={"X-Request-Id": "order-42-retry-1"}, timeout=5)
    assert sent.headers["X-Request-Id"] == sent.json()["request_id"] == "order-42-retry-1"
    odd = requests.get(f"{echo_pack.url}/srve/", headers={"X-Request-Id": "<script>"}, timeout=5)
    assert odd.headers["X-Request-Id"] == odd.json()["request_id"] != "<script>"
    failed = requests.get(f"{echo_pack.url}/srve/?sleep=1", headers={"X-Tombola-Timeout": "0.2"}, timeout=5)
    assert failed.status_code == 504 and len(failed.headers["X-Request-Id"]) == 32


def test_metrics_after_some_traffic(echo_pack: Pack) -> None:
    before = samples(echo_pack.internal_url)
    for query in ("", "", "", "?status=500", "?status=404"):
        requests.get(f"{echo_pack.url}/srve/{query}", timeout=5)
    requests.get(f"{echo_pack.url}/srve/?sleep=1", headers={"X-Tombola-Timeout": "0.2"}, timeout=5)
    after = samples(echo_pack.internal_url)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("tombola_requests_total", function="echo", version="1", code="200") == 3
    assert grew("tombola_requests_total", function="echo", version="1", code="500") == 1
    assert grew("tombola_requests_total", function="echo", version="1", code="404") == 1
    assert grew("tombola_requests_total", function="echo", version="", code="504") == 1
    assert grew("tombola_request_errors_total", function="echo", kind="replica_5xx") == 1
    assert grew("tombola_request_errors_total", function="echo", kind="timeout") == 1
    assert after[("tombola_request_errors_total", (("function", "echo"), ("kind", "connect")))] == 0
    assert after[("tombola_request_errors_total", (("function", "echo"), ("kind", "no_replica")))] == 0
    assert grew("tombola_request_duration_seconds_count", function="echo") == 6
    assert 0.2 <= grew("tombola_request_duration_seconds_sum", function="echo") < 1.5
    assert grew("tombola_request_duration_seconds_bucket", function="echo", le="0.1") == 5
    assert grew("tombola_queue_wait_seconds_count", function="echo") == 6
    assert grew("tombola_queue_wait_seconds_bucket", function="echo", le="0.005") == 6
    assert after[("tombola_in_flight", (("function", "echo"),))] == 0
    states = ("healthy", "unhealthy", "draining")
    assert [after[("tombola_replicas", (("function", "echo"), ("state", state)))] for state in states] == [1, 0, 0]
    assert after[("tombola_cold_starts_total", (("function", "echo"),))] == 0
    assert after[("tombola_autoscaler_desired_replicas", (("function", "echo"),))] == 1
    text = requests.get(f"{echo_pack.url}/metrics", timeout=5).text  # public too (TOMBOLA_CONTROL_PUBLIC is on)
    for family in FAMILIES:
        assert f"# TYPE {family} " in text, family


def test_status_json_and_page(echo_pack: Pack) -> None:
    requests.get(f"{echo_pack.url}/srve/?status=503", timeout=5)
    public = requests.get(f"{echo_pack.url}/status.json", timeout=5)
    assert public.status_code == 200 and public.headers["Cache-Control"] == "no-store"
    [echo] = public.json()["functions"]
    assert echo["name"] == "echo" and echo["state"] == "ok" and echo["live"] == [{"version": 1, "weight": 100}]
    assert echo["scaling"] == {"replicas": 1, "min": 1, "max": 4, "target": 50}
    assert echo["recent"]["requests"] >= 1 and echo["recent"]["errors"] >= 1
    [replica] = echo["replicas"]
    assert replica["state"] == "healthy" and replica["version"] == 1 and "url" not in replica
    internal = requests.get(f"{echo_pack.internal_url}/status.json", timeout=5).json()
    assert internal["functions"][0]["replicas"][0]["url"].startswith("http://127.0.0.1:")
    page = requests.get(f"{echo_pack.url}/status", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "Answers what it was sent" in page.text and '<script src="/static/status.js" defer></script>' in page.text
    script = requests.get(f"{echo_pack.url}/static/status.js", timeout=5)
    assert script.status_code == 200 and 'fetch("/status"' in script.text
    assert requests.get(f"{echo_pack.url}/static/status.css", timeout=5).status_code == 200


@pytest.mark.browser
def test_the_status_page_refreshes_itself_within_its_policy(echo_pack: Pack, browser: Browser) -> None:
    page = browser.new_page()
    try:
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("console", lambda message: problems.append(f"console: {message.text}"))
        page.goto(f"{echo_pack.url}/status")
        last_minute = page.locator("#status dd").last
        before = last_minute.inner_text()
        for _ in range(3):
            requests.get(f"{echo_pack.url}/srve/", timeout=5)
        expect(last_minute).not_to_have_text(before, timeout=5000)
        assert problems == []
    finally:
        page.close()
