"""The gateway's own settings, read from the environment (the pack's are in runner.settings)."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from runner.environment import SettingsError, flag, number, whole

REPO_FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
PORT = "a port number between 1 and 65535"


def _networks(env: Mapping[str, str], name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = env.get(name, "")
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())
    except ValueError:
        expected = "addresses or networks separated by commas (e.g. 10.0.0.5,10.1.0.0/16)"
        raise SettingsError(f"{name} must be {expected}, not {raw!r}") from None


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """Where the gateway listens, which functions it serves and how it guards them."""

    host: str
    port: int
    internal_host: str
    internal_port: int
    functions_dir: Path
    token: str
    control_public: bool
    max_body: int
    start_timeout: float  # how long a new replica may take to answer /healthz
    play_rate: float  # public writes (plays) a second per client; 0: no limit
    play_burst: int
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]  # whose X-Forwarded-For is believed

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        """Read the configuration from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        host = env.get("TOMBOLA_HOST") or "127.0.0.1"
        return cls(
            host=host,
            port=whole(env, "TOMBOLA_PORT", 8080, low=1, high=65535, expected=PORT),
            internal_host=env.get("TOMBOLA_INTERNAL_HOST") or "127.0.0.1",
            internal_port=whole(env, "TOMBOLA_INTERNAL_PORT", 8081, low=1, high=65535, expected=PORT),
            functions_dir=Path(env.get("TOMBOLA_FUNCTIONS_DIR") or REPO_FUNCTIONS).resolve(),
            token=env.get("TOMBOLA_TOKEN", ""),
            control_public=flag(env, "TOMBOLA_CONTROL_PUBLIC", _loopback(host)),
            max_body=whole(env, "TOMBOLA_MAX_BODY", 64 * 1024, low=1, expected="a positive number of bytes"),
            start_timeout=number(
                env, "TOMBOLA_START_TIMEOUT", 20.0, above_low=True, high=3600,
                expected="a number of seconds between 0 and 3600",
            ),
            play_rate=number(
                env, "TOMBOLA_PLAY_RATE", 5.0, high=1_000_000,
                expected="a number of requests a second from 0 (no limit) to 1000000",
            ),
            play_burst=whole(env, "TOMBOLA_PLAY_BURST", 20, low=1, high=1_000_000, expected="a whole number from 1 to 1000000"),
            trusted_proxies=_networks(env, "TOMBOLA_TRUSTED_PROXIES"),
        )

    @property
    def public_url(self) -> str:
        """The address users open in a browser."""
        return f"http://{_reachable(self.host)}:{self.port}/"

    @property
    def internal_url(self) -> str:
        """The base address replicas use to reach the internal listener."""
        return f"http://{_reachable(self.internal_host)}:{self.internal_port}"


def _loopback(host: str) -> bool:
    """True when ``host`` is a loopback address or name: only this machine reaches the listener."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reachable(host: str) -> str:
    """A host to connect to for a listener bound on ``host`` (wildcards mean this machine)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
