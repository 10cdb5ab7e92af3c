"""Deploys, canaries, rollbacks and scaling on a real gateway with real replicas, driven through its ControlPlane.

The gateway runs in this process (its event loop in a thread, no signal
handlers) so that the tests call ``gateway.control`` directly; its replicas
are real processes and every request goes through its real listeners.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest
import requests
import uvloop

from gateway import packages
from gateway.catalog import load_functions
from gateway.cli import prepare_backends
from gateway.config import GatewayConfig
from gateway.control import ControlError, ControlPlane
from gateway.server import Gateway
from runner.settings import Settings
from tests.support import free_port

T = TypeVar("T")
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
CUSTOMERS = 200

WHO_HANDLER = '''
import os
import time
from pathlib import Path

VERSION = Path(__file__).resolve().parent.name  # the gateway runs each version from its own folder
{extra}


class Who:
    def on_get(self, req, resp, tail=""):
        time.sleep(float(req.get_param("sleep", default="0")))
        resp.media = {{"version": VERSION, "pid": os.getpid()}}


def routes(ctx):
    return {{"/": Who(), "/{{tail:path}}": Who()}}
'''

WHO_MANIFEST = """
name = "{name}"
[trigger]
type = "http"
public_prefix = "{prefix}"
[limits]
timeout = 5.0
memory_mb = 256
[scaling]
min = {min}
max = 4
"""


def write_who(folder: Path, name: str, prefix: str, minimum: int = 1, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.toml").write_text(WHO_MANIFEST.format(name=name, prefix=prefix, min=minimum))
    (folder / "handler.py").write_text(WHO_HANDLER.format(extra=extra))
    return folder


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Embedded:
    """A whole gateway in this process, its loop in a thread."""

    def __init__(self, home: Path, functions: Path) -> None:
        self.home = home
        self.port, self.internal_port = free_port(), free_port()
        self.env = {
            "TOMBOLA_HOME": str(home),
            "TOMBOLA_PORT": str(self.port),
            "TOMBOLA_INTERNAL_PORT": str(self.internal_port),
            "TOMBOLA_FUNCTIONS_DIR": str(functions),
            "TOMBOLA_TOKEN": "test-token",
            "TOMBOLA_W_TEMPO": "2",
            "TOMBOLA_START_TIMEOUT": "10",
            "TOMBOLA_SEED_CUSTOMERS": str(CUSTOMERS),
            "TOMBOLA_AUTOSCALE": "off",
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.internal_url = f"http://127.0.0.1:{self.internal_port}"
        self.gateway: Gateway | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def control(self) -> ControlPlane:
        assert self.gateway is not None
        return self.gateway.control

    def start(self) -> None:
        settings, config = Settings.from_environ(), GatewayConfig.from_environ()
        prepare_backends(settings)
        ready = threading.Event()
        failures: list[Exception] = []

        async def main() -> None:
            self.gateway = Gateway(config, settings, load_functions(config.functions_dir))
            self.loop = asyncio.get_running_loop()
            await self.gateway.run(ready.set, signals=())

        def serve() -> None:
            try:
                uvloop.run(main())  # as tombola up runs it
            except Exception as error:  # reported by start()
                failures.append(error)
                ready.set()

        self._thread = threading.Thread(target=serve, name="gateway", daemon=True)
        self._thread.start()
        assert ready.wait(120) and not failures, failures

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 90) -> T:
        """Run ``work`` on the gateway's loop; its result (or its exception)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def replicas(self, function: str) -> list[dict[str, Any]]:
        return [replica for replica in self.call(self.control.replicas()) if replica["function"] == function]

    def stop(self) -> None:
        if self.loop is not None and self.gateway is not None:
            self.loop.call_soon_threadsafe(self.gateway.stop)
        if self._thread is not None:
            self._thread.join(90)
            assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    root = tmp_path_factory.mktemp("deploy")
    functions = root / "functions"
    shutil.copytree(FUNCTIONS / "s", functions / "s", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(FUNCTIONS / "w", functions / "w", ignore=shutil.ignore_patterns("__pycache__"))
    for name, prefix in (("canary", "/srvc"), ("broken", "/srvk"), ("scaled", "/srvx")):
        write_who(functions / name, name, prefix)
    write_who(functions / "lazy", "lazy", "/srvz", minimum=0)
    embedded = Embedded(root / "home", functions)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in embedded.env.items():
            patch.setenv(key, value)
        embedded.start()
        try:
            # Starting every replica at once on a small machine may outlast the short start timeout of these
            # tests: the supervisor then starts them again; wait for that.
            wanted = {"s", "w", "canary", "broken", "scaled"}
            def up() -> bool:
                return {r["function"] for r in embedded.call(embedded.control.replicas()) if r["healthy"]} >= wanted

            wait_for(up, 90, "up")
            yield embedded
        finally:
            embedded.stop()


def new_version(pack: Embedded, name: str, source: Path, folder: Path, change: str) -> int:
    """Upload a copy of ``source`` with ``change`` appended to its handler; the new version's number."""
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(folder / "handler.py", "a") as handler:
        handler.write(change)
    created = pack.call(pack.control.create_version(name, packages.build(folder), f"test: {change.strip()[:40]}"))
    assert created["created"] and created["function"] == name
    return int(created["version"])


class Load:
    """Threads reading through the gateway until stopped; every answer that is not a 200 is kept."""

    def __init__(self, url: Callable[[int], str], threads: int = 4) -> None:
        self.url = url
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]
        self.stopping = threading.Event()
        self.answers: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        wait_for(lambda: sum(self.answers.values()) >= 10 or bool(self.failures), 10, "loaded")
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # requests keep going a moment after the change
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, offset: int) -> None:
        session = requests.Session()
        n = offset
        while not self.stopping.is_set():
            n += len(self.threads)
            try:
                answer = session.get(self.url(n), timeout=15)
            except requests.RequestException as error:
                self.failures.append(f"{type(error).__name__}: {error}")
                continue
            self.answers[answer.status_code] += 1
            if answer.status_code != 200:
                self.failures.append(f"{answer.status_code} {answer.text[:200]}")
            elif "version" in (body := answer.json()):
                self.versions[body["version"]] += 1


