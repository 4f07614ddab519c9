"""Comparison runs (writes): start and cancel a run (the cameras get the run in their edge
configuration), store the pairs the ingest reads from the observations table's stream, and
compute the stored result. The admin, the API and the demo call these; selectors read."""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from devices.models import Device
from devices.services.health import update_device
from edge_package.contracts import (
    COMPARISON_KEYS,
    COMPARISON_PK_PREFIX,
    OBSERVATION_PK,
    OBSERVATION_SK,
    TOP_EMOTIONS,
    ContractError,
    normalise_scores,
)
from emotions.comparison.derived import derived_fields
from emotions.comparison.selectors import build_result
from emotions.models import ComparisonReading, ComparisonRun, RejectionReason
from festival.models import Festival

log = logging.getLogger(__name__)

MAX_WINDOW = timedelta(days=7)


# --- start / cancel ------------------------------------------------------------------------------
def _camera_settings(run: ComparisonRun) -> dict:
    return {
        "comparison_run": run.key,
        "comparison_sample_rate": float(run.sample_rate),
        "comparison_starts_ms": int(run.starts_at.timestamp() * 1000),
        "comparison_ends_ms": int(run.ends_at.timestamp() * 1000),
    }


# A run's settings are switched off explicitly rather than removed: the camera merges what it is
# sent into what it has, so a missing key would leave the old run on the camera.
RUN_OFF = {
    "comparison_run": "",
    "comparison_sample_rate": 0,
    "comparison_starts_ms": 0,
    "comparison_ends_ms": 0,
}


def _without_run(config: dict, key: str | None = None) -> dict:
    """The device's own settings with a run's switched off (only that run's with `key`)."""
    if key is not None and config.get("comparison_run") != key:
        return dict(config)
    return {**{k: v for k, v in config.items() if k not in COMPARISON_KEYS}, **RUN_OFF}


def validate_comparison(festival, devices, starts_at, ends_at, sample_rate, *, now) -> None:
    """Every problem with a run's choices at once (ValidationError by field); the admin form and
    start_comparison both ask here."""
    errors: dict[str, list[str]] = defaultdict(list)
    if not devices:
        errors["devices"].append("Choose at least one camera.")
    for device in devices:
        if device.festival_id != festival.pk or device.organization_id != festival.organization_id:
            errors["devices"].append(f"{device.thing_name} is not a camera of {festival.name}.")
        elif not device.stage_id:
            errors["devices"].append(f"{device.thing_name} has no stage.")
    if ends_at <= starts_at:
        errors["ends_at"].append("The run must end after it starts.")
    elif ends_at - starts_at > MAX_WINDOW:
        errors["ends_at"].append("A run lasts at most 7 days.")
    if ends_at <= now:
        errors["ends_at"].append("The window is over already: choose an end in the future.")
    if isinstance(sample_rate, bool) or not 0.001 <= float(sample_rate) <= 1.0:
        errors["sample_rate"].append("The sample rate is a share of crops, 0.001..1.")
    busy = list(
        ComparisonRun.objects.filter(
            devices__in=[d.pk for d in devices],
            cancelled_at__isnull=True,
            ends_at__gt=starts_at,
            starts_at__lt=ends_at,
        )
        .distinct()
        .values_list("key", flat=True)
    )
    if devices and busy:
        errors["devices"].append(
            "A camera takes part in one run at a time; overlapping run(s): " + ", ".join(busy)
        )
    if errors:
        raise ValidationError(dict(errors))


