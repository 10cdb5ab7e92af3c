"""Customer ids as they appear in URLs: one check shared by every function."""

from __future__ import annotations

import re

import falcon

CUSTOMER_ID = re.compile(r"[1-9][0-9]{0,8}")
MAX_CUSTOMER_ID = 999_999_999


def parse_customer_id(raw: str) -> int:
    """The customer id in ``raw``: a positive whole number of at most 9 digits, else 400."""
    if not CUSTOMER_ID.fullmatch(raw):
        raise falcon.HTTPBadRequest(
            title="Invalid customer id",
            description="A customer id is a positive whole number of at most 9 digits, without leading zeros.",
        )
    return int(raw)