def test_a_new_version_of_s_deployed_under_load_fails_no_request(pack: Embedded, tmp_path: Path) -> None:
    version = new_version(pack, "s", FUNCTIONS / "s", tmp_path / "s", "\n# the same S, another package\n")
    old = pack.replicas("s")
    assert [replica["version"] for replica in old] == [1]
    progress: list[str] = []
    with Load(lambda n: f"{pack.url}/srvs/user/{n % CUSTOMERS + 1}") as load:
        deployed = pack.call(pack.control.set_alias("s", "live", version, progress=progress.append))
    assert load.failures == [], load.failures[:5]
    assert load.answers[200] > 100
    assert (deployed["version"], deployed["canary"]) == (version, None)
    assert {replica["version"] for replica in deployed["replicas"]} == {version}
    assert [replica["version"] for replica in pack.replicas("s")] == [version]
    assert not alive(old[0]["pid"])
    text = "\n".join(progress)
    assert "is healthy" in text and f"traffic: version {version} 100%" in text and f"draining {old[0]['id']}" in text
    assert text.index("is healthy") < text.index("traffic:") < text.index("draining")
    assert (pack.home / "logs" / "s" / f"{old[0]['id']}.log").is_file()
    assert (pack.home / "functions" / "s" / str(version) / "handler.py").read_text().endswith("another package\n")


