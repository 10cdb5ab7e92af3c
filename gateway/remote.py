"""Replicas on other servers: announced to the gateway, health-checked like local ones.

A server that runs replicas for a gateway elsewhere (the runner servers and
W's autoscaling group of heat/) runs ``python -m gateway.remote announce``:
every few seconds it PUTs the list of its replicas to
``/remote/hosts/{host}`` on the gateway's private listener, with the replica
token (``TOMBOLA_REPLICA_TOKEN``), and it withdraws them (DELETE) when it
stops. The gateway registers each announced replica, probes its ``/healthz``
before sending it anything, and forgets a server that misses its lease: a
server removed by a scale-down, or lost, leaves nothing behind.

The gateway runs the functions of ``TOMBOLA_LOCAL_FUNCTIONS`` itself, under
its control plane (default: every function, as ``make run`` does; ``none``:
none). The others are remote: routed to announced replicas only. A function's
replicas are either all local or all remote, so announcing a replica of a
local function is refused (409).
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import logging
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import falcon
import falcon.asgi
import requests

from gateway.registry import Registry, Replica
from runner import logs
from runner.function import Function
from runner.manifest import NAME_PATTERN
from runner.settings import SettingsError

log = logging.getLogger("tombola.gateway")

ROUTE = "/remote/hosts/{host}"
REMOTE_VERSION = 0  # the version number of every remote replica: it runs what its server installed
INTERVAL = 5.0  # seconds between two announcements of a server
LEASE = 3 * INTERVAL  # a server that stays silent this long is forgotten
MAX_REPLICAS = 64
HOST_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
URL_PATTERN = re.compile(r"http://(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(?P<port>[0-9]{1,5})")


def local_functions(env: Mapping[str, str] | None = None) -> frozenset[str] | None:
    """The functions named by TOMBOLA_LOCAL_FUNCTIONS; None (unset): every function."""
    raw = (os.environ if env is None else env).get("TOMBOLA_LOCAL_FUNCTIONS", "").strip()
    if not raw:
        return None
    names = [name.strip() for name in raw.split(",")]
    if names == ["none"]:
        return frozenset()
    for name in names:
        if not NAME_PATTERN.fullmatch(name) or name == "none":
            raise SettingsError(f"TOMBOLA_LOCAL_FUNCTIONS must list function names (or none), not {raw!r}")
    return frozenset(names)


@dataclasses.dataclass
class Lease:
    """The replicas one server announced, and until when they hold."""

    replicas: dict[str, Replica]
    expires: float


class RemoteReplicas:
    """``PUT /remote/hosts/{host}`` (the server's replicas, renewing its lease) and ``DELETE`` (withdraw them)."""

    def __init__(
        self,
        registry: Registry,
        token: str,
        local: frozenset[str],
        remote: frozenset[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.token = token
        self.local = local
        self.remote = remote
        self.clock = clock
        self._leases: dict[str, Lease] = {}

    @classmethod
    def install(
        cls,
        registry: Registry,
        app: falcon.asgi.App,
        functions: Sequence[Function],
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> list[Function]:
        """Register the remote functions, route announcements on ``app``; return the functions to run locally."""
        env = os.environ if env is None else env
        local = local_functions(env)
        names = {function.name for function in functions}
        unknown = sorted((local or frozenset()) - names)
        if unknown:
            raise SettingsError(f"TOMBOLA_LOCAL_FUNCTIONS names no function called {', '.join(unknown)}")
        remote = [function for function in functions if local is not None and function.name not in local]
        for function in remote:
            registry.add_function(function.manifest)
            registry.set_traffic(function.name, {REMOTE_VERSION: 1})
        token = env.get("TOMBOLA_REPLICA_TOKEN", "")
        kept = [function for function in functions if function not in remote]
        resource = cls(registry, token, frozenset(f.name for f in kept), frozenset(f.name for f in remote), clock)
        app.add_route(ROUTE, resource)
        return kept

    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, host: str) -> None:
        self._authorize(req, host)
        announced = _announcement(await req.get_media())
        self._expire()
        for function, _ in announced:
            if function in self.local:
                raise falcon.HTTPConflict(
                    title="Local function",
                    description=f"The gateway runs {function} itself (TOMBOLA_LOCAL_FUNCTIONS), not remote replicas.",
                )
            if function not in self.remote:
                raise falcon.HTTPNotFound(
                    title="Unknown function", description=f"The gateway serves no function {function}."
                )
        lease = self._leases.setdefault(host, Lease({}, 0.0))
        wanted = {url: function for function, url in announced}
        for url, replica in list(lease.replicas.items()):
            if wanted.get(url) != replica.function:
                self.registry.remove_replica(lease.replicas.pop(url))
        for url, function in wanted.items():
            if url not in lease.replicas:
                replica = Replica(
                    f"{function}@{urllib.parse.urlsplit(url).netloc}", function, REMOTE_VERSION, url, healthy=False
                )
                lease.replicas[url] = replica
                self.registry.add_replica(replica)
        lease.expires = self.clock() + LEASE
        resp.media = {
            "host": host,
            "replicas": sorted(replica.id for replica in lease.replicas.values()),
            "lease": LEASE,
        }

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, host: str) -> None:
        self._authorize(req, host)
        self._withdraw(host)
        resp.status = falcon.HTTP_NO_CONTENT

    def _authorize(self, req: falcon.asgi.Request, host: str) -> None:
        if not self.token:
            raise falcon.HTTPForbidden(
                title="Remote replicas are off", description="The gateway has no TOMBOLA_REPLICA_TOKEN."
            )
        scheme, _, presented = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), self.token.encode()):
            raise falcon.HTTPUnauthorized(
                title="Unauthorized", description="Announce with the replica token.", challenges=["Bearer"]
            )
        if not HOST_PATTERN.fullmatch(host):
            raise falcon.HTTPBadRequest(title="Bad host", description="A host is a name or an address.")

    def _expire(self) -> None:
        now = self.clock()
        for host, lease in list(self._leases.items()):
            if lease.expires < now:
                log.warning("remote server missed its lease", extra={"host": host})
                self._withdraw(host)

    def _withdraw(self, host: str) -> None:
        lease = self._leases.pop(host, None)
        for replica in lease.replicas.values() if lease else ():
            self.registry.remove_replica(replica)


