"""Function P through its Falcon app, on the local store and on the real Swift server (Swift and S3 APIs)."""

from __future__ import annotations

import base64
import datetime
import io
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import falcon
import pytest
from PIL import Image

from runner.ids import parse_customer_id
from runner.objectstore import open_store
from runner.plays import picture_key
from runner.settings import Settings
from tests.support import free_port, function_client, make_settings

if TYPE_CHECKING:
    from tests.swift_server import SwiftServer

BAD_IDS = ["0", "-1", "01", "abc", "1.5", "1e3", "1234567890", "+7", "%201", "٣"]


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


JPEG = _jpeg()


class P:
    """A test client of P, and the store it reads."""

    def __init__(self, settings: Settings) -> None:
        self.client = function_client("p", settings)
        self.store = open_store(settings)

    def store_picture(self, customer_id: int) -> None:
        self.store.put(picture_key(customer_id), JPEG, "image/jpeg")


def _make_p(request: pytest.FixtureRequest, tmp_path: Path, kind: str, **env: str) -> P:
    values = {"TOMBOLA_CONTAINER": f"p-{uuid.uuid4().hex[:12]}"}
    if kind != "local":
        server: SwiftServer = request.getfixturevalue("swift_server")
        values.update(server.settings_env(kind))
    return P(make_settings(tmp_path, **{**values, **env}))


@pytest.fixture(params=["local", "swift", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def p(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> P:
    return _make_p(request, tmp_path, kind)


@pytest.fixture
def p_down(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> P:
    """P whose store cannot be reached: nothing listens on its port, or its folder is a file."""
    if kind == "local":
        blocker = tmp_path / "blocker"
        blocker.write_text("not a folder")
        return _make_p(request, tmp_path, kind, TOMBOLA_STORE_PATH=str(blocker))
    url = f"http://127.0.0.1:{free_port()}"
    return _make_p(request, tmp_path, kind, TOMBOLA_SWIFT_AUTH_URL=f"{url}/auth/v1.0", TOMBOLA_S3_ENDPOINT_URL=url)


def test_picture_ok(p: P) -> None:
    p.store_picture(42)
    result = p.client.simulate_get("/user/42")
    assert result.status_code == 200
    assert result.json["status"] == "ok"
    assert base64.b64decode(result.json["img"]) == JPEG
    assert result.json["url"] == "/srvp/user/42/image"
    assert result.headers["Cache-Control"] == "private, max-age=60"


def test_picture_ko_when_none_stored(p: P) -> None:
    result = p.client.simulate_get("/user/43")
    assert result.status_code == 200
    assert result.json == {"status": "ko"}
    assert result.headers["Cache-Control"] == "no-store"


def test_picture_storage_unavailable(p_down: P) -> None:
    result = p_down.client.simulate_get("/user/42")
    assert result.status_code == 503
    assert result.json == {"status": "storage_unavailable"}
    assert result.headers["Retry-After"] == "2"


def test_image_served_with_validators(p: P) -> None:
    p.store_picture(44)
    result = p.client.simulate_get("/user/44/image")
    assert result.status_code == 200
    assert result.content == JPEG
    assert result.headers["Content-Type"] == "image/jpeg"
    assert result.headers["Cache-Control"] == "private, max-age=60"
    etag = result.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 34
    modified = falcon.http_date_to_dt(result.headers["Last-Modified"])
    assert abs(modified - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(seconds=10)


@pytest.mark.parametrize("tag", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_image_not_modified(p: P, tag: str) -> None:
    p.store_picture(45)
    etag = p.client.simulate_get("/user/45/image").headers["ETag"]
    result = p.client.simulate_get("/user/45/image", headers={"If-None-Match": tag.format(etag=etag)})
    assert result.status_code == 304
    assert result.content == b""
    assert result.headers["ETag"] == etag
    assert result.headers["Cache-Control"] == "private, max-age=60"


def test_image_changed_etag_is_served_again(p: P) -> None:
    p.store_picture(46)
    result = p.client.simulate_get("/user/46/image", headers={"If-None-Match": '"0123456789abcdef0123456789abcdef"'})
    assert result.status_code == 200
    assert result.content == JPEG


def test_image_if_modified_since(p: P) -> None:
    p.store_picture(47)
    modified = p.client.simulate_get("/user/47/image").headers["Last-Modified"]
    assert p.client.simulate_get("/user/47/image", headers={"If-Modified-Since": modified}).status_code == 304
    earlier = falcon.dt_to_http(falcon.http_date_to_dt(modified) - datetime.timedelta(hours=1))
    result = p.client.simulate_get("/user/47/image", headers={"If-Modified-Since": earlier})
    assert result.status_code == 200
    assert result.content == JPEG


def test_image_ignores_a_malformed_if_modified_since(p: P) -> None:
    p.store_picture(49)
    result = p.client.simulate_get("/user/49/image", headers={"If-Modified-Since": "yesterday"})
    assert result.status_code == 200
    assert result.content == JPEG


def test_image_absent_is_404_json(p: P) -> None:
    result = p.client.simulate_get("/user/48/image")
    assert result.status_code == 404
    assert result.json["title"] == "No picture"
    conditional = p.client.simulate_get("/user/48/image", headers={"If-None-Match": "*"})
    assert conditional.status_code == 404


def test_image_storage_unavailable_is_503_json(p_down: P) -> None:
    for headers in ({}, {"If-None-Match": '"abc"'}):
        result = p_down.client.simulate_get("/user/42/image", headers=headers)
        assert result.status_code == 503
        assert result.json["title"] == "Object store unavailable"


@pytest.mark.parametrize("customer_id", BAD_IDS)
@pytest.mark.parametrize("path", ["/user/{}", "/user/{}/image"])
def test_bad_customer_id_is_400(request: pytest.FixtureRequest, tmp_path: Path, path: str, customer_id: str) -> None:
    p = _make_p(request, tmp_path, "local")
    result = p.client.simulate_get(path.format(customer_id))
    assert result.status_code == 400
    assert result.json["title"] == "Invalid customer id"


@pytest.mark.parametrize("raw, expected", [("1", 1), ("42", 42), ("999999999", 999_999_999)])
def test_parse_customer_id(raw: str, expected: int) -> None:
    assert parse_customer_id(raw) == expected


@pytest.mark.parametrize("raw", [*BAD_IDS, "", " 1", "1\n"])
def test_parse_customer_id_refuses(raw: str) -> None:
    with pytest.raises(falcon.HTTPBadRequest):
        parse_customer_id(raw)


def test_a_revalidated_picture_is_answered_from_its_kept_metadata(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A stored picture does not change: once P has seen its ETag, it answers 304 without asking the store."""
    p = _make_p(request, tmp_path, "local")
    p.store_picture(50)
    etag = p.client.simulate_get("/user/50/image").headers["ETag"]
    assert p.client.simulate_get("/user/50/image", headers={"If-None-Match": etag}).status_code == 304
    objects = tmp_path / "objects"
    objects.rename(tmp_path / "moved-away")  # the store no longer has the picture
    assert p.client.simulate_get("/user/50/image", headers={"If-None-Match": etag}).status_code == 304
    assert p.client.simulate_get("/user/50/image").status_code in (404, 503)  # the picture itself is read each time
