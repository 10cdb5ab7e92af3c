"""The autoscaler: its decisions on a synthetic clock, then on the whole pack (a burst of plays, scale to zero)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gateway.autoscaler import Autoscaler, AutoscalerSettings, Demand
from gateway.control import ControlError
from gateway.metrics import Metrics
from gateway.registry import Registry
from runner.manifest import loads
from runner.settings import SettingsError
from tests.pack import Pack
from tests.support import FUNCTIONS

SETTINGS = AutoscalerSettings(enabled=True, cooldown=10.0, idle=20.0)


def scaling(replicas: int, low: int = 1, high: int = 4, target: int = 2) -> dict[str, int]:
    return {"replicas": replicas, "min": low, "max": high, "target": target}


class TestSettings:
    def test_defaults(self) -> None:
        assert AutoscalerSettings.from_environ({}) == AutoscalerSettings(enabled=True, cooldown=30.0, idle=60.0)

    def test_values(self) -> None:
        env = {"TOMBOLA_AUTOSCALE": "0", "TOMBOLA_SCALE_COOLDOWN": "1.5", "TOMBOLA_SCALE_IDLE": "0"}
        assert AutoscalerSettings.from_environ(env) == AutoscalerSettings(enabled=False, cooldown=1.5, idle=0.0)

    @pytest.mark.parametrize(
        "env",
        [
            {"TOMBOLA_AUTOSCALE": "maybe"},
            {"TOMBOLA_SCALE_COOLDOWN": "-1"},
            {"TOMBOLA_SCALE_IDLE": "soon"},
            {"TOMBOLA_SCALE_IDLE": "inf"},
        ],
    )
    def test_bad_values_are_named(self, env: dict[str, str]) -> None:
        with pytest.raises(SettingsError, match=next(iter(env))):
            AutoscalerSettings.from_environ(env)


class TestDemand:
    def test_a_burst_scales_up_at_once_within_the_bounds(self) -> None:
        demand = Demand(SETTINGS, now=0.0)
        assert demand.decide(0.0, 0, 0.0, scaling(1)).replicas == 1
        decision = demand.decide(2.5, 20, 2.5, scaling(1))
        assert (decision.current, decision.desired, decision.replicas) == (1, 4, 4)
        assert "20.0 requests in flight" in decision.reason

    def test_one_spike_is_smoothed(self) -> None:
        demand = Demand(SETTINGS, now=0.0)
        for tick in range(4):
            demand.decide(tick * 0.5, 0, 0.0, scaling(1))
        assert demand.decide(2.0, 6, 2.0, scaling(1)).replicas == 1  # 6 in one sample of four: 1.5 on average
        assert demand.decide(2.5, 6, 2.5, scaling(1)).replicas == 2  # it lasts: 3 on average

    def test_scales_down_only_after_the_cooldown_to_the_peak_of_it(self) -> None:
        demand = Demand(SETTINGS, now=0.0)
        demand.decide(0.0, 8, 0.0, scaling(4))
        for second in range(1, 10):
            decision = demand.decide(float(second), 4 if second == 5 else 0, float(second), scaling(4))
            assert decision.replicas == 4, second
        decision = demand.decide(10.0, 0, 10.0, scaling(4))
        assert (decision.replicas, decision.desired) == (2, 1)  # 4 in flight at second 5 (2 s window): 2 replicas
        assert "2 replicas were enough for 10 s" in decision.reason

    def test_a_changed_count_restarts_the_cooldown(self) -> None:
        demand = Demand(SETTINGS, now=0.0)
        for second in range(12):
            demand.decide(float(second), 0, float(second), scaling(1))
        assert demand.decide(12.0, 0, 12.0, scaling(3)).replicas == 3  # an operator asked for 3: kept for a cooldown
        assert demand.decide(21.0, 0, 21.0, scaling(3)).replicas == 3
        assert demand.decide(22.0, 0, 22.0, scaling(3)).replicas == 1

    def test_to_zero_only_when_min_is_zero_and_idle(self) -> None:
        demand = Demand(SETTINGS, now=0.0)
        for second in range(19):
            assert demand.decide(float(second), 0, -1e9, scaling(1, low=0)).replicas == 1, second
        assert demand.decide(20.0, 0, -1e9, scaling(1, low=0)).desired == 0  # idle since the start (20 s)
        decision = demand.decide(30.0, 0, -1e9, scaling(1, low=0))
        assert decision.replicas == 0 and decision.reason == "no request for 20 s"
        other = Demand(SETTINGS, now=0.0)
        for second in range(31):
            assert other.decide(float(second), 0, -1e9, scaling(1, low=1)).replicas == 1

    def test_a_recent_request_keeps_one_replica(self) -> None:
        demand = Demand(SETTINGS, now=0.0)
        for second in range(40):
            assert demand.decide(float(second), 0, 25.0, scaling(1, low=0)).replicas == 1, second
        assert demand.decide(45.0, 0, 25.0, scaling(1, low=0)).desired == 0

    def test_at_zero_until_a_request_comes(self) -> None:
        demand = Demand(SETTINGS, now=0.0)
        for tick in range(10):
            assert demand.decide(tick * 0.5, 0, -1e9, scaling(0, low=0)).replicas == 0
        assert demand.decide(5.0, 1, 5.0, scaling(0, low=0)).replicas == 1


@dataclasses.dataclass
class Scales:
    """The autoscaler's side of a control plane, in memory: what it was asked, and a deploy switch."""

    counts: dict[str, dict[str, int]]
    deploying: bool = False
    asked: list[tuple[str, int]] = dataclasses.field(default_factory=list)

    def scaling(self, name: str) -> dict[str, int]:
        if name not in self.counts:
            raise ControlError(404, f"No function is named {name!r}.")
        return dict(self.counts[name])

    async def autoscale(self, name: str, replicas: int) -> bool:
        self.asked.append((name, replicas))
        if self.deploying:
            return False
        self.counts[name]["replicas"] = replicas
        return True


