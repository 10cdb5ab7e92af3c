"""Typed values read from the environment: a number, a whole number or a flag, within bounds.

Each reader takes the mapping, the variable's name and its default (used when the
variable is unset or empty), and refuses anything else with a ``SettingsError``
that names the variable, the value expected and the value found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """A variable of the environment holds a value the pack cannot use."""


def number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    expected: str,
    low: float = 0.0,
    high: float = math.inf,
    above_low: bool = False,
) -> float:
    """A finite number from ``low`` (excluded when ``above_low``) to ``high``; ``expected`` says so in words."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    in_range = (low < value if above_low else low <= value) and value <= high
    if not (math.isfinite(value) and in_range):
        raise SettingsError(f"{name} must be {expected}, not {raw!r}")
    return value


def whole(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    expected: str,
    low: int = 0,
    high: int | None = None,
) -> int:
    """A whole number from ``low`` to ``high`` (no bound when None); ``expected`` says so in words."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {expected}, not {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise SettingsError(f"{name} must be {expected}, not {raw!r}")
    return value


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """True or false, spelt 1/0, true/false, yes/no or on/off."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in TRUE | FALSE:
        raise SettingsError(f"{name} must be true or false, not {raw!r}")
    return raw in TRUE
