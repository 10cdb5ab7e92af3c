"""A client of the control plane (``/v1``), as the ``tombola`` command uses it.

It finds the gateway in ``TOMBOLA_URL`` (default http://127.0.0.1:8080) and the
token in ``TOMBOLA_TOKEN`` or else in the token file ``$TOMBOLA_HOME/token``
(default ``var/token``, written by ``tombola up``). Every failure becomes a
ClientError whose message a user can act on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:8080"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 300.0  # a rolling update waits for in-flight requests of the old version
ZIP = "application/zip"
NDJSON = "application/x-ndjson"


class ClientError(Exception):
    """A call that failed; the message says why, ``status`` is the HTTP status if the gateway answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def find_token(env: Mapping[str, str]) -> tuple[str, str]:
    """``TOMBOLA_TOKEN``, else the content of ``$TOMBOLA_HOME/token``; and where it was found."""
    token = env.get("TOMBOLA_TOKEN", "").strip()
    if token:
        return token, "TOMBOLA_TOKEN"
    path = Path(env.get("TOMBOLA_HOME") or "var") / "token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ClientError(f"no control-plane token: set TOMBOLA_TOKEN, or start the pack (tombola up writes {path})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ClientError(f"cannot read the token file {path}: {getattr(error, 'strerror', None) or error}") from None
    if not token:
        raise ClientError(f"the token file {path} is empty: set TOMBOLA_TOKEN")
    return token, str(path)


class Client:
    """Calls ``/v1`` on one gateway with one token."""

    def __init__(self, url: str, token: str, token_source: str = "TOMBOLA_TOKEN") -> None:
        self.url = url.rstrip("/")
        self.token_source = token_source
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["User-Agent"] = "tombola-cli"

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Client:
        """The client of the gateway named by the environment (default: ``os.environ``)."""
        env = os.environ if env is None else env
        url = env.get("TOMBOLA_URL") or DEFAULT_URL
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"TOMBOLA_URL must start with http:// or https://, not {url!r}")
        return cls(url, *find_token(env))

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call ``method path`` and answer its JSON (None for 204); raise ClientError on any failure."""
        answer = self._send(method, path, json_body=json_body, data=data, content_type=content_type, params=params)
        with answer:
            if answer.status_code == 204:
                return None
            try:
                return answer.json()
            except ValueError:
                raise ClientError(f"the gateway answered {method} {path} with something that is not JSON") from None

    def stream(self, method: str, path: str, json_body: Any) -> Iterator[dict[str, Any]]:
        """Call ``method path`` asking for NDJSON; yield each line as it comes."""
        answer = self._send(method, path, json_body=json_body, accept=NDJSON, stream=True)
        with answer:
            pending = b""
            try:
                for chunk in answer.iter_content(chunk_size=None):  # as it arrives
                    *lines, pending = (pending + chunk).split(b"\n")
                    yield from (json.loads(line) for line in lines if line.strip())
                if pending.strip():
                    yield json.loads(pending)
            except ValueError:
                raise ClientError(f"the gateway answered {method} {path} with something that is not JSON lines") from None
            except requests.RequestException as error:
                raise ClientError(f"the connection to the gateway broke during {method} {path}: {error}") from None

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, Any] | None = None,
        accept: str = "application/json",
        stream: bool = False,
    ) -> requests.Response:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            answer = self.session.request(
                method,
                self.url + path,
                json=json_body,
                data=data,
                params={key: value for key, value in (params or {}).items() if value is not None},
                headers=headers,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                stream=stream,
                allow_redirects=False,
            )
        except requests.ConnectionError:
            raise ClientError(
                f"cannot reach the gateway at {self.url}: is the pack running (tombola up)? TOMBOLA_URL says where it is"
            ) from None
        except requests.Timeout:
            raise ClientError(f"the gateway at {self.url} did not answer {method} {path} in time") from None
        except requests.RequestException as error:
            raise ClientError(f"{method} {path} failed: {error}") from None
        if answer.status_code >= 400:
            with answer:
                raise self._failure(answer)
        return answer

    def _failure(self, answer: requests.Response) -> ClientError:
        """The ClientError of a 4xx or 5xx answer, with the API's description."""
        if answer.status_code == 401:
            return ClientError(f"the gateway at {self.url} refused the token from {self.token_source} (HTTP 401)", status=401)
        return _failure(answer)


def _failure(answer: requests.Response) -> ClientError:
    """The ClientError of a 4xx or 5xx answer, with the API's description."""
    try:
        error = answer.json()
        description = error.get("description") or error.get("title") or ""
    except (ValueError, AttributeError):
        description = ""
    description = description or answer.reason or "the request failed"
    return ClientError(f"{description.rstrip('.')} (HTTP {answer.status_code})", status=answer.status_code)