def test_the_loop_changes_counts_counts_decisions_and_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()
    registry.add_function(loads('name = "web"\n[trigger]\ntype = "http"\n'))
    registry.add_function(loads('name = "mail"\n[trigger]\ntype = "queue"\nqueue = "mail"\npath = "/m"\n'))
    registry.add_function(loads('name = "far"\n[trigger]\ntype = "http"\n'))  # remote replicas: not scaled here
    metrics = Metrics(registry)
    scales = Scales({"web": scaling(1), "mail": scaling(1)})
    autoscaler = Autoscaler(registry, scales, metrics, SETTINGS)

    async def run() -> None:
        metrics.function("web").in_flight = 7
        metrics.function("far").in_flight = 7
        scales.deploying = True
        autoscaler.step(0.0)
        await asyncio.sleep(0)
        scales.deploying = False
        autoscaler.step(0.5)
        await asyncio.sleep(0)
        await autoscaler.stop()

    with caplog.at_level(logging.DEBUG, logger="tombola.autoscaler"):
        asyncio.run(run())
    assert scales.asked == [("web", 4), ("web", 4)]  # refused during a deploy, then done; queue functions left alone
    assert scales.counts == {"web": scaling(4), "mail": scaling(1)}
    sample = metrics.prometheus.get_sample_value
    assert sample("tombola_autoscaler_decisions_total", {"function": "web", "direction": "up"}) == 1
    assert sample("tombola_autoscaler_desired_replicas", {"function": "web"}) == 4
    assert sample("tombola_autoscaler_desired_replicas", {"function": "mail"}) is None
    assert [record.msg for record in caplog.records] == [
        "autoscaling skipped: the control plane refused it (a deploy runs)",
        "autoscaled",
    ]
    line = caplog.records[1]
    assert (line.function, getattr(line, "from"), line.to, line.in_flight, line.took) == ("web", 1, 4, 7.0, 0)
    assert line.reason == "7.0 requests in flight for a target of 2 per replica"


NAP_MANIFEST = """
name = "nap"
description = "Sleeps when asked; scales to zero"
[trigger]
type = "http"
public_prefix = "/srvn"
[limits]
timeout = 20.0
memory_mb = 256
[scaling]
min = 0
max = 2
target = 10
"""

NAP_HANDLER = """
import os
import time


class Nap:
    def on_get(self, req, resp):
        time.sleep(float(req.get_param("sleep", default="0")))
        resp.media = {"pid": os.getpid()}


def routes(ctx):
    return {"/": Nap()}
"""


@pytest.fixture(scope="module")
def scaling_pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    """The pack with W's target lowered to 2 in flight per replica (max 4), a 3 s W, a 2 s cool-down, and nap."""
    root = tmp_path_factory.mktemp("autoscale")
    functions = root / "functions"
    shutil.copytree(FUNCTIONS, functions, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = functions / "w" / "manifest.toml"
    text = re.sub(r"(?m)^target = \d+$", "target = 2", manifest.read_text())
    manifest.write_text(re.sub(r"(?m)^max = \d+$", "max = 4", text))
    (functions / "nap").mkdir()
    (functions / "nap" / "manifest.toml").write_text(NAP_MANIFEST)
    (functions / "nap" / "handler.py").write_text(NAP_HANDLER)
    env = {
        "TOMBOLA_FUNCTIONS_DIR": str(functions),
        "TOMBOLA_W_TEMPO": "3",
        "TOMBOLA_SCALE_COOLDOWN": "2",
        "TOMBOLA_SCALE_IDLE": "2",
    }
    pack = Pack(root / "home", env).start()
    try:
        yield pack
    finally:
        assert pack.stop() == 0, pack.log()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.1)