def start_comparison(
    festival: Festival,
    devices,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime,
    sample_rate: float = 0.1,
    name: str = "",
    user=None,
    now: datetime | None = None,
) -> ComparisonRun:
    """A run over `devices` (cameras of `festival`) from `starts_at` (default now) to `ends_at`.
    Each camera gets the run in its configuration (pushed to its shadow; standalone cameras read
    it from their next telemetry answer) and samples crops only inside the window. A camera
    takes part in one run at a time. Raises ValidationError (nothing changed) on bad input."""
    now = now or timezone.now()
    starts_at = starts_at or now
    devices = list(devices)
    validate_comparison(festival, devices, starts_at, ends_at, sample_rate, now=now)
    with transaction.atomic():
        run = ComparisonRun.objects.create(
            organization_id=festival.organization_id,
            festival=festival,
            key=secrets.token_hex(8),
            name=name[:120],
            starts_at=starts_at,
            ends_at=ends_at,
            sample_rate=float(sample_rate),
            created_by=user if getattr(user, "pk", None) else None,
        )
        run.devices.set(devices)
        wanted = _camera_settings(run)
        for device in Device.objects.filter(pk__in=[d.pk for d in devices]).select_related(
            "festival", "stage"
        ):
            update_device(device, config={**_without_run(device.config), **wanted})
    log.info("comparison run %s started on %d cameras", run.key, len(devices))
    return run


def _release_cameras(run: ComparisonRun, now: datetime) -> None:
    """Remove the run's settings from its cameras (those still holding this run)."""
    for device in run.devices.select_related("festival", "stage"):
        if device.config.get("comparison_run") == run.key:
            update_device(device, config=_without_run(device.config, run.key))
    ComparisonRun.objects.filter(pk=run.pk).update(settled_at=now)
    run.settled_at = now


def cancel_comparison(
    run: ComparisonRun, *, now: datetime | None = None, reason: str = ""
) -> ComparisonRun:
    """Stop a run now: cameras stop sampling, the pairs so far stay and the result is computed.
    `reason`: why, when the service ends it (shown on the run's page and in the API)."""
    now = now or timezone.now()
    if run.cancelled_at or run.ends_at <= now:
        raise ValidationError("This run is over already.")
    with transaction.atomic():
        ComparisonRun.objects.filter(pk=run.pk).update(
            cancelled_at=now, ends_at=max(run.starts_at, now), cancel_reason=reason[:300]
        )
        run.refresh_from_db()
        _release_cameras(run, now)
    compute_result(run, now=now)
    return run


def end_runs_for_mode_change(
    festival: Festival, *, was: tuple[str, bool], now: datetime | None = None
) -> list[ComparisonRun]:
    """The festival's analysis mode or face-free mode changed (`was`: the old (analysis_mode,
    face_free)): its runs that are on or still to come are ended, with the reason. A run
    measures the cameras in the modes they had; after a switch to edge mode an organizer expects
    no crop to leave the cameras, which a run would go on doing, and in face-free mode there are
    no faces to compare. The pairs so far stay, and the result is computed from them."""
    now = now or timezone.now()
    old_mode, old_free = was
    if festival.face_free and not old_free:
        why = "the festival switched to face-free mode (no face is detected or cropped)"
    elif not festival.face_free and old_free:
        why = "the festival left face-free mode"
    else:
        why = f"the festival's analysis mode changed from {old_mode} to {festival.analysis_mode}"
        if festival.analysis_mode == "edge":
            why += " (in edge mode no crop leaves the cameras)"
    stamp = timezone.localtime(now, festival.tz).strftime("%Y-%m-%d %H:%M %Z")
    reason = f"Ended early at {stamp}: {why}. Start a new run to compare in the new mode."
    ended = []
    for run in ComparisonRun.objects.filter(
        festival=festival, cancelled_at__isnull=True, ends_at__gt=now
    ):
        ended.append(cancel_comparison(run, now=now, reason=reason))
        log.info("comparison run %s ended: %s", run.key, why)
    return ended


def delete_comparison(run: ComparisonRun, *, now: datetime | None = None) -> None:
    """Delete a run and its pairs; its cameras are switched off first (a camera still holding a
    deleted run would go on uploading crops nobody reads)."""
    with transaction.atomic():
        _release_cameras(run, now or timezone.now())
        run.delete()


# --- pairs from the ingest -----------------------------------------------------------------------
def is_pair_item(item: dict) -> bool:
    return str(item.get(OBSERVATION_PK, "")).startswith(COMPARISON_PK_PREFIX)


