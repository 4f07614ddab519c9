"""Turn S3 and SQS-wrapped S3 events into the list of crops to analyze.

Parsing never raises for one bad record or message: a bad one is reported with its reason so that
the rest of the batch still runs. Keys stay URL-encoded here and are decoded once, by the contract's
parse_crop_key(url_encoded=True), so decoding can never happen twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class CropRef:
    """One object named by an ObjectCreated record; message_id is set when it came through SQS."""

    bucket: str
    encoded_key: str
    size: int | None = None
    message_id: str | None = None

    @property
    def key(self) -> str:
        return unquote_plus(self.encoded_key)


@dataclass(frozen=True)
class MessageProblem:
    """A record or message that cannot name a crop: permanent, never retried."""

    reason: str
    detail: str
    message_id: str | None = None


def is_sqs_event(event: dict) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        bool(records)
        and isinstance(records[0], dict)
        and records[0].get("eventSource")
        in (
            "aws:sqs",
            "aws.sqs",
        )
    )


def is_s3_test_event(payload) -> bool:
    """S3 sends s3:TestEvent once when a notification is configured; it names no object."""
    return isinstance(payload, dict) and payload.get("Event") == "s3:TestEvent"


def crops_from_s3_event(
    event, message_id: str | None = None
) -> tuple[list[CropRef], list[MessageProblem]]:
    """Every ObjectCreated record of an S3 event (there may be several per event)."""
    crops: list[CropRef] = []
    problems: list[MessageProblem] = []
    if is_s3_test_event(event):
        return crops, problems
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        problems.append(MessageProblem("bad_event", "no Records list in the S3 event", message_id))
        return crops, problems
    for record in records:
        try:
            name = record.get("eventName", "")
            if record.get("eventSource") != "aws:s3" or not name.startswith("ObjectCreated"):
                problems.append(
                    MessageProblem(
                        "not_object_created",
                        f"ignored {record.get('eventSource')} {name or 'record'}",
                        message_id,
                    )
                )
                continue
            s3 = record["s3"]
            size = s3["object"].get("size")
            crops.append(
                CropRef(
                    bucket=s3["bucket"]["name"],
                    encoded_key=s3["object"]["key"],
                    size=int(size) if size is not None else None,
                    message_id=message_id,
                )
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            problems.append(
                MessageProblem("bad_event", f"malformed S3 record: {exc!r}", message_id)
            )
    return crops, problems


def crops_from_sqs_event(event: dict) -> tuple[list[CropRef], list[MessageProblem], list[str]]:
    """Crops from an SQS event whose bodies are S3 events; also returns every message id."""
    crops: list[CropRef] = []
    problems: list[MessageProblem] = []
    message_ids: list[str] = []
    for message in event.get("Records", []):
        if not isinstance(message, dict):
            problems.append(MessageProblem("bad_message", f"not an SQS record: {message!r:.80}"))
            continue
        message_id = message.get("messageId") or message.get("MessageId") or ""
        message_ids.append(message_id)
        body = message.get("body", message.get("Body"))
        try:
            payload = json.loads(body)
        except (TypeError, ValueError) as exc:
            problems.append(MessageProblem("bad_message", f"body is not JSON: {exc}", message_id))
            continue
        # S3 -> SNS -> SQS delivers the S3 event as a string inside the SNS envelope.
        if isinstance(payload, dict) and payload.get("Type") == "Notification":
            try:
                payload = json.loads(payload.get("Message", ""))
            except (TypeError, ValueError) as exc:
                problems.append(
                    MessageProblem("bad_message", f"SNS Message is not JSON: {exc}", message_id)
                )
                continue
        found, bad = crops_from_s3_event(payload, message_id)
        crops.extend(found)
        problems.extend(bad)
    return crops, problems, message_ids
