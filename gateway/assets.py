"""The static page: files directly in gateway/static, nothing else, revalidated by ETag."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import falcon
import falcon.asgi

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}


@dataclasses.dataclass(frozen=True)
class Asset:
    """A file's content as last read, with what identifies that version."""

    mtime_ns: int
    size: int
    data: bytes
    etag: str


class StaticFiles:
    """``GET /`` (index.html) and ``GET /static/{name}``: only plain files of known types in one folder."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.directory = directory.resolve()
        self._cache: dict[str, Asset] = {}

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        self._serve(req, resp, name)

    async def on_get_index(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self._serve(req, resp, "index.html")

    on_head = on_get
    on_head_index = on_get_index

    def _serve(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        asset = self._asset(name)
        resp.etag = asset.etag
        resp.cache_control = ["no-cache"]
        if _matches(req.get_header("If-None-Match"), asset.etag):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = CONTENT_TYPES[Path(name).suffix.lower()]
        resp.data = asset.data

    def _asset(self, name: str) -> Asset:
        not_found = falcon.HTTPNotFound(title="Not found", description="There is no such static file.")
        if name.startswith(".") or "\0" in name:  # a NUL is no file name: the OS would refuse it
            raise not_found
        path = (self.directory / name).resolve()
        if path.parent != self.directory or path.suffix.lower() not in CONTENT_TYPES:
            raise not_found
        try:
            stat = path.stat()
            cached = self._cache.get(name)
            if cached is not None and (cached.mtime_ns, cached.size) == (stat.st_mtime_ns, stat.st_size):
                return cached
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise not_found from None
        asset = Asset(stat.st_mtime_ns, stat.st_size, data, hashlib.sha256(data).hexdigest()[:20])
        self._cache[name] = asset
        return asset


def _matches(header: str | None, etag: str) -> bool:
    """True when an If-None-Match header names ``etag`` (weak or strong) or ``*``."""
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
    return "*" in tags or etag in tags
