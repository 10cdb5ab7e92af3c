"""The HTTP runner as a real process: health, concurrency, deadlines, memory, graceful stop."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.support import free_port

MANIFEST = """
name = "demo"
[trigger]
type = "http"
[limits]
timeout = 2.0
memory_mb = 256
concurrency = 40
"""

HANDLER = '''
import time

import falcon


class Sleep:
    def on_get(self, req, resp, seconds):
        time.sleep(float(seconds))
        resp.media = {"slept": float(seconds)}


class Allocate:
    def on_get(self, req, resp, megabytes):
        blob = bytearray(int(megabytes) * 1024 * 1024)
        resp.media = {"allocated": len(blob)}


class Crash:
    def on_get(self, req, resp):
        raise RuntimeError("secret internals")


class Threads:
    """Real OS threads (as gevent's resolver starts), each allocating a little: each gets its own malloc arena."""

    def on_get(self, req, resp, count):
        from gevent import monkey

        start_thread = monkey.get_original("_thread", "start_new_thread")
        done = []

        def work():
            done.append(len([bytes(1000) for _ in range(2000)]))

        for _ in range(int(count)):
            start_thread(work, ())
        deadline = time.monotonic() + 5
        while len(done) < int(count) and time.monotonic() < deadline:
            time.sleep(0.05)
        resp.media = {"threads": len(done)}


def routes(ctx):
    return {
        "/sleep/{seconds}": Sleep(), "/allocate/{megabytes}": Allocate(), "/crash": Crash(), "/threads/{count}": Threads(),
    }
'''


@pytest.fixture
def demo(tmp_path):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "manifest.toml").write_text(MANIFEST)
    (folder / "handler.py").write_text(HANDLER)
    port = free_port()
    log = open(tmp_path / "demo.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", str(folder), "--port", str(port), "--version", "7"],
        env={**os.environ, "TOMBOLA_HOME": str(tmp_path)},
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(f"{url}/healthz", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.05)
    yield url, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


def test_health_names_function_and_version(demo):
    url, process = demo
    health = requests.get(f"{url}/healthz", timeout=2).json()
    assert health["status"] == "ok" and health["function"] == "demo" and health["version"] == "7"
    assert health["in_flight"] == 0


def test_one_replica_holds_many_slow_executions_at_once(demo):
    url, _ = demo
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(lambda _: requests.get(f"{url}/sleep/1", timeout=10).status_code, range(40)))
    assert codes == [200] * 40
    assert time.monotonic() - started < 10  # one at a time would take 40 s


def test_beyond_its_concurrency_a_replica_answers_503_with_retry_after(demo):
    url, _ = demo
    with concurrent.futures.ThreadPoolExecutor(60) as pool:
        answers = list(pool.map(lambda _: requests.get(f"{url}/sleep/1", timeout=10), range(60)))
    busy = [a for a in answers if a.status_code == 503]
    assert len([a for a in answers if a.status_code == 200]) >= 40 - 2
    assert busy and all(a.headers["retry-after"] == "1" and a.json()["title"] == "Replica busy" for a in busy)


def test_an_execution_past_its_timeout_is_stopped_with_504(demo):
    url, _ = demo
    started = time.monotonic()
    answer = requests.get(f"{url}/sleep/30", timeout=10)
    assert answer.status_code == 504 and answer.json()["title"] == "Execution timed out"
    assert time.monotonic() - started < 5
    assert requests.get(f"{url}/sleep/2", headers={"X-Tombola-Timeout": "0.3"}, timeout=10).status_code == 504


def test_a_crash_is_a_json_500_without_internals(demo):
    url, _ = demo
    answer = requests.get(f"{url}/crash", timeout=5)
    assert answer.status_code == 500
    assert answer.json()["title"] == "Internal error" and "secret" not in answer.text


def test_the_memory_limit_holds_and_the_replica_survives(demo):
    url, _ = demo
    assert requests.get(f"{url}/allocate/8", timeout=5).status_code == 200
    assert requests.get(f"{url}/allocate/1024", timeout=5).status_code == 500
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200


def test_the_memory_limit_counts_memory_not_address_space(demo):
    """Threads reserve address space (a malloc arena each) they never use: the limit must not refuse them."""
    url, _ = demo
    answer = requests.get(f"{url}/threads/16", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"threads": 16}


def test_sigterm_lets_in_flight_work_finish(demo):
    url, process = demo
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(requests.get, f"{url}/sleep/1.5", timeout=10)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        answer = pending.result()
    assert answer.status_code == 200 and answer.json() == {"slept": 1.5}
    assert process.wait(timeout=15) == 0
