"""The pack's configuration, read from the environment only (12-factor).

Every variable has an embedded default that needs no server: SQLite, Kombu's
filesystem transport and a local object directory, all under ``TOMBOLA_HOME``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from runner.environment import SettingsError, number, whole

__all__ = ["DEFAULT_POOL_SIZE", "Settings", "SettingsError"]

DEFAULT_POOL_SIZE = 10  # database connections a process keeps open (TOMBOLA_DATABASE_POOL_SIZE)


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings of the pack; each function reads the ones its manifest names."""

    home: Path
    database_url: str
    shop_database_url: str
    shop_table_prefix: str
    broker_url: str
    store: str
    store_path: Path
    container: str
    swift_auth_url: str
    swift_auth_version: str
    swift_user: str
    swift_key: str
    swift_project: str
    swift_user_domain: str
    swift_project_domain: str
    swift_region: str
    s3_endpoint_url: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str
    mail_url: str
    mail_domain: str
    mail_api_key: str
    mail_from: str
    mail_to: str
    w_url: str
    w_tempo: float
    max_attempts: int
    retry_backoff: float
    seed_customers: int
    customer_cache_seconds: float
    database_pool_size: int

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        home = Path(env.get("TOMBOLA_HOME") or "var").resolve()
        store = env.get("TOMBOLA_STORE", "local")
        if store not in ("local", "swift", "s3"):
            raise SettingsError(f"TOMBOLA_STORE must be local, swift or s3, not {store!r}")
        prefix = env.get("TOMBOLA_SHOP_TABLE_PREFIX", "ps_")
        if not re.fullmatch(r"[A-Za-z0-9_]{0,32}", prefix):
            raise SettingsError("TOMBOLA_SHOP_TABLE_PREFIX may hold letters, digits and _ only")
        return cls(
            home=home,
            database_url=env.get("TOMBOLA_DATABASE_URL") or f"sqlite:///{home / 'tombola.db'}",
            shop_database_url=env.get("TOMBOLA_SHOP_DATABASE_URL", ""),
            shop_table_prefix=prefix,
            broker_url=env.get("TOMBOLA_BROKER_URL") or "filesystem://",
            store=store,
            store_path=Path(env.get("TOMBOLA_STORE_PATH") or home / "objects"),
            container=env.get("TOMBOLA_CONTAINER", "tombola-prizes"),
            swift_auth_url=env.get("TOMBOLA_SWIFT_AUTH_URL", ""),
            swift_auth_version=env.get("TOMBOLA_SWIFT_AUTH_VERSION", "1"),
            swift_user=env.get("TOMBOLA_SWIFT_USER", ""),
            swift_key=env.get("TOMBOLA_SWIFT_KEY", ""),
            swift_project=env.get("TOMBOLA_SWIFT_PROJECT", ""),
            swift_user_domain=env.get("TOMBOLA_SWIFT_USER_DOMAIN", "Default"),
            swift_project_domain=env.get("TOMBOLA_SWIFT_PROJECT_DOMAIN", "Default"),
            swift_region=env.get("TOMBOLA_SWIFT_REGION", ""),
            s3_endpoint_url=env.get("TOMBOLA_S3_ENDPOINT_URL", ""),
            s3_access_key=env.get("TOMBOLA_S3_ACCESS_KEY", ""),
            s3_secret_key=env.get("TOMBOLA_S3_SECRET_KEY", ""),
            s3_region=env.get("TOMBOLA_S3_REGION", "us-east-1"),
            mail_url=env.get("TOMBOLA_MAIL_URL", ""),
            mail_domain=env.get("TOMBOLA_MAIL_DOMAIN", "tombola.local"),
            mail_api_key=env.get("TOMBOLA_MAIL_API_KEY", ""),
            mail_from=env.get("TOMBOLA_MAIL_FROM", "tombola@tombola.local"),
            mail_to=env.get("TOMBOLA_MAIL_TO", "admins@tombola.local"),
            w_url=env.get("TOMBOLA_W_URL", "http://127.0.0.1:8081/fn/w"),
            w_tempo=number(env, "TOMBOLA_W_TEMPO", 5.0, expected="a number of seconds (0 or more)"),
            max_attempts=whole(env, "TOMBOLA_MAX_ATTEMPTS", 8, low=1, expected="a whole number of attempts (1 or more)"),
            retry_backoff=number(env, "TOMBOLA_RETRY_BACKOFF", 0.5, expected="a number of seconds (0 or more)"),
            seed_customers=whole(env, "TOMBOLA_SEED_CUSTOMERS", 10_000, expected="a whole number of customers (0 or more)"),
            database_pool_size=whole(
                env, "TOMBOLA_DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE, low=1, high=1000,
                expected="a whole number of connections from 1 to 1000",
            ),
            customer_cache_seconds=number(
                env, "TOMBOLA_CUSTOMER_CACHE_SECONDS", 30.0, high=3600, expected="a number of seconds from 0 (no cache) to 3600"
            ),
        )
