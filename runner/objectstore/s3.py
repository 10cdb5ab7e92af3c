"""The S3 object store, through boto3: AWS or any S3-compatible endpoint (Swift's s3api, Ceph, MinIO).

A non-AWS endpoint is addressed path-style (``http://host/bucket/key``) and
gets checksums only where S3 requires them; every upload carries Content-MD5.
The botocore client is thread-safe and keeps its own connection pool.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from runner.errors import BackendUnavailable
from runner.objectstore.base import BACKEND, ObjectInfo, StoredObject, check_container, check_key
from runner.settings import Settings

T = TypeVar("T")
TIMEOUT = 5.0  # seconds to connect, and between bytes of an answer
ABSENT = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})
OWNED = frozenset({"BucketAlreadyOwnedByYou"})


def client(settings: Settings) -> Any:
    """A boto3 S3 client as ``settings`` describe it (no request is made yet)."""
    endpoint = settings.s3_endpoint_url or None
    config = botocore.config.Config(
        region_name=settings.s3_region,
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        retries={"mode": "standard", "max_attempts": 2},
        max_pool_connections=16,
        s3={"addressing_style": "path"} if endpoint else {},
        request_checksum_calculation="when_supported" if endpoint is None else "when_required",
        response_checksum_validation="when_supported" if endpoint is None else "when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=settings.s3_access_key or None,
        aws_secret_access_key=settings.s3_secret_key or None,
        config=config,
    )


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.UTC)


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Store:
    """An S3 bucket."""

    def __init__(self, bucket: str, s3: Any, region: str) -> None:
        self.bucket = check_container(bucket)
        self.region = region
        self._s3 = s3

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        return cls(settings.container, client(settings), settings.s3_region)

    def ensure_container(self) -> None:
        if self._call(lambda: self._s3.head_bucket(Bucket=self.bucket)) is not None:
            return
        options: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self._call(lambda: self._s3.create_bucket(**options), fine=OWNED)  # another replica may win the race

    def put(self, key: str, data: bytes, content_type: str) -> None:
        check_key(key)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode("ascii")

        def put() -> Any:
            return self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, ContentMD5=md5)

        if self._call(put) is None:  # the bucket is missing
            self.ensure_container()
            if self._call(put) is None:
                raise BackendUnavailable(BACKEND, f"bucket {self.bucket} vanished while storing {key}")

    def get(self, key: str) -> StoredObject | None:
        check_key(key)

        def get() -> tuple[dict[str, Any], bytes]:
            answer = self._s3.get_object(Bucket=self.bucket, Key=key)
            with answer["Body"] as body:
                return answer, body.read()

        result = self._call(get)
        if result is None:
            return None
        answer, data = result
        return StoredObject(data, answer["ContentType"], answer["ETag"].strip('"'), _utc(answer["LastModified"]))

    def head(self, key: str) -> ObjectInfo | None:
        check_key(key)
        answer = self._call(lambda: self._s3.head_object(Bucket=self.bucket, Key=key))
        if answer is None:
            return None
        return ObjectInfo(
            answer["ContentType"], answer["ETag"].strip('"'), _utc(answer["LastModified"]), answer["ContentLength"]
        )

    def delete(self, key: str) -> None:
        check_key(key)
        self._call(lambda: self._s3.delete_object(Bucket=self.bucket, Key=key))

    @staticmethod
    def _call(request: Callable[[], T], fine: frozenset[str] = ABSENT) -> T | None:
        """Run ``request()``; None when S3 answers an error whose code is in ``fine`` (by default: absent)."""
        try:
            return request()
        except botocore.exceptions.ClientError as error:
            if _code(error) in fine:
                return None
            raise BackendUnavailable(BACKEND, f"S3: {error}") from error
        except botocore.exceptions.BotoCoreError as error:
            raise BackendUnavailable(BACKEND, f"S3: {type(error).__name__}: {error}") from error