def function_status(pack: Pack, name: str) -> dict[str, Any]:
    functions = requests.get(f"{pack.url}/status.json", timeout=5).json()["functions"]
    found: dict[str, Any] = next(function for function in functions if function["name"] == name)
    return found


def healthy_replicas(pack: Pack, name: str) -> int:
    return sum(replica["state"] == "healthy" for replica in function_status(pack, name)["replicas"])


def sample(pack: Pack, name: str, labels: dict[str, str]) -> float:
    """A sample of the gateway's /metrics (0 when absent)."""
    text = requests.get(f"{pack.internal_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def decisions(pack: Pack, function: str) -> list[dict[str, Any]]:
    """The autoscaler's decisions logged for ``function``."""
    lines = (pack.home / "pack.log").read_text(errors="replace").splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{") and '"autoscaled"' in line]
    return [entry for entry in entries if entry["function"] == function]


@pytest.mark.slow
def test_a_burst_of_plays_adds_w_replicas_then_releases_them(scaling_pack: Pack) -> None:
    wait_for(lambda: healthy_replicas(scaling_pack, "w") == 1, 10, "one W replica")
    most = 0
    playing = threading.Event()

    def watch() -> None:
        nonlocal most
        while playing.is_set():
            most = max(most, healthy_replicas(scaling_pack, "w"))
            time.sleep(0.1)

    def play(customer: int) -> requests.Response:
        return requests.post(f"{scaling_pack.url}/srvb/user/{customer}", timeout=30)

    playing.set()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            plays = list(pool.map(play, range(300, 316)))
        wait_for(lambda: most >= 3, 20, "three W replicas or more")
    finally:
        playing.clear()
        watcher.join()
    assert [play.status_code for play in plays] == [200] * 16, [play.text for play in plays if play.status_code != 200]
    wait_for(lambda: len(function_status(scaling_pack, "w")["replicas"]) == 1, 20, "back to one W replica")
    logged = decisions(scaling_pack, "w")
    assert logged[0]["from"] == 1 and logged[0]["to"] > 1 and logged[0]["in_flight"] > 2
    assert "requests in flight for a target of 2 per replica" in logged[0]["reason"]
    assert logged[-1]["to"] == 1 and "enough for 2 s" in logged[-1]["reason"]
    ups = sample(scaling_pack, "tombola_autoscaler_decisions_total", {"function": "w", "direction": "up"})
    downs = sample(scaling_pack, "tombola_autoscaler_decisions_total", {"function": "w", "direction": "down"})
    assert (ups, downs) == (
        sum(entry["to"] > entry["from"] for entry in logged),
        sum(entry["to"] < entry["from"] for entry in logged),
    )
    assert ups >= 1 and downs >= 1
    assert sample(scaling_pack, "tombola_autoscaler_desired_replicas", {"function": "w"}) == 1


@pytest.mark.slow
def test_a_function_with_min_zero_sleeps_then_wakes_up_for_a_request(scaling_pack: Pack) -> None:
    def nap() -> float:
        """Ask nap for an answer; the seconds it took."""
        started = time.monotonic()
        answer = requests.get(f"{scaling_pack.url}/srvn/", timeout=30)
        assert answer.status_code == 200, answer.text
        return time.monotonic() - started

    assert function_status(scaling_pack, "nap")["state"] == "idle"  # min = 0: no replica until a request comes
    assert function_status(scaling_pack, "nap")["replicas"] == []
    waits = [nap()]
    assert sample(scaling_pack, "tombola_cold_starts_total", {"function": "nap"}) == 1
    assert len(function_status(scaling_pack, "nap")["replicas"]) == 1
    wait_for(lambda: function_status(scaling_pack, "nap")["state"] == "idle", 15, "nap back to zero")
    last = decisions(scaling_pack, "nap")[-1]
    assert (last["from"], last["to"], last["reason"]) == (1, 0, "no request for 2 s")
    assert sample(scaling_pack, "tombola_autoscaler_decisions_total", {"function": "nap", "direction": "down"}) == 1
    waits.append(nap())
    assert sample(scaling_pack, "tombola_cold_starts_total", {"function": "nap"}) == 2
    assert sample(scaling_pack, "tombola_queue_wait_seconds_count", {"function": "nap"}) == 2
    assert 0.2 < sample(scaling_pack, "tombola_queue_wait_seconds_sum", {"function": "nap"}) <= sum(waits)
    assert sample(scaling_pack, "tombola_request_errors_total", {"function": "nap", "kind": "no_replica"}) == 0
