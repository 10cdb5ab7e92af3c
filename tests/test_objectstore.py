"""One behaviour suite for the three object stores: local files, Swift (tempauth) and S3 (Swift's s3api).

The Swift and S3 cases run against the real Swift all-in-one of the
``swift_server`` fixture; none of the backends is mocked.
"""

from __future__ import annotations

import datetime
import hashlib
import multiprocessing
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import swiftclient

from runner.errors import BackendUnavailable
from runner.objectstore import ObjectStore, open_store
from runner.objectstore.local import LocalStore
from runner.objectstore.s3 import S3Store
from runner.objectstore.swift import ConnectionPool, SwiftStore, connect
from runner.settings import Settings, SettingsError
from tests.support import free_port, make_settings

if TYPE_CHECKING:
    from tests.swift_server import SwiftServer

KINDS = ["local", "swift", "s3"]
BAD_KEYS = [
    "",
    ".",
    "..",
    "../x.jpg",
    "a/../b",
    "a/./b",
    "a..b",
    "/abs.jpg",
    "a//b",
    "trailing/",
    "with space.jpg",
    "tab\t.jpg",
    "line\n",
    "é.jpg",
    "star*.jpg",
    "back\\slash",
    "x" * 129,
]


def _settings(request: pytest.FixtureRequest, tmp_path: Path, kind: str, **env: str) -> Settings:
    """Settings for a store of ``kind`` in a container of its own (``env`` overrides)."""
    values = {"TOMBOLA_CONTAINER": f"test-{uuid.uuid4().hex[:12]}"}
    if kind != "local":
        server: SwiftServer = request.getfixturevalue("swift_server")
        values.update(server.settings_env(kind))
    return make_settings(tmp_path, **{**values, **env})


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> ObjectStore:
    store = open_store(_settings(request, tmp_path, kind))
    store.ensure_container()
    return store