def test_a_slow_request_on_the_old_version_finishes_during_the_drain(pack: Embedded, tmp_path: Path) -> None:
    version = new_version(pack, "w", FUNCTIONS / "w", tmp_path / "w", "\n# the same W, another package\n")
    old = pack.replicas("w")
    outcome: dict[str, Any] = {}

    def play() -> None:
        answer = requests.get(f"{pack.internal_url}/fn/w/play/7", timeout=30)  # as B calls W
        outcome.update(status=answer.status_code, body=answer.json(), finished=time.monotonic())

    slow = threading.Thread(target=play)
    slow.start()
    wait_for(lambda: pack.replicas("w")[0]["in_flight"] == 1, 5, "in flight")
    assert pack.loop is not None
    deploy = asyncio.run_coroutine_threadsafe(pack.control.set_alias("w", "live", version), pack.loop)
    wait_for(lambda: len(pack.replicas("w")) == 2, 10, "starting the new version")
    assert pack.call(pack.control.autoscale("w", 3)) is False  # the autoscaler stands aside during a deploy
    deployed = deploy.result(60)
    done = time.monotonic()
    slow.join(30)
    assert outcome["status"] == 200 and outcome["body"]["price"], outcome
    assert outcome["finished"] <= done  # the deploy waited for it before stopping the old replica
    assert [replica["version"] for replica in deployed["replicas"]] == [version]
    assert not alive(old[0]["pid"])


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("raise RuntimeError('broken on purpose')", "exited with status"),
        ("time.sleep(600)", "did not answer /healthz within 10 s"),
    ],
    ids=["raises-at-import", "never-healthy"],
)
def test_a_version_failing_its_health_check_never_gets_traffic(
    pack: Embedded, tmp_path: Path, extra: str, reason: str
) -> None:
    folder = write_who(tmp_path / "broken", "broken", "/srvk", extra=extra)
    number = int(pack.call(pack.control.create_version("broken", packages.build(folder)))["version"])
    with Load(lambda n: f"{pack.url}/srvk/x", threads=2) as load, pytest.raises(ControlError) as caught:
        pack.call(pack.control.set_alias("broken", "live", number))
    assert caught.value.status == 422
    assert reason in str(caught.value) and "live stays on version 1 (100%)" in str(caught.value)
    assert load.failures == [] and set(load.versions) == {"1"}
    assert [replica["version"] for replica in pack.replicas("broken")] == [1]
    function = pack.call(pack.control.show_function("broken"))
    assert function["live"] == {"version": 1, "canary": None}
    assert requests.get(f"{pack.url}/srvk/x", timeout=5).json()["version"] == "1"


