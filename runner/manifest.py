"""A function's manifest: its trigger, limits, scaling and the settings it reads.

Each function folder holds ``manifest.toml`` beside ``handler.py``::

    name = "i"
    description = "Identification: looks a customer up"

    [trigger]
    type = "http"              # "http" or "queue"
    public_prefix = "/srvi"    # http: the gateway's public path prefix; omit to keep it private
    queue = "w1"               # queue: the queue it consumes
    path = "/messages"         # queue: the route each message is delivered to

    [limits]
    timeout = 5.0              # seconds for one execution
    memory_mb = 256            # address-space limit of a replica
    concurrency = 200          # executions at once in a replica; more get 503

    [scaling]
    min = 1
    max = 4
    target = 50                # in-flight executions per replica the autoscaler aims at

    [settings]
    reads = ["TOMBOLA_DATABASE_URL"]
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
PREFIX_PATTERN = re.compile(r"/[a-z0-9_-]{1,32}")
PATH_PATTERN = re.compile(r"/[a-z0-9_/-]{0,64}")


class ManifestError(ValueError):
    """A manifest that cannot be used, with a message that says why."""


@dataclasses.dataclass(frozen=True)
class Trigger:
    type: str
    public_prefix: str | None = None
    queue: str | None = None
    path: str | None = None


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout: float = 10.0
    memory_mb: int = 512
    concurrency: int = 100


@dataclasses.dataclass(frozen=True)
class Scaling:
    min: int = 1
    max: int = 4
    target: int = 50


@dataclasses.dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    trigger: Trigger
    limits: Limits
    scaling: Scaling
    reads: tuple[str, ...]

    @property
    def is_http(self) -> bool:
        return self.trigger.type == "http"

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain data (what the control plane stores and shows)."""
        return dataclasses.asdict(self)


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ManifestError(f"[{key}] must be a table")
    return value


def _number(table: dict[str, Any], key: str, default: float, kind: type, low: float, high: float) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ManifestError(f"{key} must be a {'whole number' if kind is int else 'number'}")
    if not low <= value <= high:
        raise ManifestError(f"{key} must lie between {low} and {high}")
    return kind(value)


def _string(table: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ManifestError(f"{key} must match {pattern.pattern}")
    return value


def parse(data: dict[str, Any]) -> Manifest:
    """Validate manifest data; raise ManifestError naming the first problem."""
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ManifestError(f"name must match {NAME_PATTERN.pattern}")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 200:
        raise ManifestError("description must be text of at most 200 characters")

    trigger_table = _table(data, "trigger")
    kind = trigger_table.get("type")
    if kind not in ("http", "queue"):
        raise ManifestError("trigger.type must be http or queue")
    trigger = Trigger(
        type=kind,
        public_prefix=_string(trigger_table, "public_prefix", PREFIX_PATTERN),
        queue=_string(trigger_table, "queue", NAME_PATTERN),
        path=_string(trigger_table, "path", PATH_PATTERN),
    )
    if kind == "queue" and (trigger.queue is None or trigger.path is None):
        raise ManifestError("a queue trigger needs queue and path")
    if kind == "queue" and trigger.public_prefix is not None:
        raise ManifestError("a queue function cannot have a public_prefix")

    limits_table = _table(data, "limits")
    limits = Limits(
        timeout=_number(limits_table, "timeout", Limits.timeout, float, 0.1, 600),
        memory_mb=_number(limits_table, "memory_mb", Limits.memory_mb, int, 64, 65536),
        concurrency=_number(limits_table, "concurrency", Limits.concurrency, int, 1, 10000),
    )
    scaling_table = _table(data, "scaling")
    scaling = Scaling(
        min=_number(scaling_table, "min", Scaling.min, int, 0, 64),
        max=_number(scaling_table, "max", Scaling.max, int, 1, 64),
        target=_number(scaling_table, "target", Scaling.target, int, 1, 10000),
    )
    if scaling.min > scaling.max:
        raise ManifestError("scaling.min must not exceed scaling.max")

    reads = _table(data, "settings").get("reads", [])
    if not isinstance(reads, list) or not all(isinstance(r, str) and r.startswith("TOMBOLA_") for r in reads):
        raise ManifestError("settings.reads must be a list of TOMBOLA_* variable names")
    return Manifest(name, description, trigger, limits, scaling, tuple(reads))


def loads(text: str) -> Manifest:
    """Parse a manifest from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"manifest.toml is not valid TOML: {error}") from None
    except RecursionError:
        raise ManifestError("manifest.toml is nested too deeply") from None
    return parse(data)


def load(function_dir: Path) -> Manifest:
    """Read ``manifest.toml`` from a function folder."""
    path = function_dir / "manifest.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{function_dir.name} has no manifest.toml") from None
    except UnicodeDecodeError:
        raise ManifestError("manifest.toml must be UTF-8 text") from None
    return loads(text)