def test_open_store_follows_settings(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    assert isinstance(open_store(_settings(request, tmp_path, "local")), LocalStore)
    swift_env = {"TOMBOLA_STORE": "swift", "TOMBOLA_SWIFT_AUTH_URL": "http://127.0.0.1:1/auth/v1.0"}
    assert isinstance(open_store(_settings(request, tmp_path, "local", **swift_env)), SwiftStore)
    s3_env = {"TOMBOLA_STORE": "s3", "TOMBOLA_S3_ENDPOINT_URL": "http://127.0.0.1:1"}
    assert isinstance(open_store(_settings(request, tmp_path, "local", **s3_env)), S3Store)


@pytest.mark.parametrize("container", ["ab", "Upper", "-dash", "dots..twice", "a/b", "x" * 64, "../up"])
def test_bad_container_names_are_refused(request: pytest.FixtureRequest, tmp_path: Path, container: str) -> None:
    for kind in ("local", "swift", "s3"):
        env = {"TOMBOLA_STORE": kind, "TOMBOLA_CONTAINER": container}
        with pytest.raises(SettingsError, match="TOMBOLA_CONTAINER"):
            open_store(_settings(request, tmp_path, "local", **env))


def test_round_trip_keeps_data_content_type_and_etag(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    before = datetime.datetime.now(datetime.UTC)
    store.put("42.jpg", data, "image/jpeg")
    stored = store.get("42.jpg")
    assert stored is not None
    assert stored.data == data
    assert stored.content_type == "image/jpeg"
    assert stored.etag == hashlib.md5(data).hexdigest()
    assert stored.last_modified.utcoffset() == datetime.timedelta(0)
    assert abs(stored.last_modified - before) < datetime.timedelta(seconds=10)


def test_empty_object(store: ObjectStore) -> None:
    store.put("empty.bin", b"", "application/octet-stream")
    stored = store.get("empty.bin")
    assert stored is not None and stored.data == b"" and stored.etag == hashlib.md5(b"").hexdigest()


def test_key_with_prefix(store: ObjectStore) -> None:
    store.put("functions/p/1.0.zip", b"zip", "application/zip")
    store.put("functions/p", b"other", "text/plain")
    stored = store.get("functions/p/1.0.zip")
    assert stored is not None and stored.data == b"zip"
    assert store.get("functions/p/2.0.zip") is None


def test_absent_is_none(store: ObjectStore) -> None:
    assert store.get("7.jpg") is None
    assert store.head("7.jpg") is None


def test_absent_container_is_none_too(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    store = open_store(_settings(request, tmp_path, kind))
    assert store.get("7.jpg") is None
    assert store.head("7.jpg") is None
    store.delete("7.jpg")


def test_overwrite_replaces_data_and_etag(store: ObjectStore) -> None:
    store.put("8.jpg", b"first", "image/jpeg")
    store.put("8.jpg", b"second", "image/png")
    stored = store.get("8.jpg")
    assert stored is not None
    assert (stored.data, stored.content_type) == (b"second", "image/png")
    assert stored.etag == hashlib.md5(b"second").hexdigest()


def test_head_matches_get_without_data(store: ObjectStore) -> None:
    store.put("9.jpg", b"picture", "image/jpeg")
    info, stored = store.head("9.jpg"), store.get("9.jpg")
    assert info is not None and stored is not None
    assert (info.content_type, info.etag, info.last_modified, info.size) == (
        stored.content_type,
        stored.etag,
        stored.last_modified,
        len(b"picture"),
    )


def test_delete_removes_and_tolerates_absence(store: ObjectStore) -> None:
    store.put("10.jpg", b"x", "image/jpeg")
    store.delete("10.jpg")
    assert store.get("10.jpg") is None
    store.delete("10.jpg")


def test_ensure_container_is_idempotent(store: ObjectStore) -> None:
    store.put("11.jpg", b"kept", "image/jpeg")
    store.ensure_container()
    store.ensure_container()
    stored = store.get("11.jpg")
    assert stored is not None and stored.data == b"kept"


def test_put_creates_a_missing_container(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    store = open_store(_settings(request, tmp_path, kind))
    store.put("12.jpg", b"new", "image/jpeg")
    stored = store.get("12.jpg")
    assert stored is not None and stored.data == b"new"


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        store.put(key, b"x", "image/jpeg")
    for method in (store.get, store.head, store.delete):
        with pytest.raises(ValueError, match="invalid object key"):
            method(key)


@pytest.mark.parametrize("kind", ["swift", "s3"])
def test_unreachable_server_is_unavailable(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {"TOMBOLA_SWIFT_AUTH_URL": f"{url}/auth/v1.0", "TOMBOLA_S3_ENDPOINT_URL": url}
    store = open_store(_settings(request, tmp_path, kind, **env))
    for call in (store.ensure_container, lambda: store.get("1.jpg"), lambda: store.head("1.jpg")):
        with pytest.raises(BackendUnavailable, match="object store unavailable"):
            call()
    with pytest.raises(BackendUnavailable):
        store.put("1.jpg", b"x", "image/jpeg")
    with pytest.raises(BackendUnavailable):
        store.delete("1.jpg")


@pytest.mark.parametrize("kind", ["swift", "s3"])
def test_wrong_credentials_are_unavailable(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    env = {"TOMBOLA_SWIFT_KEY": "wrong", "TOMBOLA_S3_SECRET_KEY": "wrong"}
    store = open_store(_settings(request, tmp_path, kind, **env))
    with pytest.raises(BackendUnavailable):
        store.get("1.jpg")


def test_unusable_local_folder_is_unavailable(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    store = open_store(_settings(request, tmp_path, "local", TOMBOLA_STORE_PATH=str(blocker)))
    for call in (store.ensure_container, lambda: store.get("1.jpg"), lambda: store.head("1.jpg")):
        with pytest.raises(BackendUnavailable, match="object store unavailable"):
            call()
    with pytest.raises(BackendUnavailable):
        store.put("1.jpg", b"x", "image/jpeg")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["swift", "s3"])
def test_paused_server_is_unavailable_then_back(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, swift_server: SwiftServer
) -> None:
    store = open_store(_settings(request, tmp_path, kind))
    store.put("13.jpg", b"survives", "image/jpeg")
    swift_server.pause()
    try:
        with pytest.raises(BackendUnavailable):
            store.get("13.jpg")
        with pytest.raises(BackendUnavailable):
            store.put("14.jpg", b"x", "image/jpeg")
    finally:
        swift_server.resume()
    stored = store.get("13.jpg")
    assert stored is not None and stored.data == b"survives"


def test_swift_v3_connection_options(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = {
        "TOMBOLA_STORE": "swift",
        "TOMBOLA_SWIFT_AUTH_URL": "https://keystone.example/v3",
        "TOMBOLA_SWIFT_AUTH_VERSION": "3",
        "TOMBOLA_SWIFT_USER": "tombola",
        "TOMBOLA_SWIFT_KEY": "secret",
        "TOMBOLA_SWIFT_PROJECT": "shop",
        "TOMBOLA_SWIFT_USER_DOMAIN": "users",
        "TOMBOLA_SWIFT_PROJECT_DOMAIN": "projects",
        "TOMBOLA_SWIFT_REGION": "RegionOne",
    }
    connection = connect(_settings(request, tmp_path, "local", **env))
    assert (connection.authurl, connection.user, connection.key) == ("https://keystone.example/v3", "tombola", "secret")
    assert connection.auth_version == "3"
    assert connection.os_options == {
        "project_name": "shop",
        "user_domain_name": "users",
        "project_domain_name": "projects",
        "region_name": "RegionOne",
    }
    assert (connection.timeout, connection.retries) == (5.0, 1)


def test_swift_v3_unreachable_keystone_is_unavailable(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = {
        "TOMBOLA_STORE": "swift",
        "TOMBOLA_SWIFT_AUTH_URL": f"http://127.0.0.1:{free_port()}/v3",
        "TOMBOLA_SWIFT_AUTH_VERSION": "3",
        "TOMBOLA_SWIFT_USER": "tombola",
        "TOMBOLA_SWIFT_KEY": "secret",
        "TOMBOLA_SWIFT_PROJECT": "shop",
    }
    store = open_store(_settings(request, tmp_path, "local", **env))
    with pytest.raises(BackendUnavailable):
        store.get("1.jpg")


def test_swift_v1_connection_options(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    connection = connect(_settings(request, tmp_path, "swift"))
    assert connection.auth_version == "1"
    assert connection.os_options == {}
    assert connection.user == "test:tester"


def test_swift_pool_lends_each_connection_to_one_caller(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    made: list[swiftclient.Connection] = []

    def make() -> swiftclient.Connection:
        made.append(connect(_settings(request, tmp_path, "swift")))
        return made[-1]

    pool = ConnectionPool(make, size=2, wait=0.1)
    with pool.connection() as first, pool.connection() as second:
        assert first is not second
        with pytest.raises(BackendUnavailable, match="no free connection"), pool.connection():
            pass
    with pool.connection() as again:
        assert again is first  # returned last (the with statement exits inner first), so still warm
    assert len(made) == 2


def test_swift_store_serves_concurrent_callers(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = open_store(_settings(request, tmp_path, "swift"))
    store.put("15.jpg", b"shared", "image/jpeg")
    failures: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(5):
                stored = store.get("15.jpg")
                assert stored is not None and stored.data == b"shared"
        except BaseException as error:  # reported below, from the test's thread
            failures.append(error)

    threads = [threading.Thread(target=read) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []


def _write_many(root: str, container: str, payload: bytes, rounds: int) -> None:
    store = LocalStore(Path(root), container)
    for _ in range(rounds):
        store.put("race.jpg", payload, f"image/x-{payload[:1].decode()}")


def test_local_store_is_consistent_across_processes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, "race-test")
    store.put("race.jpg", b"a" * 50_000, "image/x-a")
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_many, args=(str(tmp_path), "race-test", letter * 50_000, 200))
        for letter in (b"a", b"b", b"c")
    ]
    for writer in writers:
        writer.start()
    reads = 0
    while any(writer.is_alive() for writer in writers) or reads < 50:
        stored = store.get("race.jpg")
        assert stored is not None
        letter = stored.data[:1].decode()
        assert stored.data == letter.encode() * 50_000
        assert stored.content_type == f"image/x-{letter}"
        assert stored.etag == hashlib.md5(stored.data).hexdigest()
        reads += 1
    for writer in writers:
        writer.join(timeout=30)
        assert writer.exitcode == 0
    assert [path.name for path in (tmp_path / "race-test").iterdir()] == ["race.jpg"]
