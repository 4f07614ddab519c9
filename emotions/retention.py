"""Crop retention to the hour: the sweeper deletes face crops once they are older than the
retention, so the bound is hours, not the lifecycle rule's 24-48 h (S3 expires objects at the
midnight UTC after N days, so a 1-day rule keeps a crop up to 48 h). The lifecycle rule stays as
the backstop for anything the sweeper cannot reach (docs/privacy.md).

Only the hours that can hold due crops are listed: keys carry their capture hour
(faces/<festival>/<stage>/<device>/<yyyy>/<mm>/<dd>/<hh>/...), so a sweep lists, per device, the
hours from the lifecycle's reach up to the cutoff, and decides by each object's LastModified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from botocore.exceptions import ClientError
from django.conf import settings
from django.utils import timezone

import awsclients as aws
from edge_package.contracts import CROP_PREFIX
from festival.models import Festival

log = logging.getLogger(__name__)

# A crop not analysed within this long is deleted anyway: the live ranking is about now, and a
# stuck analyzer must not turn into a store of faces. Also the floor for a retention of 0 (the
# analyzer deletes at once; the sweeper removes what it missed).
MIN_AGE = timedelta(hours=1)
# The lifecycle rule (1 day) removes everything within 48 h of upload: older capture hours are
# empty unless a camera uploaded very late, and those the lifecycle rule still removes.
LOOKBACK = timedelta(hours=49)


@dataclass
class SweepReport:
    festival: str
    cutoff: datetime
    listed: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)


def retention_for(festival) -> timedelta:
    """The shorter of the festival's choice and the analyzer's (CROP_RETENTION_HOURS, the stack's
    CropRetentionHours), never under MIN_AGE: the stricter promise wins."""
    hours = min(festival.crop_retention_hours, settings.CROP_RETENTION_HOURS)
    return max(timedelta(hours=hours), MIN_AGE)


def _prefixes(s3, bucket: str, prefix: str) -> list[str]:
    found: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    )
    for page in pages:
        found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return found


def _hours(start: datetime, end: datetime) -> list[str]:
    hour = start.replace(minute=0, second=0, microsecond=0)
    out = []
    while hour <= end:
        out.append(f"{hour:%Y/%m/%d/%H}/")
        hour += timedelta(hours=1)
    return out


def sweep_festival_crops(festival, *, now: datetime | None = None, s3=None) -> SweepReport:
    """Delete the festival's crops uploaded before now - retention (stages and devices found in
    the bucket, so renamed or deleted ones are swept too)."""
    now = now or timezone.now()
    s3 = s3 or aws.cached_client("s3")
    cutoff = now - retention_for(festival)
    report = SweepReport(festival=festival.slug, cutoff=cutoff)
    bucket = festival.bucket
    root = f"{CROP_PREFIX}/{festival.slug}/"
    try:
        devices = [d for stage in _prefixes(s3, bucket, root) for d in _prefixes(s3, bucket, stage)]
    except ClientError as exc:
        report.errors.append(f"{bucket}: {exc}")
        return report
    hours = _hours(cutoff - LOOKBACK, cutoff)
    for device in devices:
        for hour in hours:
            due = []
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=device + hour
            )
            for page in pages:
                for item in page.get("Contents", []):
                    report.listed += 1
                    if item["LastModified"] < cutoff:
                        due.append({"Key": item["Key"]})
            for start in range(0, len(due), 1000):
                answer = s3.delete_objects(
                    Bucket=bucket, Delete={"Objects": due[start : start + 1000], "Quiet": True}
                )
                failed = answer.get("Errors", [])
                report.deleted += len(due[start : start + 1000]) - len(failed)
                report.errors += [f"{e['Key']}: {e.get('Code')}" for e in failed]
    if report.deleted or report.errors:
        log.info(
            "crop sweep %s: deleted %d of %d listed before %s (%d errors)",
            festival.slug, report.deleted, report.listed, cutoff.isoformat(), len(report.errors),
        )  # fmt: skip
    return report


def sweep_expired_crops(*, now: datetime | None = None) -> list[SweepReport]:
    """Every festival that can still have crops (closed ones were emptied by closeout)."""

    return [
        sweep_festival_crops(festival, now=now)
        for festival in Festival.objects.filter(closed_at__isnull=True).order_by("pk")
    ]
