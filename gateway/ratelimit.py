"""A rate limit per client on the public writes (the play, ``POST /srvb/...``): a token bucket per address.

Each client has a bucket of ``burst`` plays that refills at ``rate`` plays a
second; a play that finds it empty is answered 429 with Retry-After, before it
reaches B. The table of buckets is bounded: past ``max_clients`` addresses the
least recently seen one is forgotten (it starts again with a full bucket), so
countless or spoofed addresses cost no memory. An IPv6 client is its /64, the
block one subscriber gets.

The client is the connection's peer. Behind a reverse proxy, name the proxy in
``TOMBOLA_TRUSTED_PROXIES``: for requests from it, the client is the right-most
``X-Forwarded-For`` entry that is not a trusted proxy itself (the entries to its
left are the client's to write, so they are never believed).
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import math
import time
from collections.abc import Callable, Sequence

import falcon
import falcon.asgi

from gateway.config import GatewayConfig

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_CLIENTS = 10_000
IPV6_CLIENT_PREFIX = 64


@dataclasses.dataclass
class Bucket:
    """The plays a client may make now, as of ``updated`` (the clock's time)."""

    tokens: float
    updated: float


class TokenBuckets:
    """One bucket per client key, at most ``max_clients`` of them."""

    def __init__(
        self, rate: float, burst: int, max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be positive, burst and max_clients at least 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: collections.OrderedDict[str, Bucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """Take one play from ``client``'s bucket: 0.0 when allowed, else the seconds until one is there."""
        now = self.clock()
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = Bucket(float(self.burst), now)
            while len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)
        self._buckets[client] = bucket  # the most recently seen go last
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_key(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The key of the client behind a connection from ``peer``: its address, or its /64 for IPv6."""
    address = _address(peer)
    if address is None:
        return peer
    if forwarded_for and any(address in network for network in trusted):
        for entry in reversed(forwarded_for.split(",")):
            hop = _address(entry)
            if hop is None:
                break  # past what a trusted proxy wrote: keep the last hop that could be read
            address = hop
            if not any(address in network for network in trusted):
                break
    if address.version == 6:
        return str(ipaddress.ip_network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


class PlayLimit:
    """Refuses a client's write past its share with 429 and Retry-After."""

    def __init__(self, buckets: TokenBuckets, trusted: Sequence[Network] = ()) -> None:
        self.buckets = buckets
        self.trusted = tuple(trusted)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> PlayLimit | None:
        """The limit ``TOMBOLA_PLAY_RATE`` and ``TOMBOLA_PLAY_BURST`` ask for; None when the rate is 0."""
        if config.play_rate == 0:
            return None
        return cls(TokenBuckets(config.play_rate, config.play_burst), config.trusted_proxies)

    def check(self, req: falcon.asgi.Request) -> None:
        """Count ``req`` against its client; raise 429 when the client has no play left right now."""
        client = client_key(req.remote_addr, req.get_header("X-Forwarded-For"), self.trusted)
        wait = self.buckets.take(client)
        if wait > 0:
            raise falcon.HTTPTooManyRequests(
                title="Too many plays",
                description=f"This client may play {self.buckets.rate:g} times a second "
                f"(bursts of {self.buckets.burst}); retry later.",
                retry_after=math.ceil(wait),
            )
