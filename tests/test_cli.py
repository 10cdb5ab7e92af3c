"""The ``tombola`` operator commands against a real pack: deploy, ls, invoke, logs, canary, rollback, scale, errors.

The commands run in this process (``gateway.cli.main``) for speed, except one
that runs the installed entry point; the pack is ``tombola up`` on its own
home, ports and token, so that its deploys leave the other tests alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.pack import Pack
from tests.support import FUNCTIONS, Tombola, free_port, tombola_against




@pytest.fixture(scope="module")
def cli_pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    pack = Pack(tmp_path_factory.mktemp("cli_pack"), {"TOMBOLA_W_TEMPO": "1"}).start()
    yield pack
    assert pack.stop() == 0, pack.log()


@pytest.fixture
def tombola(cli_pack: Pack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Tombola:
    """Run ``tombola ARGS`` against the pack; its exit status, stdout and stderr."""
    return tombola_against(cli_pack.url, cli_pack.env["TOMBOLA_TOKEN"], monkeypatch, capsys)


def edition(tmp_path: Path, number: int) -> Path:
    """A copy of S whose answers say which edition of it runs."""
    folder = tmp_path / f"s-{number}"
    shutil.copytree(FUNCTIONS / "s", folder, ignore=shutil.ignore_patterns("__pycache__"))
    handler = folder / "handler.py"
    source = handler.read_text()
    assert source.count('"price": None}') == 2
    handler.write_text(source.replace('"price": None}', f'"price": None, "edition": {number}}}'))
    return folder


def row(listing: str, function: str) -> list[str]:
    return next(line.split() for line in listing.splitlines() if line.split()[0] == function)


def test_an_operator_session(tombola: Tombola, cli_pack: Pack, tmp_path: Path) -> None:
    listed = tombola("ls")
    assert listed.code == 0
    assert listed.out.splitlines()[0].split() == ["FUNCTION", "TRIGGER", "PUBLIC", "LIVE", "HEALTHY", "MIN", "MAX", "VERSIONS"]
    assert row(listed.out, "s") == ["s", "http", "/srvs", "1", "1/1", "1", "4", "1"]
    assert row(listed.out, "w1")[:3] == ["w1", "queue", "-"]

    # Deploy a changed copy: progress while it works, then one summary line; the new version serves.
    second = edition(tmp_path, 2)
    deployed = tombola("deploy", "s", "--dir", str(second), "--description", "edition 2")
    assert deployed.code == 0, deployed.err
    progress = deployed.err.splitlines()
    assert progress[0] == f"- packaging {tmp_path / 's-2'}" and progress[2] == "- version 2 stored"
    assert any("healthy" in line for line in progress) and any("drain" in line for line in progress)
    assert deployed.out == "s: live -> version 2 (was 1); replicas: 1 healthy\n"
    assert requests.get(f"{cli_pack.url}/srvs/user/5", timeout=5).json()["edition"] == 2

    again = tombola("deploy", "s", "--dir", str(second))
    assert again.code == 0 and "- same package as version 2" in again.err
    assert again.out.startswith("s: live already on version 2")

    invoked = tombola("invoke", "s", "--path", "/user/5")
    assert invoked.code == 0, invoked.err
    assert json.loads(invoked.out) == {"id": 5, "status": "not_played", "played_at": None, "price": None, "edition": 2}
    execution_id = re.search(r"execution ([0-9a-f]{32}) succeeded: HTTP 200 in \d+ ms on version 2", invoked.err).group(1)

    logs = tombola("logs", "s", "--lines", "30")
    assert logs.code == 0 and all(line.startswith("[s-v") for line in logs.out.splitlines())
    assert execution_id in logs.out

    # A canary at 50 %, undone by a rollback, then live back to the folder's version.
    canary = tombola("deploy", "s", "--dir", str(edition(tmp_path, 3)), "--weight", "50")
    assert canary.code == 0, canary.err
    assert canary.out.startswith("s: live -> version 2 + 50% on 3 (was 2)")
    assert row(tombola("ls").out, "s")[3:8] == ["2", "+", "50%", "on", "3"]
    editions = {requests.get(f"{cli_pack.url}/srvs/user/5", timeout=5).json()["edition"] for _ in range(40)}
    assert editions == {2, 3}

    rolled = tombola("rollback", "s")
    assert rolled.code == 0 and rolled.out.startswith("s: live -> version 2 (was 2 + 50% on 3)")
    rolled = tombola("rollback", "s")
    assert rolled.code == 0 and rolled.out.startswith("s: live -> version 1 (was 2)")
    assert "edition" not in requests.get(f"{cli_pack.url}/srvs/user/5", timeout=5).json()
    assert row(tombola("ls").out, "s")[3:] == ["1", "1/1", "1", "4", "3"]

    # Scale W out and back.
    scaled = tombola("scale", "w", "3")
    assert scaled.code == 0 and scaled.out == "w: 3 replica(s), 3 healthy (autoscaling between 1 and 8)\n"
    assert row(tombola("ls").out, "w")[4] == "3/3"
    assert tombola("scale", "w", "1").out == "w: 1 replica(s), 1 healthy (autoscaling between 1 and 8)\n"

    # An execution in the background, then its result.
    started = tombola("invoke", "w", "--path", "/play/11", "--async")
    assert started.code == 0 and re.fullmatch(r"[0-9a-f]{32}\n", started.out)
    background = started.out.strip()
    shown = tombola("execution", background, "--wait")
    assert shown.code == 0 and json.loads(shown.out)["price"]
    assert f"execution {background} succeeded: HTTP 200" in shown.err
    table = tombola("executions", "--function", "w")
    assert table.code == 0 and row(table.out, background)[1:4] == ["w", "1", "succeeded"]


def test_a_broken_version_fails_the_deploy_and_live_keeps_serving(tombola: Tombola, cli_pack: Pack, tmp_path: Path) -> None:
    broken = edition(tmp_path, 9)
    (broken / "handler.py").write_text("raise RuntimeError('this edition cannot start')\n")
    failed = tombola("deploy", "s", "--dir", str(broken))
    assert failed.code == 1
    expected = r"tombola: The new version of s failed its health check: .*; live stays on version \d+ .*\(HTTP 422\)"
    assert re.search(expected, failed.err)
    assert requests.get(f"{cli_pack.url}/srvs/user/5", timeout=5).status_code == 200


def test_errors_are_one_readable_line(tombola: Tombola, cli_pack: Pack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(expected: str, *argv: str) -> None:
        result = tombola(*argv)
        assert result.code != 0, argv
        assert re.search(expected, result.err.splitlines()[-1]), result.err

    fails(r"^tombola: No function is named 'nope' \(HTTP 404\)$", "invoke", "nope")
    fails(r"^tombola: replicas must lie between min \(1\) and max \(8\), not 9 \(HTTP 400\)$", "scale", "w", "9")
    fails(r"^tombola: Function i has no earlier live version to roll back to \(HTTP 409\)$", "rollback", "i")
    fails(r"^tombola: --data must be JSON", "invoke", "i", "--data", "{nope")
    fails(r"^tombola: execution [0-9a-f]{32} failed: HTTP 404", "invoke", "i", "--path", "/user/999999")
    fails(r"^tombola: cannot package .*names the function 's', not 'i'", "deploy", "i", "--dir", str(FUNCTIONS / "s"))
    fails(r"^tombola: cannot package functions/zz: .* \(--dir names the function's folder\)$", "deploy", "zz")
    fails(r"^tombola: give a number of replicas, --min or --max$", "scale", "w")

    monkeypatch.setenv("TOMBOLA_TOKEN", "not-the-token")
    fails(rf"^tombola: the gateway at {cli_pack.url} refused the token from TOMBOLA_TOKEN \(HTTP 401\)$", "ls")

    # Without TOMBOLA_TOKEN, the token file under TOMBOLA_HOME.
    monkeypatch.delenv("TOMBOLA_TOKEN")
    monkeypatch.setenv("TOMBOLA_HOME", str(tmp_path))
    fails(rf"^tombola: no control-plane token: set TOMBOLA_TOKEN, or start the pack \(tombola up writes {tmp_path}/token\)", "ls")
    (tmp_path / "token").write_text(cli_pack.env["TOMBOLA_TOKEN"] + "\n")
    assert tombola("ls").code == 0

    monkeypatch.setenv("TOMBOLA_URL", f"http://127.0.0.1:{free_port()}")
    fails(r"^tombola: cannot reach the gateway at http://127\.0\.0\.1:\d+: is the pack running \(tombola up\)\?", "ls")


def test_the_installed_command(cli_pack: Pack) -> None:
    command = str(Path(sys.executable).with_name("tombola"))
    env = {**os.environ, "TOMBOLA_URL": cli_pack.internal_url, "TOMBOLA_TOKEN": cli_pack.env["TOMBOLA_TOKEN"]}
    invoked = subprocess.run([command, "invoke", "i", "--path", "/user/3"], env=env, capture_output=True, text=True, timeout=60)
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout)["id"] == 3
    refused = subprocess.run(
        [command, "ls"], env={**env, "TOMBOLA_TOKEN": "wrong"}, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == f"tombola: the gateway at {cli_pack.internal_url} refused the token from TOMBOLA_TOKEN (HTTP 401)\n"
