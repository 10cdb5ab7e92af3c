"""Security: no debug endpoint, the control plane off the public listener, a rate limit per client on plays,
same-origin only (no CORS), security headers, and no secret in the repository.

The parts on their own first (token buckets, client addresses, the settings,
the same-origin rule), then a real pack (``tombola up``) as production runs it:
``TOMBOLA_CONTROL_PUBLIC=false`` and a play limit behind a trusted proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
import requests

from gateway.app import create_public_app
from gateway.balancer import Balancer
from gateway.config import GatewayConfig
from gateway.proxy import Proxy
from gateway.ratelimit import MAX_CLIENTS, PlayLimit, TokenBuckets, client_key
from gateway.registry import Registry
from runner.settings import SettingsError
from tests.pack import Pack

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".secrets.baseline"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PROBES = (
    "/debug", "/_debug", "/debug/vars", "/debug/pprof", "/shutdown", "/_shutdown", "/quit", "/restart", "/admin",
    "/admin/", "/console", "/server-status", "/server-info", "/.env", "/.git/config", "/.git/HEAD", "/actuator",
    "/actuator/shutdown", "/actuator/env", "/phpinfo.php", "/config", "/api/debug", "/__debug__", "/_profiler",
    "/trace", "/metrics/debug", "/v1/shutdown", "/v1/debug",
)
BURST = 3
UNKNOWN = 100_000  # the guarded pack seeds customers 1..500


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# The parts on their own ------------------------------------------------------------------------------------


class TestTokenBuckets:
    def test_a_burst_then_the_rate(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
        assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert buckets.take("a") == pytest.approx(0.5)  # one play comes back every half second
        clock.now += 0.5
        assert buckets.take("a") == 0.0
        assert buckets.take("a") == pytest.approx(0.5)
        assert buckets.take("b") == 0.0  # another client has its own bucket
        clock.now += 3600
        assert [buckets.take("a") for _ in range(4)][-1] > 0  # refilled up to the burst, no further

    def test_refused_plays_do_not_count(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(rate=1.0, burst=1, clock=clock)
        assert buckets.take("a") == 0.0
        for _ in range(100):
            assert buckets.take("a") > 0
        clock.now += 1.0
        assert buckets.take("a") == 0.0  # hammering while refused did not push the next play further away

    def test_the_table_is_bounded_and_forgets_the_least_recent(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(rate=0.001, burst=1, max_clients=100, clock=clock)
        assert buckets.take("steady") == 0.0
        for n in range(10_000):  # spoofed addresses
            buckets.take(f"10.{n // 256 % 256}.{n % 256}.1")
            if n % 50 == 0:
                buckets.take("steady")  # seen often: stays in the table, still refused
            assert len(buckets) <= 100
        assert buckets.take("steady") > 0
        assert buckets.take("10.0.0.1") == 0.0  # seen long ago: forgotten, starts with a full bucket
        assert MAX_CLIENTS >= 1000

    def test_bad_parameters(self) -> None:
        for rate, burst in ((0, 1), (-1, 1), (1, 0)):
            with pytest.raises(ValueError):
                TokenBuckets(rate=rate, burst=burst)


class TestClientKey:
    TRUSTED = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("127.0.0.1/32"))

    def test_the_peer_unless_it_is_a_trusted_proxy(self) -> None:
        assert client_key("192.0.2.7", None, self.TRUSTED) == "192.0.2.7"
        assert client_key("192.0.2.7", "198.51.100.1", self.TRUSTED) == "192.0.2.7"  # not a proxy: not believed
        assert client_key("192.0.2.7", "198.51.100.1", ()) == "192.0.2.7"

    def test_behind_trusted_proxies_the_right_most_untrusted_hop(self) -> None:
        assert client_key("10.0.0.5", "198.51.100.1", self.TRUSTED) == "198.51.100.1"
        # The client wrote the left part itself: a spoofed address there changes nothing.
        assert client_key("10.0.0.5", "1.2.3.4, 198.51.100.1", self.TRUSTED) == "198.51.100.1"
        assert client_key("10.0.0.5", "1.2.3.4, 198.51.100.1, 10.0.0.9", self.TRUSTED) == "198.51.100.1"
        assert client_key("10.0.0.5", "junk, 198.51.100.1", self.TRUSTED) == "198.51.100.1"
        assert client_key("10.0.0.5", "198.51.100.1, junk", self.TRUSTED) == "10.0.0.5"  # the proxy's own hop
        assert client_key("10.0.0.5", "10.0.0.9", self.TRUSTED) == "10.0.0.9"  # only proxies: the farthest one

    def test_an_ipv6_client_is_its_64(self) -> None:
        assert client_key("2001:db8:1:2:aaaa::1", None, ()) == "2001:db8:1:2::/64"
        assert client_key("2001:db8:1:2:bbbb::7", None, ()) == client_key("2001:db8:1:2::9", None, ())
        assert client_key("2001:db8:1:3::1", None, ()) != client_key("2001:db8:1:2::1", None, ())


class TestSettings:
    def test_defaults_limit_plays_and_trust_no_proxy(self) -> None:
        config = GatewayConfig.from_environ({})
        assert (config.play_rate, config.play_burst, config.trusted_proxies) == (5.0, 20, ())
        assert PlayLimit.from_config(config) is not None
        assert PlayLimit.from_config(GatewayConfig.from_environ({"TOMBOLA_PLAY_RATE": "0"})) is None

    def test_values(self) -> None:
        config = GatewayConfig.from_environ(
            {"TOMBOLA_PLAY_RATE": "0.5", "TOMBOLA_PLAY_BURST": "2", "TOMBOLA_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16,::1"}
        )
        assert (config.play_rate, config.play_burst) == (0.5, 2)
        assert [str(network) for network in config.trusted_proxies] == ["10.0.0.5/32", "10.1.0.0/16", "::1/128"]

    @pytest.mark.parametrize(
        "env",
        [
            {"TOMBOLA_PLAY_RATE": "-1"},
            {"TOMBOLA_PLAY_RATE": "fast"},
            {"TOMBOLA_PLAY_RATE": "nan"},
            {"TOMBOLA_PLAY_RATE": "inf"},
            {"TOMBOLA_PLAY_BURST": "0"},
            {"TOMBOLA_PLAY_BURST": "1.5"},
            {"TOMBOLA_TRUSTED_PROXIES": "10.0.0.0/33"},
            {"TOMBOLA_TRUSTED_PROXIES": "proxy.example"},
        ],
    )
    def test_bad_values_are_named(self, env: dict[str, str]) -> None:
        with pytest.raises(SettingsError, match=next(iter(env))):
            GatewayConfig.from_environ(env)

    def test_the_control_plane_is_public_by_default_on_loopback_only(self) -> None:
        assert GatewayConfig.from_environ({}).control_public
        assert GatewayConfig.from_environ({"TOMBOLA_HOST": "::1"}).control_public
        assert not GatewayConfig.from_environ({"TOMBOLA_HOST": "0.0.0.0"}).control_public
        assert not GatewayConfig.from_environ({"TOMBOLA_HOST": "192.0.2.10"}).control_public
        assert GatewayConfig.from_environ({"TOMBOLA_HOST": "0.0.0.0", "TOMBOLA_CONTROL_PUBLIC": "true"}).control_public


def test_writes_from_another_origin_are_refused_before_routing() -> None:
    registry = Registry()
    app = create_public_app(registry, Proxy(registry, Balancer(registry), None, 1024))  # type: ignore[arg-type]

    async def scenario() -> None:
        async with falcon.testing.ASGIConductor(app) as conductor:
            host = {"host": "shop.example", "port": 8080}  # Host: shop.example:8080
            for origin in ("https://evil.example", "null", "http://shop.example:8081", "http://shop.example.evil:8080"):
                refused = await conductor.simulate_post("/healthz", headers={"Origin": origin}, **host)
                assert refused.status_code == 403, origin
                assert refused.json["title"] == "Cross-origin request"
            own = await conductor.simulate_post("/healthz", headers={"Origin": "http://shop.example:8080"}, **host)
            assert own.status_code == 405  # past the origin check: the route has no POST
            assert (await conductor.simulate_post("/healthz", **host)).status_code == 405  # no Origin: a program
            read = await conductor.simulate_get("/healthz", headers={"Origin": "https://evil.example"}, **host)
            assert read.status_code == 200 and "Access-Control-Allow-Origin" not in read.headers

    asyncio.run(scenario())


# A production-like pack -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    """The pack as a server runs it: /v1 off the public listener, plays limited per client behind a proxy."""
    env = {
        "TOMBOLA_CONTROL_PUBLIC": "false",
        "TOMBOLA_PLAY_RATE": "0.2",
        "TOMBOLA_PLAY_BURST": str(BURST),
        "TOMBOLA_TRUSTED_PROXIES": "127.0.0.1",
        "TOMBOLA_W_TEMPO": "0.1",
        "TOMBOLA_SEED_CUSTOMERS": "500",
    }
    pack = Pack(tmp_path_factory.mktemp("guarded"), env).start()
    yield pack
    assert pack.stop() == 0, pack.log()


def assert_json_error(answer: requests.Response, status: int) -> dict[str, str]:
    assert answer.status_code == status, (answer.url, answer.status_code, answer.text)
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body: dict[str, str] = answer.json()
    assert set(body) == {"title", "description"} and body["title"] and body["description"]
    return body


def test_no_debug_shutdown_or_admin_endpoint_on_either_listener(guarded: Pack) -> None:
    token = {"Authorization": f"Bearer {guarded.env['TOMBOLA_TOKEN']}"}
    for base in (guarded.url, guarded.internal_url):
        for path in PROBES:
            for method in ("GET", "POST"):
                answer = requests.request(method, f"{base}{path}", headers=token, timeout=5)
                assert answer.status_code in (404, 405), (method, base, path, answer.status_code)
                assert answer.headers["Content-Type"].startswith("application/json")
        traced = requests.request("TRACE", f"{base}/healthz", headers={"X-Secret": "echo-me"}, timeout=5)
        assert traced.status_code == 405 and "echo-me" not in traced.text
        assert "Server" not in requests.get(f"{base}/healthz", timeout=5).headers  # no server name or version
    assert requests.get(f"{guarded.url}/healthz", timeout=5).json()["status"] == "ok"  # every probe left it standing


def test_the_control_plane_is_not_on_the_public_listener(guarded: Pack) -> None:
    token = {"Authorization": f"Bearer {guarded.env['TOMBOLA_TOKEN']}"}
    for path in ("/v1/functions", "/v1/openapi.json", "/v1/replicas", "/metrics"):
        assert_json_error(requests.get(f"{guarded.url}{path}", headers=token, timeout=5), 404)
    assert_json_error(requests.post(f"{guarded.url}/v1/functions/i/scaling", headers=token, timeout=5), 404)
    # On the internal listener: there, and behind the token.
    refused = requests.get(f"{guarded.internal_url}/v1/functions", timeout=5)
    assert_json_error(refused, 401)
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert_json_error(requests.get(f"{guarded.internal_url}/v1/functions", headers={"Authorization": "Bearer x"}, timeout=5), 401)
    listed = requests.get(f"{guarded.internal_url}/v1/functions", headers=token, timeout=5)
    assert listed.status_code == 200 and {"i", "s", "b", "p"} <= {f["name"] for f in listed.json()["functions"]}
    assert requests.get(f"{guarded.internal_url}/metrics", timeout=5).status_code == 200


def test_security_headers_on_the_page(guarded: Pack) -> None:
    for path in ("/", "/?id=42", "/static/app.js", "/status", "/status.json", "/openapi.json", "/srvi/user/42", "/nope"):
        answer = requests.get(f"{guarded.url}{path}", timeout=5)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (path, name)


def play(pack: Pack, customer: int, **headers: str) -> requests.Response:
    return requests.post(f"{pack.url}/srvb/user/{customer}", headers=headers, timeout=30)


def status(pack: Pack, customer: int) -> str:
    answer: str = requests.get(f"{pack.url}/srvs/user/{customer}", timeout=5).json()["status"]
    return answer


def test_plays_are_limited_per_client(guarded: Pack) -> None:
    first = {"X-Forwarded-For": "198.51.100.1"}  # the test is the trusted proxy (127.0.0.1) of two clients
    second = {"X-Forwarded-For": "203.0.113.9, 198.51.100.2"}
    # Plays of unknown customers (404 from B, at once) spend the burst quickly, long before a play comes back.
    answers = [play(guarded, UNKNOWN + n, **first) for n in range(BURST)]
    assert [answer.status_code for answer in answers] == [404] * BURST, [answer.text for answer in answers]
    limited = play(guarded, BURST + 1, **first)
    body = assert_json_error(limited, 429)
    assert body["title"] == "Too many plays" and int(limited.headers["Retry-After"]) >= 1
    assert status(guarded, BURST + 1) == "not_played"  # refused at the gateway: B never saw it
    assert play(guarded, 1, **first).status_code == 429  # whoever the customer, refused before B
    # Another client behind the same proxy has its own bucket; a spoofed left part of the header changes nothing.
    assert play(guarded, 100, **second).status_code == 200
    spoofed = play(guarded, 101, **{"X-Forwarded-For": "198.51.100.2, 198.51.100.2"})
    assert spoofed.status_code == 200  # the same client as `second`, who has plays left
    # The first client gets a play back as the bucket refills, Retry-After later.
    deadline = time.monotonic() + 30
    while (answer := play(guarded, BURST + 1, **first)).status_code == 429:
        assert time.monotonic() < deadline, "the bucket never refilled"
        time.sleep(float(answer.headers["Retry-After"]))
    assert answer.status_code == 200 and status(guarded, BURST + 1) == "played"
    assert play(guarded, 300).status_code in (200, 409)  # reads were never limited; the proxy itself is a client too
    for _ in range(3 * BURST):
        assert requests.get(f"{guarded.url}/srvs/user/1", timeout=5).status_code == 200


def test_cors_same_origin_only(guarded: Pack) -> None:
    other = "https://elsewhere.example"
    preflight = requests.options(
        f"{guarded.url}/srvb/user/200",
        headers={"Origin": other, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
        timeout=5,
    )
    assert not any(name.lower().startswith("access-control-") for name in preflight.headers), preflight.headers
    read = requests.get(f"{guarded.url}/srvi/user/200", headers={"Origin": other}, timeout=5)
    assert read.status_code == 200 and "Access-Control-Allow-Origin" not in read.headers
    # A simple cross-site POST (a form) needs no preflight: the gateway refuses it, and nothing is played.
    forged = requests.post(
        f"{guarded.url}/srvb/user/200", headers={"Origin": other, "Content-Type": "application/x-www-form-urlencoded"}, timeout=5
    )
    assert assert_json_error(forged, 403)["title"] == "Cross-origin request"
    assert_json_error(requests.post(f"{guarded.url}/srvb/user/200", headers={"Origin": "null"}, timeout=5), 403)
    assert status(guarded, 200) == "not_played"
    own = requests.post(
        f"{guarded.url}/srvb/user/200", headers={"Origin": guarded.url, "X-Forwarded-For": "192.0.2.200"}, timeout=30
    )
    assert own.status_code == 200, own.text
    assert "Access-Control-Allow-Origin" not in own.headers and status(guarded, 200) == "played"


# The repository ---------------------------------------------------------------------------------------------


def repository_files() -> list[str]:
    """Every file git tracks, and the new ones it would (not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode()
    return sorted(name for name in set(listed.split("\0")) if name and (ROOT / name).is_file())


def test_no_secret_in_the_repository() -> None:
    """detect-secrets over the repository, with the plugins and filters of .secrets.baseline.

    The baseline excludes RabbitMQ's default password ``guest`` (it logs in
    from loopback only) and holds the audited false positives (documentation
    placeholders, Heat template parameters, test dummies), each marked
    ``is_secret: false``. A new finding fails: remove the secret, or audit it
    (``detect-secrets scan --baseline .secrets.baseline``, then ``detect-secrets audit``).
    """
    from detect_secrets import SecretsCollection
    from detect_secrets.core import baseline
    from detect_secrets.settings import transient_settings

    files = [name for name in repository_files() if name != BASELINE.name]  # the baseline holds hashes only
    assert "gateway/app.py" in files and len(files) > 50
    config = baseline.load_from_file(str(BASELINE))
    found = SecretsCollection(root=str(ROOT))
    with transient_settings(config):
        found.scan_files(*files)
        audited = baseline.load(config, str(BASELINE))
    false_positives = {(name, known.secret_hash, known.type) for name, known in audited if known.is_secret is False}
    unaudited = [
        f"{name}:{secret.line_number} ({secret.type})"
        for name, secret in found
        if (name, secret.secret_hash, secret.type) not in false_positives
    ]
    assert unaudited == [], "secrets found: remove them, or audit a false positive into .secrets.baseline"