def _reading_fields(prefix: str, reading: dict) -> dict:
    if not isinstance(reading, dict):
        raise ContractError(f"{prefix}: a reading must be an object")
    available = bool(reading.get("available"))
    faces = int(reading.get("faces", 0))
    if not 0 <= faces <= 100:
        raise ContractError(f"{prefix}: faces {faces} out of range")
    top = str(reading.get("top", ""))
    if top and top not in TOP_EMOTIONS:
        raise ContractError(f"{prefix}: top {top!r} is not in the taxonomy")
    scores = normalise_scores({k: float(v) for k, v in (reading.get("scores") or {}).items()})
    fields = {
        "available": available,
        "reason": str(reading.get("reason", ""))[:40],
        "faces": faces,
        "top": top if available and faces else "",
        "scores": scores,
        "done_ms": int(reading.get("done_ms", 0)),
    }
    if prefix == "rekognition":
        fields["calls"] = max(0.0, float(reading.get("calls", 0)))
    return {f"{prefix}_{key}": value for key, value in fields.items()}


def store_pairs(entries: list, *, now: datetime | None = None) -> tuple[int, int, list[dict]]:
    """Check and store one ingest page's pair items (`Incoming` entries): returns (created,
    duplicates, refusals). A refusal is a dict the ingest counts like an observation's
    (reason, detail, key, festival, stage). Another organization's run is an unknown run."""
    now = now or timezone.now()
    if not entries:
        return 0, 0, []
    keys = {str(e.item.get("run", "")) for e in entries}
    runs = {r.key: r for r in ComparisonRun.objects.filter(key__in=keys).select_related("festival")}
    members = defaultdict(set)
    for run_id, device_id in ComparisonRun.devices.through.objects.filter(
        comparisonrun__key__in=keys
    ).values_list("comparisonrun_id", "device_id"):
        members[run_id].add(device_id)
    things = {_thing(e.item) for e in entries}
    devices = {
        d.thing_name: d
        for d in Device.objects.filter(thing_name__in=things - {""}).select_related("stage")
    }
    refusals: list[dict] = []
    rows: dict[tuple[int, str], ComparisonReading] = {}
    valid = 0
    for entry in entries:
        item = entry.item
        pk, sk = str(item.get(OBSERVATION_PK, "")), str(item.get(OBSERVATION_SK, ""))
        key = f"{pk} {sk}"[:460]
        festival_slug, _, stage_slug = pk.removeprefix(COMPARISON_PK_PREFIX).partition("/")
        run = runs.get(str(item.get("run", "")))
        if run is None or run.festival.slug != festival_slug:
            refusals.append(
                {"reason": RejectionReason.UNKNOWN_RUN, "detail": str(item.get("run", ""))[:60],
                 "key": key, "festival": Festival.objects.filter(slug=festival_slug).first()}
            )  # fmt: skip
            continue
        base = {"key": key, "festival": run.festival, "run": run}
        thing = _thing(item)
        device = devices.get(thing)
        if device is None:
            refusals.append({**base, "reason": RejectionReason.UNKNOWN_DEVICE, "detail": thing})
            continue
        stage = device.stage
        if (
            device.organization_id != run.organization_id
            or device.festival_id != run.festival_id
            or stage is None
            or stage.slug != stage_slug
        ):
            refusals.append({**base, "reason": RejectionReason.WRONG_DEVICE, "detail": thing})
            continue
        base["stage"] = stage
        try:
            captured_ms = int(item["captured_at_ms"])
            if not sk.startswith(f"{captured_ms:013d}#") or str(item.get("device")) != thing:
                raise ContractError("captured_at_ms or device do not match the sort key")
            mode = str(item.get("mode", ""))
            if mode not in ("cloud", "edge"):
                raise ContractError(f"mode {mode!r}")
            captured = datetime.fromtimestamp(captured_ms / 1000, tz=UTC)
            fields = {
                **_reading_fields("rekognition", item.get("rekognition")),
                **_reading_fields("local", item.get("local")),
            }
            crop_bytes, edge_bytes = int(item.get("crop_bytes", 0)), int(item.get("edge_bytes", 0))
            if not (0 <= crop_bytes < 2**31 and 0 <= edge_bytes < 2**31):
                raise ContractError("byte counts out of range")
        except (KeyError, TypeError, ValueError, OverflowError, OSError, ContractError) as error:
            refusals.append({**base, "reason": RejectionReason.MALFORMED, "detail": str(error)})
            continue
        if device.pk not in members[run.pk] or not run.starts_at <= captured < run.ends_at:
            detail = f"{thing} {captured:%H:%M:%S}"
            refusals.append({**base, "reason": RejectionReason.NOT_IN_RUN, "detail": detail})
            continue
        valid += 1
        received = datetime.fromtimestamp(entry.received_ms / 1000, tz=UTC)
        rows[(run.pk, sk)] = ComparisonReading(
            organization_id=run.organization_id,
            run=run,
            festival_id=run.festival_id,
            stage=stage,
            device=device,
            dynamo_sk=sk,
            mode=mode,
            captured_at=captured,
            received_at=received,
            visible_at=now,
            crop_bytes=crop_bytes,
            edge_bytes=edge_bytes,
            **fields,
            **derived_fields(
                mode=mode,
                captured_at=captured,
                received_at=received,
                visible_at=now,
                rekognition_scores=fields["rekognition_scores"],
                local_scores=fields["local_scores"],
                local_done_ms=fields["local_done_ms"],
            ),  # fmt: skip
        )
    created = 0
    by_run = defaultdict(list)
    for (run_pk, _), row in rows.items():
        by_run[run_pk].append(row)
    for run_pk, fresh in by_run.items():
        existing = set(
            ComparisonReading.objects.filter(
                run_id=run_pk, dynamo_sk__in=[r.dynamo_sk for r in fresh]
            ).values_list("dynamo_sk", flat=True)
        )
        new = [r for r in fresh if r.dynamo_sk not in existing]
        ComparisonReading.objects.bulk_create(new, ignore_conflicts=True)
        ComparisonRun.objects.filter(pk=run_pk).update(pairs=F("pairs") + len(new))
        created += len(new)
    _count_on_runs(refusals)
    return created, valid - created, refusals


