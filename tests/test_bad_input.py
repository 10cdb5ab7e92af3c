"""Bad input through a running pack: oversized heads, bodies and ids, path traversal, hostile function
packages and malformed manifests all get a clear JSON 4xx, never a 5xx, a file, or a write outside the pack.

Also: the public OpenAPI document (``GET /openapi.json``) names exactly the
routes the public listener serves (its own and the published functions').
"""

from __future__ import annotations

import io
import json
import re
import socket
import stat
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path

import falcon.inspect
import pytest
import requests

from gateway import packages, public_openapi
from gateway.app import create_public_app
from gateway.balancer import Balancer
from gateway.http_limits import MAX_HEAD, MAX_TARGET
from gateway.proxy import Proxy
from gateway.registry import Registry
from gateway.status import StatusReport
from runner.function import Function
from tests.pack import Pack
from tests.support import FUNCTIONS, function_app, make_settings

PUBLIC_FUNCTIONS = ("i", "s", "b", "p")
TEMPLATE = re.compile(r"\{[^}]*\}")
FILE_MARKERS = ("root:x:0:0", "import falcon", "[core]", "def routes", "-----BEGIN")


def assert_json_error(answer: requests.Response, *statuses: int) -> str:
    """Check a JSON error of one of ``statuses``; return its description."""
    assert answer.status_code in statuses, (answer.request.method, answer.url, answer.status_code, answer.text[:300])
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert set(body) == {"title", "description"} and body["title"] and body["description"], body
    description: str = body["description"]
    return description


