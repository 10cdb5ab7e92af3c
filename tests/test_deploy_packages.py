"""Function packages, versions and aliases on their own: zips, checks, numbering, history, weighted balancing."""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway import packages
from gateway.balancer import Balancer
from gateway.control import _split
from gateway.packages import PackageError
from gateway.registry import Registry, Replica
from gateway.versions import LIVE, Alias, Repository, metadata, package_key
from runner import manifest
from runner.database import create_engine
from runner.objectstore.local import LocalStore

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
MANIFEST = 'name = "f"\n[trigger]\ntype = "http"\npublic_prefix = "/srvf"\n'
HANDLER = "def routes(ctx):\n    return {}\n"


def write_folder(folder: Path, handler: str = HANDLER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.toml").write_text(MANIFEST)
    (folder / "handler.py").write_text(handler)
    return folder


def archive(entries: Mapping[str, bytes | str], modes: Mapping[str, int] | None = None) -> bytes:
    """A zip holding ``entries`` exactly as named (no sanitising), with optional Unix modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (modes or {}).get(name, stat.S_IFREG | 0o644) << 16
            zipped.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


GOOD = {"manifest.toml": MANIFEST, "handler.py": HANDLER}


class TestBuild:
    def test_same_folder_same_bytes_whatever_the_clock_and_caches(self, tmp_path: Path) -> None:
        first = write_folder(tmp_path / "a")
        (first / "lib").mkdir()
        (first / "lib" / "util.py").write_text("X = 1\n")
        data = packages.build(first)
        second = tmp_path / "b"
        shutil.copytree(first, second)
        (second / "__pycache__").mkdir()
        (second / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
        (second / "lib" / "util.pyc").write_bytes(b"\0")
        (second / ".env").write_text("SECRET=1\n")
        (second / ".git").mkdir()
        (second / ".git" / "HEAD").write_text("ref\n")
        (second / "handler.py").touch()
        assert packages.build(second) == data
        with zipfile.ZipFile(io.BytesIO(data)) as zipped:
            assert zipped.namelist() == ["handler.py", "lib/util.py", "manifest.toml"]
            assert {info.date_time for info in zipped.infolist()} == {packages.TIMESTAMP}
        (second / "handler.py").write_text(HANDLER + "# changed\n")
        assert packages.build(second) != data

    def test_links_are_refused(self, tmp_path: Path) -> None:
        folder = write_folder(tmp_path / "f")
        (folder / "passwd").symlink_to("/etc/passwd")
        with pytest.raises(PackageError, match="passwd: a function folder may not hold links"):
            packages.build(folder)

    def test_the_pack_functions_are_valid_packages(self) -> None:
        for folder in sorted(FUNCTIONS.iterdir()):
            package = packages.inspect(packages.build(folder), folder.name)
            assert package.manifest.name == folder.name and len(package.sha256) == 64


class TestInspect:
    def test_a_good_package(self) -> None:
        data = archive({**GOOD, "lib/": b"", "lib/util.py": "X = 1\n"})
        package = packages.inspect(data, "f")
        assert package.manifest.trigger.public_prefix == "/srvf"
        assert package.manifest_text == MANIFEST and package.size == len(data)

    @pytest.mark.parametrize(
        ("entries", "status", "reason"),
        [
            ({**GOOD, "/etc/cron.d/x": "x"}, 422, "absolute paths"),
            ({**GOOD, "../escape.py": "x"}, 422, r"'\.\.'"),
            ({**GOOD, "lib/../../escape.py": "x"}, 422, r"'\.\.'"),
            ({**GOOD, "C:/windows.py": "x"}, 422, "absolute paths"),
            ({**GOOD, "lib\\..\\x.py": "x"}, 422, "use / between"),
            ({"manifest.toml": MANIFEST}, 422, "no handler.py at its root"),
            ({"handler.py": HANDLER}, 422, "no manifest.toml at its root"),
            ({"f/manifest.toml": MANIFEST, "f/handler.py": HANDLER}, 422, "no manifest.toml at its root"),
            ({"manifest.toml": "name = [", "handler.py": HANDLER}, 422, "manifest.toml: .*not valid TOML"),
            ({"manifest.toml": 'name = "f"\n[trigger]\ntype = "ftp"\n', "handler.py": HANDLER}, 422, "trigger.type"),
            ({"manifest.toml": MANIFEST.replace('"f"', '"g"'), "handler.py": HANDLER}, 422, "names the function 'g', not 'f'"),
            ({"manifest.toml": b"\xff\xfe", "handler.py": HANDLER}, 422, "UTF-8"),
            ({"manifest.toml": '[trigger]\ntype = "http"\n', "handler.py": HANDLER}, 422, "manifest.toml: name must match"),
            ({"manifest.toml": 'name = 5\n[trigger]\ntype = "http"\n', "handler.py": HANDLER}, 422, "name must match"),
            ({"manifest.toml": 'name = "f"\ntrigger = "http"\n', "handler.py": HANDLER}, 422, r"\[trigger\] must be a table"),
            ({"manifest.toml": MANIFEST + '[limits]\ntimeout = "5"\n', "handler.py": HANDLER}, 422, "timeout must be a number"),
            ({"manifest.toml": 'name = "f"\nx = ' + "[" * 5000 + "]" * 5000, "handler.py": HANDLER}, 422, "nested too deeply"),
        ],
    )
    def test_bad_packages_say_why(self, entries: dict[str, bytes | str], status: int, reason: str) -> None:
        with pytest.raises(PackageError, match=reason) as caught:
            packages.inspect(archive(entries), "f")
        assert caught.value.status == status

    def test_links_and_special_files(self) -> None:
        link = archive({**GOOD, "evil": "/etc/passwd"}, {"evil": stat.S_IFLNK | 0o777})
        with pytest.raises(PackageError, match="links are not allowed"):
            packages.inspect(link, "f")
        fifo = archive({**GOOD, "pipe": ""}, {"pipe": stat.S_IFIFO | 0o644})
        with pytest.raises(PackageError, match="only regular files"):
            packages.inspect(fifo, "f")

    def test_not_a_zip_and_damaged_zips(self) -> None:
        for data in (b"", b"hello", b"PK\x03\x04" + b"\0" * 40):
            with pytest.raises(PackageError, match="not a valid zip") as caught:
                packages.inspect(data, "f")
            assert caught.value.status == 400
        good = bytearray(archive({**GOOD, "data.txt": "payload " * 100}))
        offset = good.index(b"data.txt") + len("data.txt") + 4  # inside the compressed data of data.txt
        good[offset] ^= 0xFF
        with pytest.raises(PackageError) as caught:
            packages.inspect(bytes(good), "f")
        assert caught.value.status in (400, 422)

    def test_limits(self) -> None:
        with pytest.raises(PackageError, match="larger than 10 MiB") as caught:
            packages.inspect(b"\0" * (packages.MAX_PACKAGE + 1), "f")
        assert caught.value.status == 413
        many = archive({**GOOD, **{f"m{n}.py": "" for n in range(packages.MAX_ENTRIES)}})
        with pytest.raises(PackageError, match="more than 200 entries") as caught:
            packages.inspect(many, "f")
        assert caught.value.status == 413
        bomb = archive({**GOOD, "zeros.bin": b"\0" * (packages.MAX_CONTENT + 1)})
        assert len(bomb) < 100_000  # small on the wire, 50 MiB once unpacked
        with pytest.raises(PackageError, match="unpacks to more than 50 MiB") as caught:
            packages.inspect(bomb, "f")
        assert caught.value.status == 413


def test_duplicate_entries_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("manifest.toml", MANIFEST)
        zipped.writestr("handler.py", HANDLER)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zipped.writestr("handler.py", "import os\n")
    with pytest.raises(PackageError, match="twice"):
        packages.inspect(buffer.getvalue(), "f")


class TestInstall:
    def test_installs_once_then_reuses(self, tmp_path: Path) -> None:
        package = packages.inspect(archive({**GOOD, "lib/util.py": "X = 1\n"}), "f")
        target = tmp_path / "functions" / "f" / "1"
        assert packages.install(package, target) == target
        assert (target / "lib" / "util.py").read_text() == "X = 1\n"
        assert stat.S_IMODE((target / "handler.py").stat().st_mode) == 0o644
        assert packages.installed(target, package.sha256)
        (target / "extra.py").write_text("")
        packages.install(package, target)
        assert (target / "extra.py").exists()  # same sha256: left as it is
        other = packages.inspect(archive(GOOD), "f")
        packages.install(other, target)
        assert not (target / "extra.py").exists() and not (target / "lib").exists()
        assert [path.name for path in target.parent.iterdir() if path.name.startswith(".")] == []


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    engine = create_engine(f"sqlite:///{tmp_path / 'control.db'}")
    metadata.create_all(engine)
    return Repository(engine, LocalStore(tmp_path / "objects", "tombola-prizes"))


def package_of(handler: str = HANDLER) -> packages.Package:
    return packages.inspect(archive({"manifest.toml": MANIFEST, "handler.py": handler}), "f")


class TestRepository:
    def test_versions_are_numbered_immutable_and_idempotent(self, repository: Repository) -> None:
        first, created = repository.add_version(package_of(), "first")
        assert (first.number, created) == (1, True)
        again, created = repository.add_version(package_of(), "same bytes again")
        assert (again, created) == (first, False)
        second, created = repository.add_version(package_of(HANDLER + "# 2\n"), "second")
        assert (second.number, created) == (2, True)
        third, _ = repository.add_version(package_of(), "the first bytes, later")
        assert third.number == 3 and third.sha256 == first.sha256  # only the latest counts for idempotence
        assert [version.number for version in repository.versions("f")] == [1, 2, 3]
        assert repository.version("f", 1) == first and repository.latest("f") == third
        stored = repository.store.get(package_key("f", 2))
        assert stored is not None and repository.package(second).sha256 == second.sha256
        assert first.as_dict()["manifest"]["trigger"]["public_prefix"] == "/srvf"
        record = repository.function("f")
        assert record is not None and record.description == ""

    def test_a_damaged_package_is_not_served(self, repository: Repository) -> None:
        version, _ = repository.add_version(package_of(), "")
        repository.store.put(version.key, b"not the package", "application/zip")
        with pytest.raises(Exception, match="does not match its sha256"):
            repository.package(version)
        repository.store.delete(version.key)
        with pytest.raises(Exception, match="is missing"):
            repository.package(version)

    def test_live_history_and_rollback(self, repository: Repository) -> None:
        for handler in ("", "# 2", "# 3"):
            repository.add_version(package_of(HANDLER + handler), "")
        assert repository.previous_live("f") is None
        repository.set_alias(Alias("f", LIVE, 1))
        repository.set_alias(Alias("f", LIVE, 2, 3, 10))
        repository.set_alias(Alias("f", "staging", 3))
        repository.set_alias(Alias("f", LIVE, 3))
        assert repository.previous_live("f") == Alias("f", LIVE, 2, 3, 10)
        back = repository.roll_back_live("f")
        assert back.traffic == {2: 90, 3: 10}
        assert repository.alias("f", LIVE).traffic == {2: 90, 3: 10}  # type: ignore[union-attr]
        assert repository.roll_back_live("f").traffic == {1: 100}
        assert repository.previous_live("f") is None
        repository.set_alias(Alias("f", LIVE, 3))
        assert repository.previous_live("f") == Alias("f", LIVE, 1)
        assert [alias.name for alias in repository.aliases("f")] == [LIVE, "staging"]

    def test_delete_forgets_everything(self, repository: Repository) -> None:
        version, _ = repository.add_version(package_of(), "")
        repository.set_alias(Alias("f", LIVE, 1))
        repository.set_scaling("f", 0, 3, 2)
        record = repository.function("f")
        assert record is not None and (record.scale_min, record.scale_max, record.scale_replicas) == (0, 3, 2)
        repository.delete_function("f")
        assert repository.function("f") is None and repository.versions("f") == [] and repository.aliases("f") == []
        assert repository.store.get(version.key) is None


def replica(n: int, version: int, **state: Any) -> Replica:
    return Replica(id=f"f-{n}", function="f", version=version, url=f"http://127.0.0.1:{9000 + n}", **state)


class TestWeightedBalancing:
    def registry(self, traffic: dict[int, int]) -> Registry:
        registry = Registry()
        registry.add_function(manifest.loads(MANIFEST))
        registry.set_traffic("f", traffic)
        return registry

    def test_a_90_10_canary_is_exact(self) -> None:
        balancer = Balancer(self.registry({1: 90, 2: 10}))
        replicas = [replica(1, 1), replica(2, 1), replica(3, 2)]
        chosen = [balancer.choose(replicas) for _ in range(1000)]
        assert Counter(r.version for r in chosen if r) == {1: 900, 2: 100}
        assert Counter(r.id for r in chosen if r.version == 1) == {"f-1": 450, "f-2": 450}  # type: ignore[union-attr]

    def test_versions_without_weight_or_replicas(self) -> None:
        registry = self.registry({1: 100})
        balancer = Balancer(registry)
        new = replica(2, 2)
        assert balancer.choose([new]) is None  # started, healthy, but no traffic yet
        old = replica(1, 1)
        assert balancer.choose([old, new]) is old
        registry.set_traffic("f", {1: 50, 2: 50})
        old.healthy = False
        assert [balancer.choose([old, new]) for _ in range(3)] == [new, new, new]  # the other version takes it all
        registry.set_traffic("f", {})
        assert balancer.choose([old, new]) is None
        assert Balancer().choose([new]) is new  # no registry: every version

    def test_replicas_are_split_by_weight(self) -> None:
        assert _split(1, {3: 100}) == {3: 1}
        assert _split(0, {3: 90, 4: 10}) == {3: 0, 4: 0}
        assert _split(1, {3: 90, 4: 10}) == {3: 1, 4: 1}
        assert _split(4, {3: 90, 4: 10}) == {3: 3, 4: 1}
        assert _split(10, {3: 50, 4: 50}) == {3: 5, 4: 5}
