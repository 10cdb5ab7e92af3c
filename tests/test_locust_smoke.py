"""The Locust scenarios run against the pack and record their custom metrics."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadtests" / "locustfile.py"

pytestmark = pytest.mark.slow


def test_player_browser_and_slow_worker_scenarios(pack, tmp_path):
    prefix = tmp_path / "smoke"
    command = [
        str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless",
        "--host", pack.url, "-u", "6", "-r", "6", "-t", "10s", "--stop-timeout", "10",
        "--first-id", "5001", "--csv", str(prefix), "--only-summary",
        "Player", "Browser", "SlowWorker",
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert finished.returncode == 0, finished.stderr[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as file:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(file)}
    assert int(rows[("METRIC", "play completed")]["Request Count"]) >= 2
    assert int(rows[("METRIC", "time to prize")]["Request Count"]) >= 1
    assert int(rows[("GET", "/srvi/user/[id]")]["Request Count"]) > 10
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0