def test_a_90_10_canary_holds_over_1000_requests_and_rolls_back(pack: Embedded, tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no earlier live version") as caught:
        pack.call(pack.control.rollback("canary"))
    assert caught.value.status == 409
    canary = new_version(pack, "canary", pack.home / "functions" / "canary" / "1", tmp_path / "canary", "\n# canary\n")
    deployed = pack.call(pack.control.set_alias("canary", "live", 1, canary_version=canary, canary_weight=10))
    assert (deployed["version"], deployed["canary"]) == (1, {"version": canary, "weight": 10})
    assert sorted(replica["version"] for replica in pack.replicas("canary")) == [1, canary]  # both keep running
    session = requests.Session()
    served = Counter(session.get(f"{pack.url}/srvc/x", timeout=5).json()["version"] for _ in range(1000))
    assert 850 <= served["1"] <= 950 and 50 <= served[str(canary)] <= 150, served
    assert sum(served.values()) == 1000
    listed = {function["name"]: function for function in pack.call(pack.control.list_functions())}
    assert listed["canary"]["live"] == {"version": 1, "canary": {"version": canary, "weight": 10}}

    back = pack.call(pack.control.rollback("canary"))
    assert (back["version"], back["canary"]) == (1, None)
    assert [replica["version"] for replica in pack.replicas("canary")] == [1]
    assert {session.get(f"{pack.url}/srvc/x", timeout=5).json()["version"] for _ in range(20)} == {"1"}
    assert pack.call(pack.control.show_alias("canary", "live"))["canary"] is None
    with pytest.raises(ControlError, match="no earlier live version"):
        pack.call(pack.control.rollback("canary"))
    versions = pack.call(pack.control.list_versions("canary"))
    assert [version["version"] for version in versions] == [1, canary]  # versions stay, immutable


def test_scale_to_four_healthy_replicas_and_back_to_one(pack: Embedded) -> None:
    scaling = pack.call(pack.control.scale("scaled", replicas=4))
    assert (scaling["replicas"], scaling["min"], scaling["max"]) == (4, 1, 4)
    replicas = pack.replicas("scaled")
    assert len(replicas) == 4 and all(replica["healthy"] and replica["state"] == "running" for replica in replicas)
    session = requests.Session()
    pids = {session.get(f"{pack.url}/srvx/x", timeout=5).json()["pid"] for _ in range(16)}
    assert len(pids) == 4
    with pytest.raises(ControlError, match=r"between min \(1\) and max \(4\)") as caught:
        pack.call(pack.control.scale("scaled", replicas=5))
    assert caught.value.status == 400
    assert pack.call(pack.control.scale("scaled", replicas=1))["replicas"] == 1
    assert len(pack.replicas("scaled")) == 1
    assert pack.control.scaling("scaled") == {"replicas": 1, "min": 1, "max": 4, "target": 50}
    survivors = {session.get(f"{pack.url}/srvx/x", timeout=5).json()["pid"] for _ in range(4)}
    assert len(survivors) == 1 and not [pid for pid in pids - survivors if alive(pid)]


def test_a_function_with_min_0_starts_with_no_replica_and_wakes_up(pack: Embedded) -> None:
    assert pack.replicas("lazy") == [] and pack.control.scaling("lazy")["replicas"] == 0
    answer = requests.get(f"{pack.url}/srvz/x", timeout=30)  # waits for a cold start instead of failing
    assert answer.status_code == 200 and answer.json()["version"] == "1"
    assert [replica["version"] for replica in pack.replicas("lazy")] == [1]
    assert pack.control.scaling("lazy")["replicas"] == 1
    assert pack.call(pack.control.autoscale("lazy", 0)) is True
    assert pack.replicas("lazy") == []
    assert pack.call(pack.control.ensure_replica("lazy", 20)) is True


def test_a_new_function_is_created_deployed_and_deleted(pack: Embedded, tmp_path: Path) -> None:
    folder = write_who(tmp_path / "fresh", "fresh", "/srvf")
    data = packages.build(folder)
    created = pack.call(pack.control.create_version("fresh", data, "first"))
    assert (created["version"], created["created"], created["sha256"]) == (1, True, packages.inspect(data, "fresh").sha256)
    assert pack.call(pack.control.create_version("fresh", data))["created"] is False  # same bytes: same version
    shown = pack.call(pack.control.show_function("fresh"))
    assert shown["live"] is None and shown["versions"] == 1 and shown["manifest"]["trigger"]["public_prefix"] == "/srvf"
    assert requests.get(f"{pack.url}/srvf/x", timeout=5).status_code == 404  # not deployed yet
    pack.call(pack.control.set_alias("fresh", "live", 1))
    assert requests.get(f"{pack.url}/srvf/x", timeout=5).json()["version"] == "1"
    clash = write_who(tmp_path / "clash", "clash", "/srvf")
    with pytest.raises(ControlError, match="already belongs to fresh") as caught:
        pack.call(pack.control.create_version("clash", packages.build(clash)))
    assert caught.value.status == 409
    pack.call(pack.control.delete_function("fresh"))
    assert requests.get(f"{pack.url}/srvf/x", timeout=5).status_code == 404
    assert pack.replicas("fresh") == [] and not (pack.home / "functions" / "fresh").exists()
    with pytest.raises(ControlError) as caught:
        pack.call(pack.control.show_function("fresh"))
    assert caught.value.status == 404


def test_bad_control_requests_are_4xx(pack: Embedded) -> None:
    cases: list[tuple[Coroutine[Any, Any, Any], int]] = [
        (pack.control.create_version("s", b"not a zip"), 400),
        (pack.control.create_version("s", packages.build(FUNCTIONS / "i")), 422),  # i's package under s's name
        (pack.control.create_version("Bad Name", b""), 400),
        (pack.control.show_version("s", 99), 404),
        (pack.control.set_alias("s", "live", 99), 404),
        (pack.control.set_alias("s", "live", 1, canary_version=1, canary_weight=10), 400),
        (pack.control.set_alias("s", "live", 1, canary_weight=10), 400),
        (pack.control.set_alias("s", "Live!", 1), 400),
        (pack.control.scale("s", min=3, max=2), 400),
        (pack.control.scale("s", replicas=65), 400),
        (pack.control.scale("nothing", replicas=1), 404),
        (pack.control.update_function("s", "x" * 201), 400),
    ]
    for work, status in cases:
        with pytest.raises(ControlError) as caught:
            pack.call(work)
        assert caught.value.status == status, (str(caught.value), status)
