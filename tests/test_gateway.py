"""The gateway as users run it: ``tombola up`` with tiny functions, real replicas, real signals."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from tests.pack import Pack

ECHO_MANIFEST = """
name = "echo"
[trigger]
type = "http"
public_prefix = "/srva"
[limits]
timeout = 3.0
memory_mb = 256
concurrency = 300
[scaling]
min = 2
"""

HIDDEN_MANIFEST = """
name = "hidden"
[trigger]
type = "http"
[limits]
timeout = 3.0
memory_mb = 256
"""

LONE_MANIFEST = """
name = "lone"
[trigger]
type = "http"
public_prefix = "/srvl"
[limits]
timeout = 3.0
memory_mb = 256
"""

HANDLER = '''
import os
import time

import falcon


class Echo:
    def on_get(self, req, resp, tail=""):
        time.sleep(float(req.get_param("sleep", default="0")))
        resp.media = {
            "pid": os.getpid(),
            "path": req.path,
            "query": req.query_string,
            "timeout": float(req.get_header("X-Tombola-Timeout")),
            "forwarded": sorted(req.headers),
        }

    def on_post(self, req, resp, tail=""):
        resp.media = {"length": len(req.bounded_stream.read()), "type": req.content_type}


class Tagged:
    def on_get(self, req, resp):
        resp.set_header("X-Internal-Secret", "replica-only")
        resp.set_header("Access-Control-Allow-Origin", "*")
        resp.etag = "v1"
        resp.cache_control = ["max-age=60"]
        if req.get_header("If-None-Match") == '"v1"':
            resp.status = falcon.HTTP_304
            return
        resp.media = {"tagged": True}


class Crash:
    def on_post(self, req, resp):
        os._exit(1)


def routes(ctx):
    return {"/": Echo(), "/tagged": Tagged(), "/crash": Crash(), "/{tail:path}": Echo()}
'''

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def write_function(root: Path, name: str, manifest: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.toml").write_text(manifest)
    (folder / "handler.py").write_text(HANDLER)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.05)


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while read
        return False


def assert_json_error(answer: requests.Response, status: int) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"title", "description"} and body["title"] and body["description"]
    return body


@pytest.fixture(scope="module")
def echo_pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    manifests = {"echo": ECHO_MANIFEST, "hidden": HIDDEN_MANIFEST, "lone": LONE_MANIFEST}
    yield from pack_of(tmp_path_factory.mktemp("gateway"), manifests)


def pack_of(home: Path, manifests: dict[str, str]) -> Iterator[Pack]:
    """A running pack of these tiny functions (name → manifest), stopped afterwards."""
    for name, manifest in manifests.items():
        write_function(home / "functions", name, manifest)
    pack = Pack(home / "home", {"TOMBOLA_FUNCTIONS_DIR": str(home / "functions")}).start()
    try:
        yield pack
    finally:
        pack.stop()


@pytest.fixture
def gateway(echo_pack: Pack) -> Pack:
    """The pack, with every replica healthy again after what an earlier test did to it."""
    wait_for(lambda: health(echo_pack)["status"] == "ok" and replicas_of(echo_pack, "echo") == (2, 2), 20, "healthy")
    return echo_pack


def health(pack: Pack) -> dict[str, Any]:
    report: dict[str, Any] = requests.get(f"{pack.url}/healthz", timeout=2).json()
    return report


def replicas_of(pack: Pack, function: str) -> tuple[int, int]:
    """How many replicas ``function`` has, and how many are healthy."""
    counts = health(pack)["functions"][function]
    return counts["replicas"], counts["healthy"]


def raw_get(pack: Pack, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (no client-side normalisation of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", pack.port, timeout=5)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_routes_by_public_prefix_and_strips_it(gateway: Pack) -> None:
    answer = requests.get(f"{gateway.url}/srva/user/42?x=1&y=%2F", timeout=5)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["path"], body["query"]) == ("/user/42", "x=1&y=%2F")
    assert 2.5 < body["timeout"] <= 3.0
    assert requests.get(f"{gateway.url}/srva", timeout=5).json()["path"] == "/"


def test_a_smaller_client_deadline_is_passed_on(gateway: Pack) -> None:
    answer = requests.get(f"{gateway.url}/srva/x", headers={"X-Tombola-Timeout": "1.5"}, timeout=5)
    assert 1.0 < answer.json()["timeout"] <= 1.5
    assert_json_error(requests.get(f"{gateway.url}/srva/x", headers={"X-Tombola-Timeout": "soon"}, timeout=5), 400)


def test_passes_useful_headers_only(gateway: Pack) -> None:
    answer = requests.get(
        f"{gateway.url}/srva/x", headers={"Cookie": "session=1", "Authorization": "Bearer t", "If-None-Match": '"v0"'}, timeout=5
    )
    forwarded = answer.json()["forwarded"]
    assert "IF-NONE-MATCH" in forwarded and "COOKIE" not in forwarded and "AUTHORIZATION" not in forwarded

    tagged = requests.get(f"{gateway.url}/srva/tagged", timeout=5)
    assert tagged.status_code == 200 and tagged.json() == {"tagged": True}
    assert tagged.headers["ETag"] == '"v1"' and tagged.headers["Cache-Control"] == "max-age=60"
    assert "X-Internal-Secret" not in tagged.headers and "Access-Control-Allow-Origin" not in tagged.headers
    unchanged = requests.get(f"{gateway.url}/srva/tagged", headers={"If-None-Match": '"v1"'}, timeout=5)
    assert unchanged.status_code == 304 and unchanged.content == b""


def test_balances_across_two_replicas(gateway: Pack) -> None:
    pids = [requests.get(f"{gateway.url}/srva/x", timeout=5).json()["pid"] for _ in range(20)]
    counts = {pid: pids.count(pid) for pid in set(pids)}
    assert len(counts) == 2 and min(counts.values()) >= 8, counts


def test_private_function_is_reachable_from_the_internal_listener_only(gateway: Pack) -> None:
    assert_json_error(requests.get(f"{gateway.url}/fn/hidden/x", timeout=5), 404)
    assert_json_error(requests.get(f"{gateway.url}/hidden/x", timeout=5), 404)
    internal = requests.get(f"{gateway.internal_url}/fn/hidden/inside?q=1", timeout=5)
    assert internal.status_code == 200 and (internal.json()["path"], internal.json()["query"]) == ("/inside", "q=1")
    assert requests.get(f"{gateway.internal_url}/fn/echo/x", timeout=5).status_code == 200
    assert_json_error(requests.get(f"{gateway.internal_url}/fn/nothing/x", timeout=5), 404)
    assert_json_error(requests.get(f"{gateway.internal_url}/srva/x", timeout=5), 404)


def test_unknown_paths_are_json_404s(gateway: Pack) -> None:
    for path in ("/nope", "/srvzz/x", "/healthz/more", "/static"):
        answer = requests.get(f"{gateway.url}{path}", timeout=5)
        assert_json_error(answer, 404)
        assert all(answer.headers[name] == value for name, value in SECURITY_HEADERS.items())


def test_security_headers_everywhere_and_no_cors(gateway: Pack) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    answers = [
        requests.get(f"{gateway.url}/srva/x", headers=origin, timeout=5),
        requests.get(f"{gateway.url}/healthz", headers=origin, timeout=5),
        requests.get(f"{gateway.url}/", headers=origin, timeout=5),
        requests.options(f"{gateway.url}/srva/x", headers={**origin, "Access-Control-Request-Method": "POST"}, timeout=5),
    ]
    for answer in answers:
        assert all(answer.headers[name] == value for name, value in SECURITY_HEADERS.items()), answer.url
        assert not any(name.lower().startswith("access-control-") for name in answer.headers), answer.headers


def test_bodies_over_the_limit_are_refused(gateway: Pack) -> None:
    small = requests.post(f"{gateway.url}/srva/x", data=b"a" * 1000, headers={"Content-Type": "text/plain"}, timeout=5)
    assert small.json() == {"length": 1000, "type": "text/plain"}
    assert_json_error(requests.post(f"{gateway.url}/srva/x", data=b"a" * 70_000, timeout=5), 413)
    chunked = requests.post(f"{gateway.url}/srva/x", data=iter([b"a" * 40_000, b"a" * 40_000]), timeout=5)
    assert_json_error(chunked, 413)


def test_a_slow_replica_past_the_deadline_is_a_504(gateway: Pack) -> None:
    started = time.monotonic()
    answer = requests.get(f"{gateway.url}/srva/x?sleep=5", headers={"X-Tombola-Timeout": "0.5"}, timeout=5)
    assert_json_error(answer, 504)
    assert time.monotonic() - started < 1.5


def test_static_page_and_no_traversal(gateway: Pack) -> None:
    page = requests.get(f"{gateway.url}/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache" and page.headers["ETag"]
    assert requests.get(f"{gateway.url}/", headers={"If-None-Match": page.headers["ETag"]}, timeout=5).status_code == 304
    assert requests.get(f"{gateway.url}/static/index.html", timeout=5).content == page.content
    style = requests.get(f"{gateway.url}/static/style.css", timeout=5)
    assert style.status_code == 200 and style.headers["Content-Type"] == "text/css; charset=utf-8"
    for path in ("/static/../cli.py", "/static/..%2fcli.py", "/static/%2e%2e%2fcli.py", "/static/missing.css", "/static/.hidden"):
        status, body = raw_get(gateway, path)
        assert status == 404, path
        assert json.loads(body)["title"], path


def test_healthz_counts_replicas(gateway: Pack) -> None:
    for url in (gateway.url, gateway.internal_url):
        assert requests.get(f"{url}/healthz", timeout=5).json() == {
            "status": "ok",
            "functions": {
                "echo": {"replicas": 2, "healthy": 2},
                "hidden": {"replicas": 1, "healthy": 1},
                "lone": {"replicas": 1, "healthy": 1},
            },
        }


def test_no_healthy_replica_is_a_503(gateway: Pack) -> None:
    pid = requests.get(f"{gateway.url}/srvl/x", timeout=5).json()["pid"]
    group = os.getpgid(pid)
    os.killpg(group, signal.SIGSTOP)
    try:
        wait_for(lambda: replicas_of(gateway, "lone") == (1, 0), 5, "marked unhealthy")
        assert health(gateway)["status"] == "degraded"
        answer = requests.get(f"{gateway.url}/srvl/x", timeout=5)
        assert_json_error(answer, 503)
        assert answer.headers["Retry-After"] == "1"
    finally:
        os.killpg(group, signal.SIGCONT)
    wait_for(lambda: requests.get(f"{gateway.url}/srvl/x", timeout=5).status_code == 200, 5, "healthy again")


def test_a_killed_replica_is_skipped_at_once_and_replaced(gateway: Pack) -> None:
    pids = {requests.get(f"{gateway.url}/srva/x", timeout=5).json()["pid"] for _ in range(4)}
    victim = pids.pop()
    os.killpg(os.getpgid(victim), signal.SIGKILL)
    wait_for(lambda: not alive(victim), 1, "killed")
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        answer = requests.get(f"{gateway.url}/srva/x", timeout=5)
        assert answer.status_code == 200, answer.text
        assert answer.json()["pid"] != victim
    wait_for(lambda: replicas_of(gateway, "echo") == (2, 2), 20, "replaced")
    assert victim not in {requests.get(f"{gateway.url}/srva/x", timeout=5).json()["pid"] for _ in range(4)}


def test_a_replica_dropping_a_post_is_a_502_without_retry(gateway: Pack) -> None:
    workers = {requests.get(f"{gateway.url}/srva/x", timeout=5).json()["pid"] for _ in range(4)}
    assert_json_error(requests.post(f"{gateway.url}/srva/crash", timeout=5), 502)
    wait_for(lambda: not all(alive(pid) for pid in workers), 2, "crashed")
    assert sum(alive(pid) for pid in workers) == 1


def test_200_concurrent_slow_requests(gateway: Pack) -> None:
    async def one(session: aiohttp.ClientSession) -> int:
        async with session.get(f"{gateway.url}/srva/x?sleep=1") as answer:
            await answer.read()
            return answer.status

    async def all_at_once() -> list[int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            return await asyncio.gather(*(one(session) for _ in range(200)))

    started = time.monotonic()
    statuses = asyncio.run(all_at_once())
    elapsed = time.monotonic() - started
    assert statuses == [200] * 200
    assert elapsed < 10, elapsed


def test_up_then_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    write_function(tmp_path / "functions", "lone", LONE_MANIFEST)
    home = tmp_path / "home"
    pack = Pack(home, {"TOMBOLA_FUNCTIONS_DIR": str(tmp_path / "functions"), "TOMBOLA_TOKEN": ""}).start()
    try:
        assert pack.process is not None
        replicas = children_of(pack.process.pid)
        assert len(replicas) >= 2  # the replica's gunicorn master and its worker
        token_file = home / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        log = pack.log()
        assert f"tombola is up: {pack.url}/  (control-plane token in {token_file})" in log
        assert token_file.read_text().strip() not in log
    finally:
        status = pack.stop()
    assert status == 0
    assert not [pid for pid in replicas if alive(pid)]


@pytest.fixture(scope="module")
def crash_pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    yield from pack_of(tmp_path_factory.mktemp("crash-loop"), {"lone": LONE_MANIFEST})


def replica_process(pack: Pack, name: str) -> int:
    """The pid of the one replica process (gunicorn's master) of function ``name`` in ``pack``."""
    title = f"gunicorn: master [tombola-{name}]".encode()
    found = [pid for pid in children_of(pack.process.pid) if _cmdline(pid).startswith(title)]
    assert len(found) == 1, found
    return found[0]


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def test_a_replica_that_keeps_crashing_soon_after_its_start_is_restarted_ever_later(crash_pack: Pack) -> None:
    """A crash loop is not restarted every half second: at once, then after 2, 4… seconds."""
    gaps = []
    for _ in range(4):
        wait_for(lambda: replicas_of(crash_pack, "lone") == (1, 1), 30, "restarted")
        os.kill(replica_process(crash_pack, "lone"), signal.SIGKILL)
        crashed = time.monotonic()
        wait_for(lambda: replicas_of(crash_pack, "lone") != (1, 1), 5, "seen down")
        wait_for(lambda: replicas_of(crash_pack, "lone") == (1, 1), 30, "restarted")
        gaps.append(time.monotonic() - crashed)
    assert gaps[3] > gaps[0] + 5, gaps  # the fourth restart waited 8 s, the first none
    exits = [json.loads(line) for line in crash_pack.log().splitlines() if '"replica exited unexpectedly"' in line]
    assert [exit["retry_in"] for exit in exits[-4:]] == [0.0, 2.0, 4.0, 8.0]