def _thing(item: dict) -> str:
    parts = str(item.get(OBSERVATION_SK, "")).split("#")
    return parts[1] if len(parts) == 4 else ""


def _count_on_runs(refusals: list[dict]) -> None:
    """Refusals of a known run are also counted on it: its page shows them."""
    by_run: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for refusal in refusals:
        if refusal.get("run") is not None:
            by_run[refusal["run"].pk][str(refusal["reason"])] += 1
    for run_pk, counts in by_run.items():
        run = ComparisonRun.objects.select_for_update().get(pk=run_pk)
        refused = dict(run.refused)
        for reason, count in counts.items():
            refused[reason] = refused.get(reason, 0) + count
        ComparisonRun.objects.filter(pk=run_pk).update(refused=refused)


# --- the result ----------------------------------------------------------------------------------
def compute_result(run: ComparisonRun, *, now: datetime | None = None) -> dict:
    """The run's result (selectors.build_result), stored on the run for its page and the API."""
    now = now or timezone.now()
    result = build_result(run, now=now)
    ComparisonRun.objects.filter(pk=run.pk).update(result=result, result_at=now)
    run.result, run.result_at = result, now
    return result


def refresh_comparison_runs(*, now: datetime | None = None) -> int:
    """Beat: recompute runs that are on or ended within the last hour; release the cameras of
    runs that are over (once). Returns how many were computed."""
    now = now or timezone.now()
    done = 0
    for run in ComparisonRun.objects.filter(
        starts_at__lte=now, ends_at__gte=now - timedelta(hours=1)
    ).select_related("festival"):
        if run.ends_at <= now and run.settled_at is None:
            _release_cameras(run, now)
        compute_result(run, now=now)
        done += 1
    for run in ComparisonRun.objects.filter(ends_at__lt=now - timedelta(hours=1), settled_at=None):
        _release_cameras(run, now)
    return done