def raw_exchange(port: int, request: bytes, shutdown: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` bytes as they are; read the answer until the server closes (or 10 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        if shutdown:
            connection.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
                if _complete(received):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {name.lower(): value for name, value in headers.items()}, body


def _complete(received: bytes) -> bool:
    head, found, body = received.partition(b"\r\n\r\n")
    if not found:
        return False
    length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
    return length is not None and len(body) >= int(length.group(1))


def both_ports(pack: Pack) -> tuple[int, int]:
    return pack.port, pack.internal_port


def control(pack: Pack) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {pack.env['TOMBOLA_TOKEN']}"
    return session


# The public document ---------------------------------------------------------------------------------------------


def _served_by_the_gateway() -> set[tuple[str, str]]:
    registry = Registry()
    proxy = Proxy(registry, Balancer(registry), None, 1024)  # type: ignore[arg-type]
    app = create_public_app(registry, proxy, status=StatusReport(registry, proxy.metrics, None))  # type: ignore[arg-type]
    return {
        (TEMPLATE.sub("{}", route.path), method.method.lower())
        for route in falcon.inspect.inspect_routes(app)
        for method in route.methods
        if not method.internal and method.method != "HEAD"  # HEAD mirrors GET on the page's files
    }


def _served_by_the_functions(tmp_path: Path) -> set[tuple[str, str]]:
    settings = make_settings(tmp_path)
    served = set()
    for name in PUBLIC_FUNCTIONS:
        prefix = Function.load(FUNCTIONS / name).manifest.trigger.public_prefix
        for route in falcon.inspect.inspect_routes(function_app(name, settings)):
            if route.path == "/healthz":
                continue
            served |= {(prefix + TEMPLATE.sub("{}", route.path), m.method.lower()) for m in route.methods if not m.internal}
    return served


def test_the_public_document_names_exactly_the_public_routes(tmp_path: Path) -> None:
    document = public_openapi.document()
    documented = {
        (TEMPLATE.sub("{}", path), method) for path, item in document["paths"].items() for method in item
    }
    assert documented == _served_by_the_gateway() | _served_by_the_functions(tmp_path)
    assert ("/srvb/user/{}", "post") in documented and ("/srvp/user/{}/image", "get") in documented
    assert not any(path.startswith(("/v1", "/metrics", "/fn")) for path, _ in documented)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert any(status.startswith("2") for status in operation["responses"]), (method, path)
            if path.startswith("/srv"):
                assert {"400", "502", "503", "504"} <= set(operation["responses"]), (method, path)
    assert {"409", "429", "403", "413"} <= set(document["paths"]["/srvb/user/{id}"]["post"]["responses"])


def test_the_public_document_is_served(pack: Pack) -> None:
    answer = requests.get(f"{pack.url}/openapi.json", timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    assert answer.json() == json.loads(json.dumps(public_openapi.document()))


# Oversized heads, bodies and ids -----------------------------------------------------------------------------


def test_a_64_kib_header_is_a_431_on_both_listeners(pack: Pack) -> None:
    for port in both_ports(pack):
        big = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
        status, headers, body = raw_exchange(port, big)
        assert status == 431 and headers["content-type"] == "application/json", (port, status, body[:200])
        assert json.loads(body)["title"] == "Headers too large"
        many = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
            b"X-H%d: %s\r\n" % (n, b"b" * 1000) for n in range(64)
        ) + b"\r\n"
        assert raw_exchange(port, many)[0] == 431
    # Within the bound, a large header is fine.
    assert requests.get(f"{pack.url}/healthz", headers={"Cookie": "c=" + "x" * (MAX_HEAD // 2)}, timeout=5).status_code == 200


def test_a_head_that_never_ends_is_refused_before_it_ends(pack: Pack) -> None:
    """The gateway does not wait for (nor keep) a head past the bound: it answers 431 while the head is still open."""
    endless = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: " + b"z" * (MAX_HEAD + 4096)
    status, headers, body = raw_exchange(pack.port, endless)
    assert status == 431 and json.loads(body)["title"] == "Headers too large"
    assert headers["connection"] == "close"


def test_a_long_url_is_a_414_and_garbage_a_400(pack: Pack) -> None:
    long = f"GET /srvi/user/{'1' * (MAX_TARGET + 10)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    status, _, body = raw_exchange(pack.port, long)
    assert status == 414 and json.loads(body)["title"] == "URI too long"
    for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64 + b"\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"):
        status, headers, body = raw_exchange(pack.port, garbage, shutdown=True)
        assert status == 400 and headers["content-type"] == "application/json", (status, body)
        assert json.loads(body)["title"] == "Invalid HTTP request"


def test_oversized_bodies_are_413_json_and_play_nothing(pack: Pack) -> None:
    customer = 9001
    assert_json_error(requests.post(f"{pack.url}/srvb/user/{customer}", data=b"x" * 70_000, timeout=10), 413)
    chunks = iter([b"x" * 40_000, b"x" * 40_000])
    assert_json_error(requests.post(f"{pack.url}/srvb/user/{customer}", data=chunks, timeout=10), 413)
    status, _, body = raw_exchange(
        pack.port, f"POST /srvb/user/{customer} HTTP/1.1\r\nHost: x\r\nContent-Length: {10**12}\r\n\r\n".encode() + b"x" * 1024
    )
    assert status == 413 and json.loads(body)["title"] == "Body too large"  # at once: the rest is never awaited
    assert requests.get(f"{pack.url}/srvs/user/{customer}", timeout=5).json()["status"] == "not_played"
    # The control plane's package upload has its own, larger bound.
    upload = control(pack).post(
        f"{pack.internal_url}/v1/functions/f/versions",
        data=b"\0" * (packages.MAX_PACKAGE + 1),
        headers={"Content-Type": "application/zip"},
        timeout=30,
    )
    assert_json_error(upload, 413)
    declared = (
        f"POST /v1/functions/f/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {pack.env['TOMBOLA_TOKEN']}\r\n"
        f"Content-Type: application/zip\r\nContent-Length: {packages.MAX_PACKAGE * 100}\r\n\r\nPK"
    )
    assert raw_exchange(pack.internal_port, declared.encode())[0] == 413


ODD_IDS = (
    "9" * 400, "9" * 4000, "0", "00042", "-1", "+1", "1.0", "1e3", "0x1F", "1000000000", "%201", "1%20", "1%00",
    "%0A1", "1%0D%0AX-Injected:%201", "%EF%BC%91", "%C2%B2", "%FF%FE", "1%2F2", "%25", "~", "1;2", "null", "true", "[1]",
)


@pytest.mark.parametrize(("method", "template"), [
    ("GET", "/srvi/user/{}"), ("GET", "/srvs/user/{}"), ("POST", "/srvb/user/{}"), ("GET", "/srvp/user/{}"),
    ("GET", "/srvp/user/{}/image"),
])
def test_odd_and_oversized_ids_are_400_json(pack: Pack, method: str, template: str) -> None:
    for raw in ODD_IDS:
        answer = requests.request(method, f"{pack.url}{template.format(raw)}", timeout=10)
        if raw == "1%2F2":  # a slash, decoded by the replica: another path, which no route has
            assert_json_error(answer, 400, 404)
            continue
        assert assert_json_error(answer, 400).startswith("A customer id is a positive whole number"), raw
        assert "X-Injected" not in answer.headers
    assert requests.get(f"{pack.url}/srvs/user/1", timeout=5).json()["status"] in ("not_played", "playing", "played")


# Path traversal ----------------------------------------------------------------------------------------------------


TRAVERSALS = (
    "/srvp/user/..%2F..%2Fetc%2Fpasswd", "/srvp/user/../../etc/passwd", "/srvp/user/1/../../../../etc/passwd",
    "/srvp/user/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/srvp/user/..%252F..%252Fetc%252Fpasswd",
    "/srvp/user/....//....//etc/passwd", "/srvp/user/..%5c..%5cetc%5cpasswd", "/srvp/user/1%00.jpg",
    "/static/../gateway/app.py", "/static/..%2fapp.py", "/static/..%2F..%2Fgateway%2Fapp.py",
    "/static/%2e%2e/%2e%2e/gateway/app.py", "/static/%2e%2e%2f%2e%2e%2f.git%2fconfig", "/static/..%5capp.py",
    "/static/%252e%252e%252fapp.py", "/static/.%2e/app.py", "/static//etc/passwd", "/static/%2Fetc%2Fpasswd",
    "/static/app.js%00.png", "/..%2f..%2fetc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
    "/srvi/..%2F..%2Fgateway%2Fapp.py", "/srv%69/user/1/../../../etc/passwd", "/static/..;/gateway/app.py",
)


def test_path_traversal_never_serves_a_file(pack: Pack) -> None:
    for path in TRAVERSALS:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        status, headers, body = raw_exchange(pack.port, request)
        assert 400 <= status < 500, (path, status)
        assert headers["content-type"] == "application/json", (path, headers)
        assert not any(marker in body.decode("latin-1") for marker in FILE_MARKERS), (path, body[:200])
    for path in ("/fn/../../etc/passwd", "/fn/w/../../../etc/passwd", "/fn/..%2f..%2fetc%2fpasswd", "/fn/%2e%2e/gateway/app.py"):
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        status, _, body = raw_exchange(pack.internal_port, request)
        assert 400 <= status < 500 and not any(marker in body.decode("latin-1") for marker in FILE_MARKERS), (path, status)


# Hostile function packages and malformed manifests -------------------------------------------------------------


MANIFEST = 'name = "f"\n[trigger]\ntype = "http"\n'
HANDLER = "def routes(ctx):\n    return {}\n"


def zipped(entries: Mapping[str, str], modes: Mapping[str, int] | None = None) -> bytes:
    """A zip holding ``entries`` exactly as named, with optional Unix modes (a link: S_IFLNK)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in entries.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (modes or {}).get(name, stat.S_IFREG | 0o644) << 16
            archive.writestr(info, text)
    return buffer.getvalue()


def test_packages_that_would_write_outside_their_folder_are_refused(pack: Pack) -> None:
    escape = f"evil-{uuid.uuid4().hex[:8]}.py"
    hostile = {
        "zip-slip": ({"manifest.toml": MANIFEST, "handler.py": HANDLER, f"../../{escape}": "x"}, "'..'"),
        "deep zip-slip": ({"manifest.toml": MANIFEST, "handler.py": HANDLER, f"lib/../../../{escape}": "x"}, "'..'"),
        "absolute": ({"manifest.toml": MANIFEST, "handler.py": HANDLER, f"/tmp/{escape}": "x"}, "absolute paths"),
        "drive": ({"manifest.toml": MANIFEST, "handler.py": HANDLER, f"C:/{escape}": "x"}, "absolute paths"),
        "backslashes": ({"manifest.toml": MANIFEST, "handler.py": HANDLER, f"..\\..\\{escape}": "x"}, "use / between"),
        "symlink": ({"manifest.toml": MANIFEST, "handler.py": HANDLER, "passwd": "/etc/passwd"}, "links are not allowed"),
    }
    session = control(pack)
    for case, (entries, reason) in hostile.items():
        modes = {"passwd": stat.S_IFLNK | 0o777} if case == "symlink" else None
        for url in (f"{pack.internal_url}/v1/functions/f/versions", f"{pack.internal_url}/v1/functions"):
            answer = session.post(url, data=zipped(entries, modes), headers={"Content-Type": "application/zip"}, timeout=10)
            assert reason in assert_json_error(answer, 400, 422), (case, url)
    names = {function["name"] for function in session.get(f"{pack.internal_url}/v1/functions", timeout=5).json()["functions"]}
    assert "f" not in names
    assert not list(pack.home.rglob(escape)) and not list(pack.home.parent.rglob(escape)) and not Path("/tmp", escape).exists()


BAD_MANIFESTS = {
    "not TOML": ('name = "f"\n[trigger\n', "not valid TOML"),
    "no name": ('[trigger]\ntype = "http"\n', "name must match"),
    "name of the wrong type": ('name = 5\n[trigger]\ntype = "http"\n', "name must match"),
    "no trigger": ('name = "f"\n', "trigger.type must be http or queue"),
    "unknown trigger": ('name = "f"\n[trigger]\ntype = "cron"\n', "trigger.type must be http or queue"),
    "trigger not a table": ('name = "f"\ntrigger = "http"\n', "[trigger] must be a table"),
    "timeout as text": (MANIFEST + '[limits]\ntimeout = "soon"\n', "timeout must be a number"),
    "timeout out of range": (MANIFEST + "[limits]\ntimeout = 1e9\n", "timeout must lie between"),
    "queue without queue": ('name = "f"\n[trigger]\ntype = "queue"\n', "a queue trigger needs queue and path"),
    "min above max": (MANIFEST + "[scaling]\nmin = 5\nmax = 2\n", "scaling.min must not exceed scaling.max"),
    "reads not a list": (MANIFEST + '[settings]\nreads = "TOMBOLA_X"\n', "settings.reads"),
    "nested too deeply": ('name = "f"\nx = ' + "[" * 5000 + "]" * 5000 + '\n[trigger]\ntype = "http"\n', "nested too deeply"),
    "not UTF-8": ("\udcff", "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_malformed_manifests_are_a_clear_4xx(pack: Pack, case: str) -> None:
    text, reason = BAD_MANIFESTS[case]
    data = text.encode("utf-8", "surrogateescape")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.toml", data)
        archive.writestr("handler.py", HANDLER)
    session = control(pack)
    for url in (f"{pack.internal_url}/v1/functions/f/versions", f"{pack.internal_url}/v1/functions"):
        answer = session.post(url, data=buffer.getvalue(), headers={"Content-Type": "application/zip"}, timeout=10)
        description = assert_json_error(answer, 400, 422)
        assert reason.lower() in description.lower() and "manifest.toml" in description, (case, url, description)
