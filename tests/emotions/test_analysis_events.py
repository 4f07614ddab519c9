"""Parsing S3 events and SQS-wrapped S3 events into crops."""

from __future__ import annotations

import json

from analyzer.config import AnalyzerSettings, SettingsError
from analyzer.events import crops_from_s3_event, crops_from_sqs_event, is_sqs_event
from edge_package.contracts import parse_crop_key

from .test_analysis_support import (
    S3_TEST_EVENT,
    T0_MS,
    key_for,
    s3_event,
    s3_record,
    sqs_event,
    sqs_message,
)

ODD_KEYS = [
    key_for(1, festival="sun fest", stage="main stage"),  # spaces -> '+' in the event
    key_for(2, festival="rock+roll", stage="b"),  # a literal '+' -> '%2B'
    key_for(3, festival="fête", stage="scène-été", device="cam-ü"),  # non-ASCII -> %C3%AA...
]


def test_several_records_per_event_with_encoded_keys_decode_once():
    event = s3_event(*(s3_record(key) for key in ODD_KEYS))
    assert "sun+fest" in event["Records"][0]["s3"]["object"]["key"]
    assert "%2B" in event["Records"][1]["s3"]["object"]["key"]
    assert "%C3%AA" in event["Records"][2]["s3"]["object"]["key"]
    crops, problems = crops_from_s3_event(event)
    assert problems == []
    assert [crop.key for crop in crops] == ODD_KEYS
    parsed = [parse_crop_key(crop.encoded_key, url_encoded=True) for crop in crops]
    assert [(p.festival, p.stage) for p in parsed] == [
        ("sun fest", "main stage"),
        ("rock+roll", "b"),
        ("fête", "scène-été"),
    ]
    assert parsed[2].device == "cam-ü"
    assert parsed[0].captured_at_ms == T0_MS + 1000


def test_non_create_records_are_reported_not_crashed():
    removed = s3_record(key_for(1))
    removed["eventName"] = "ObjectRemoved:Delete"
    broken = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}
    crops, problems = crops_from_s3_event(s3_event(removed, broken, s3_record(key_for(2))))
    assert [crop.key for crop in crops] == [key_for(2)]
    assert sorted(p.reason for p in problems) == ["bad_event", "not_object_created"]


def test_s3_test_event_names_nothing():
    assert crops_from_s3_event(S3_TEST_EVENT) == ([], [])


def test_sqs_wrapped_events_keep_their_message_id():
    event = sqs_event(
        sqs_message(s3_event(s3_record(ODD_KEYS[0]), s3_record(ODD_KEYS[1])), "m-1"),
        sqs_message(S3_TEST_EVENT, "m-test"),
        sqs_message("{not json", "m-bad"),
        sqs_message(s3_event(s3_record(ODD_KEYS[2])), "m-3"),
    )
    assert is_sqs_event(event)
    crops, problems, ids = crops_from_sqs_event(event)
    assert ids == ["m-1", "m-test", "m-bad", "m-3"]
    assert [(c.message_id, c.key) for c in crops] == [
        ("m-1", ODD_KEYS[0]),
        ("m-1", ODD_KEYS[1]),
        ("m-3", ODD_KEYS[2]),
    ]
    assert [(p.message_id, p.reason) for p in problems] == [("m-bad", "bad_message")]


def test_sns_envelope_inside_sqs_is_unwrapped():
    envelope = {"Type": "Notification", "Message": json.dumps(s3_event(s3_record(ODD_KEYS[0])))}
    crops, problems, _ = crops_from_sqs_event(sqs_event(sqs_message(envelope, "m-sns")))
    assert problems == [] and [c.key for c in crops] == [ODD_KEYS[0]]


def test_settings_from_env_and_allowlist():
    settings = AnalyzerSettings.from_env(
        {
            "STAGEPULSE_ANALYZER_BACKEND": "LOCAL",
            "STAGEPULSE_CROP_RETENTION_HOURS": "2",
            "STAGEPULSE_STAGE_ALLOWLIST": "sunfest/main, rockfest/*",
            "STAGEPULSE_METRICS_NAMESPACE": "StagePulseTest",
        }
    )
    assert settings.backend == "local" and settings.retention_hours == 2
    assert settings.metrics_namespace == "StagePulseTest"
    assert settings.stage_allowed("sunfest", "main")
    assert not settings.stage_allowed("sunfest", "tent")
    assert settings.stage_allowed("rockfest", "anything")
    defaults = AnalyzerSettings.from_env({})
    assert defaults.metrics_namespace == "StagePulse" and defaults.retention_hours == 0
    assert defaults.stage_allowed("any", "stage")


def test_bad_settings_are_named():
    for env, word in (
        ({"STAGEPULSE_CROP_RETENTION_HOURS": "48"}, "STAGEPULSE_CROP_RETENTION_HOURS"),
        ({"STAGEPULSE_CROP_RETENTION_HOURS": "soon"}, "whole number"),
        ({"STAGEPULSE_ANALYZER_BACKEND": "magic"}, "backend"),
    ):
        try:
            AnalyzerSettings.from_env(env)
        except SettingsError as exc:
            assert word in str(exc)
        else:
            raise AssertionError(f"{env} was accepted")
