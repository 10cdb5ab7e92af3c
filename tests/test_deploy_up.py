"""``tombola up`` and the function folders: each folder is a version, a new one whenever its package changes."""

from __future__ import annotations

from pathlib import Path

import requests

from gateway import packages
from gateway.versions import LIVE, Repository
from runner.database import create_engine
from runner.objectstore.local import LocalStore
from tests.pack import Pack
from tests.test_deploy import write_who


def version_at(pack: Pack, prefix: str) -> str:
    answer = requests.get(f"{pack.url}{prefix}/x", timeout=5)
    assert answer.status_code == 200, answer.text
    version: str = answer.json()["version"]
    return version


def test_up_makes_a_new_live_version_of_a_changed_folder_only(tmp_path: Path) -> None:
    functions, home = tmp_path / "functions", tmp_path / "home"
    write_who(functions / "kept", "kept", "/srvk")
    changed = write_who(functions / "changed", "changed", "/srvc")
    env = {"TOMBOLA_FUNCTIONS_DIR": str(functions), "TOMBOLA_SEED_CUSTOMERS": "10"}

    first = Pack(home, env).start()
    try:
        assert (version_at(first, "/srvk"), version_at(first, "/srvc")) == ("1", "1")
    finally:
        assert first.stop() == 0, first.log()
    assert [path.name.startswith("kept-v1-") for path in (home / "logs" / "kept").iterdir()] == [True]
    assert (home / "functions" / "kept" / "1" / "handler.py").read_text() == (functions / "kept" / "handler.py").read_text()

    with open(changed / "handler.py", "a") as handler:
        handler.write("# changed\n")
    second = Pack(home, env).start()
    try:
        assert (version_at(second, "/srvk"), version_at(second, "/srvc")) == ("1", "2")
    finally:
        assert second.stop() == 0, second.log()

    engine = create_engine(f"sqlite:///{home / 'tombola.db'}")
    try:
        repository = Repository(engine, LocalStore(home / "objects", "tombola-prizes"))
        assert [version.number for version in repository.versions("kept")] == [1]
        assert [version.number for version in repository.versions("changed")] == [1, 2]
        assert repository.alias("changed", LIVE).version == 2  # type: ignore[union-attr]
        latest = repository.latest("changed")
        assert latest is not None and repository.package(latest).data == packages.build(changed)
    finally:
        engine.dispose()
