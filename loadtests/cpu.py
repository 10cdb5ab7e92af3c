"""CPU time of a whole process session, read from /proc (Linux).

``tombola up`` runs in its own session: the gateway, every replica and every
gunicorn worker share its session id. A session's CPU time is the sum over its
live processes of utime + stime (their own) + cutime + cstime (what their
reaped children used), so a replica that stopped during a phase still counts,
in its parent's cutime, once it was reaped.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class CpuSample:
    """The CPU seconds a session used so far, and how many processes it has now."""

    seconds: float
    processes: int


def _fields(stat: str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    return stat[stat.rindex(")") + 2:].split()


def sample(session: int) -> CpuSample:
    """User plus system CPU seconds of every process in ``session``, reaped children included."""
    ticks = processes = 0
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _fields((entry / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # the process ended while we looked
        # After the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
        if int(fields[3]) == session:
            ticks += sum(int(value) for value in fields[11:15])
            processes += 1
    return CpuSample(ticks / TICKS, processes)
