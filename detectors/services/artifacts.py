"""What the detector services share: the name rule, temporary files, the artifacts bucket."""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager

from django.conf import settings

import awsclients as aws

# Model, clip and training-job model names: they appear in S3 keys and in the gate's reasons.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


@contextmanager
def temp_file(data: bytes | None = None, *, suffix: str):
    """`data` (or nothing) in a temporary file, deleted afterwards: OpenCV and the TFLite
    interpreter read paths, not bytes."""
    handle, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            if data:
                out.write(data)
        yield path
    finally:
        os.unlink(path)


def put_artifact(key: str, data: bytes, sha256: str) -> str | None:
    """Put an object in the artifacts bucket (SSE); its VersionId (None where the bucket is not
    versioned)."""
    response = aws.cached_client("s3").put_object(
        Bucket=settings.ARTIFACTS_BUCKET,
        Key=key,
        Body=data,
        ServerSideEncryption="AES256",
        ContentType="application/octet-stream",
        Metadata={"sha256": sha256},
    )
    return response.get("VersionId")


def delete_every_version(bucket: str, key: str) -> None:
    """Every version and delete marker of exactly `key` (the artifacts bucket is versioned and
    keeps noncurrent versions 90 days: a plain DeleteObject would leave the file readable)."""
    s3 = aws.cached_client("s3")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            if entry["Key"] == key:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=entry["VersionId"])
