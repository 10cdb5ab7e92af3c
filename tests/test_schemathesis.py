"""Property-based API tests (schemathesis) against a running pack: no 5xx, and every answer as documented.

Both OpenAPI documents: the public listener's (gateway.public_openapi, every
operation of I, S, B and P as the gateway publishes them, and the gateway's
pages) and the control plane's (gateway.openapi, with the token). Schemathesis
generates valid and invalid input from each (``mode = all``), deterministically
so that CI runs the same cases every time, and checks each answer: not a
server error, a documented status, content type, headers and body schema; for
invalid input, a 4xx; for the control plane, a 401 without the token.

Half of the control plane's function names are drawn from the pack's own
functions, so that the operations reach real functions (versions, aliases,
rolling deploys, executions, logs); a scaling request is held at 2 replicas at
most, so that the machine is not asked for 64 replicas of W.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from gateway import openapi, public_openapi
from tests.pack import Pack

pytestmark = pytest.mark.slow

FUNCTIONS = ["i", "s", "b", "p", "w", "w1", "w2"]
MAX_SCALE = 2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
]


# Invalid input may be refused for being too large too (413); a 5xx is never right (not_a_server_error).
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
for zip_type in ("application/zip", "application/x-zip-compressed"):
    schemathesis.serializer.alias(zip_type, "application/octet-stream")  # generated packages, as bytes


def _config(examples: int, **more: Any) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "generation": {
                "mode": "all",
                "max-examples": examples,
                "deterministic": True,
                "database": "none",
                "allow-extra-parameters": False,  # unknown query parameters are ignored, as HTTP APIs do
            },
            "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
            **more,
        }
    )


public = schemathesis.openapi.from_dict(public_openapi.document(), config=_config(50))
control = schemathesis.openapi.from_dict(
    openapi.document(),
    config=_config(
        25,
        dictionaries={"functions": {"values": FUNCTIONS}},
        parameters={"path.name": {"dictionary": "functions", "probability": 0.5}},
    ),
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    """The pack under fuzzing: W fast, a few customers (so that most generated ids are unknown)."""
    pack = Pack(tmp_path_factory.mktemp("fuzzed"), {"TOMBOLA_W_TEMPO": "0.05", "TOMBOLA_SEED_CUSTOMERS": "200"}).start()
    yield pack
    assert pack.stop() == 0, pack.log()


@public.parametrize()
def test_the_public_api_answers_as_documented(case: schemathesis.Case, fuzzed: Pack) -> None:
    case.call_and_validate(base_url=fuzzed.url, checks=CHECKS, timeout=30)


@control.parametrize()
def test_the_control_plane_answers_as_documented(case: schemathesis.Case, fuzzed: Pack) -> None:
    if case.method == "PUT" and case.path.endswith("/scaling") and isinstance(case.body, dict):
        case.body = {key: _at_most(value, MAX_SCALE) for key, value in case.body.items()}
    token = {"Authorization": f"Bearer {fuzzed.env['TOMBOLA_TOKEN']}"}
    case.call_and_validate(base_url=fuzzed.internal_url, headers=token, checks=[*CHECKS, ignored_auth], timeout=120)


def _at_most(value: Any, limit: int) -> Any:
    """``value`` held at ``limit`` when it is a larger whole number, else as it is."""
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        return limit
    return value