def _announcement(body: Any) -> list[tuple[str, str]]:
    """The (function, base URL) pairs of an announcement ``{"replicas": [{"function", "url"}]}``; 400 when malformed."""
    replicas = body.get("replicas") if isinstance(body, dict) else None
    if not isinstance(replicas, list) or len(replicas) > MAX_REPLICAS:
        raise falcon.HTTPBadRequest(
            title="Bad announcement",
            description=f'Send {{"replicas": [{{"function", "url"}}]}}, at most {MAX_REPLICAS}.',
        )
    pairs = []
    for entry in replicas:
        function = entry.get("function") if isinstance(entry, dict) else None
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(function, str) or not NAME_PATTERN.fullmatch(function):
            raise falcon.HTTPBadRequest(title="Bad announcement", description="Each replica needs a function name.")
        if not isinstance(url, str) or not URL_PATTERN.fullmatch(url) or not 0 < int(url.rsplit(":", 1)[1]) < 65536:
            raise falcon.HTTPBadRequest(
                title="Bad announcement", description="Each replica needs a base URL like http://10.0.0.7:9100."
            )
        pairs.append((function, url))
    if len({url for _, url in pairs}) != len(pairs):
        raise falcon.HTTPBadRequest(title="Bad announcement", description="A URL is announced twice.")
    return pairs


class Announcer:
    """Announces a server's replicas to the gateway until stopped, then withdraws them."""

    def __init__(self, gateway_url: str, token: str, replicas: Sequence[tuple[str, str]]) -> None:
        hosts = {urllib.parse.urlsplit(url).hostname for _, url in replicas}
        if len(hosts) != 1:
            raise ValueError("announce the replicas of one server, all at its address")
        host = hosts.pop() or ""
        self.url = f"{gateway_url.rstrip('/')}/remote/hosts/{urllib.parse.quote(host, safe='')}"
        self.body = {"replicas": [{"function": function, "url": url} for function, url in replicas]}
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.stopped = threading.Event()

    def run(self) -> None:
        """Announce every INTERVAL seconds until ``stopped`` is set, then withdraw.

        An unreachable gateway (restarting, say) is tried again every second;
        a refusal is logged and tried again at the next interval.
        """
        announced = False
        while not self.stopped.is_set():
            delay = INTERVAL
            try:
                answer = self.session.put(self.url, json=self.body, timeout=INTERVAL)
                answer.raise_for_status()
            except requests.RequestException as error:
                log.warning("announcement failed", extra={"url": self.url, "error": _reason(error)})
                announced = False
                delay = INTERVAL if error.response is not None else 1.0
            else:
                if not announced:
                    log.info("announced", extra={"url": self.url, "replicas": answer.json().get("replicas")})
                announced = True
            self.stopped.wait(delay)
        try:
            self.session.delete(self.url, timeout=3).raise_for_status()
        except requests.RequestException as error:
            log.warning("withdrawal failed (the lease will expire)", extra={"url": self.url, "error": _reason(error)})


def _reason(error: requests.RequestException) -> str:
    answer = error.response
    if answer is None:
        return str(error)
    return f"{answer.status_code} {answer.text[:200]}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway.remote", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    announce = commands.add_parser("announce", help="announce this server's replicas to the gateway until stopped")
    announce.add_argument("--gateway", required=True, help="the gateway's private listener, like http://10.0.0.5:8081")
    announce.add_argument("--version", default="local", help="what the replicas run (logged)")
    announce.add_argument("replicas", nargs="+", metavar="FUNCTION=URL", help="e.g. w=http://10.0.0.7:9100")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(component="announce")
    token = os.environ.get("TOMBOLA_REPLICA_TOKEN", "")
    pairs = [tuple(item.partition("=")[::2]) for item in args.replicas]
    bad = [
        item
        for item, (function, url) in zip(args.replicas, pairs, strict=True)
        if not NAME_PATTERN.fullmatch(function) or not URL_PATTERN.fullmatch(url)
    ]
    if not token or bad:
        problem = "TOMBOLA_REPLICA_TOKEN is not set" if not token else f"not FUNCTION=http://HOST:PORT: {' '.join(bad)}"
        print(f"gateway.remote: {problem}", file=sys.stderr)
        return 2
    try:
        announcer = Announcer(args.gateway, token, pairs)
    except ValueError as error:
        print(f"gateway.remote: {error}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: announcer.stopped.set())
    log.info("announcing", extra={"gateway": args.gateway, "version": args.version, "replicas": args.replicas})
    announcer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
