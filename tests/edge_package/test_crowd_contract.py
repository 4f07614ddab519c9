"""The crowd signal item (contract 2), telemetry contract 3 and the face_free edge setting."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from jsonschema import Draft202012Validator

from edge_package import contracts
from edge_package.contracts import (
    CROWD_SIGNAL_ATTRIBUTES,
    DEVICE_WRITABLE_ATTRIBUTES,
    KIND_CROWD,
    KIND_FACE,
    OBSERVATION_ATTRIBUTES,
    ContractError,
    build_crowd_signal_item,
    build_observation_item,
    crowd_signal_sort_key,
    crowd_window_end_ms,
    from_dynamodb,
    observation_kind,
    observation_sort_key,
    parse_crop_key,
    to_dynamodb,
    validate_crowd_signal_item,
    validate_edge_config,
)
from edge_package.telemetry import build_payload

END = 1_764_633_600_000  # 2025-12-02T00:00:00Z, a window end (multiple of 10 s)


def signal(**overrides) -> dict:
    args = dict(
        festival="fest",
        stage="main",
        device="cam-1",
        organization="org",
        window_end_ms=END,
        motion_energy=0.42,
        motion_energy_max=0.8,
        crowd_fill=0.6,
        faces_seen=7,
        face_free=False,
    )
    args.update(overrides)
    return build_crowd_signal_item(**args)


def test_a_crowd_signal_item_has_the_contract_shape():
    item = signal(sound_level_dbfs=-12.345, sound_crowd_share=0.3)
    assert item["pk"] == "fest/main"
    assert item["sk"] == f"{END:013d}#cam-1#crowd"
    assert item["kind"] == KIND_CROWD and item["contract"] == 2 == contracts.CONTRACT_VERSION
    assert item["captured_at_ms"] == END and item["window_s"] == 10
    assert item["motion_energy"] == 0.42 and item["motion_energy_max"] == 0.8
    assert item["sound_level_dbfs"] == -12.35 and item["sound_crowd_share"] == 0.3
    assert item["expires_at"] == END // 1000 + contracts.DEFAULT_OBSERVATION_TTL_S
    assert set(item) <= set(CROWD_SIGNAL_ATTRIBUTES)
    assert observation_kind(item) == KIND_CROWD


def test_without_a_microphone_the_sound_fields_are_absent_not_null():
    item = signal()
    assert "sound_level_dbfs" not in item and "sound_crowd_share" not in item


def test_the_sort_key_is_the_same_on_replay_and_unique_per_device_and_window():
    assert signal()["sk"] == signal()["sk"]
    assert signal(device="cam-2")["sk"] != signal()["sk"]
    assert signal(window_end_ms=END + 10_000)["sk"] != signal()["sk"]
    # sorts with the faces of the same time, and never equals a face's key
    face = observation_sort_key(END - 1, "cam-1", 3, 0)
    later_face = observation_sort_key(END + 1, "cam-1", 3, 0)
    assert face < signal()["sk"] < later_face
    assert crowd_signal_sort_key(END, "cam-1") != observation_sort_key(END, "cam-1", 0, 0)


def test_windows_are_aligned_so_every_second_of_a_window_names_the_same_end():
    assert {crowd_window_end_ms(END - 10_000 + ms) for ms in (0, 1, 5_000, 9_999)} == {END}
    assert crowd_window_end_ms(END) == END + 10_000  # the end itself opens the next window


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"motion_energy": float("nan")}, "motion_energy"),
        ({"motion_energy": 1.2}, "motion_energy"),
        ({"motion_energy": -0.1}, "motion_energy"),
        ({"motion_energy_max": 0.1}, "below the mean"),
        ({"crowd_fill": math.inf}, "crowd_fill"),
        ({"crowd_fill": "0.5"}, "crowd_fill"),
        ({"faces_seen": -1}, "faces_seen"),
        ({"faces_seen": 2.5}, "whole number"),
        ({"faces_seen": True}, "faces_seen"),
        ({"face_free": True}, "face-free"),  # faces_seen 7 in face-free mode
        ({"face_free": "yes"}, "face_free"),
        ({"sound_level_dbfs": 3.0}, "sound_level_dbfs"),
        ({"sound_level_dbfs": -500.0}, "sound_level_dbfs"),
        ({"sound_crowd_share": 1.5}, "sound_crowd_share"),
        ({"window_s": 0}, "window_s"),
        ({"device": "a#b"}, "device"),
        ({"stage": "a/b"}, "stage"),
    ],
)
def test_bad_numbers_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(ContractError, match=message):
        signal(**overrides)


def test_face_free_with_no_faces_is_valid():
    assert signal(face_free=True, faces_seen=0)["face_free"] is True


def test_an_item_read_back_from_dynamodb_validates_and_keeps_its_values():
    item = signal(sound_level_dbfs=-20.0)
    back = from_dynamodb(to_dynamodb(item))
    assert isinstance(to_dynamodb(item)["motion_energy"], Decimal)
    assert validate_crowd_signal_item(back) == item


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i: i.update(extra=1), "unknown crowd signal attributes: extra"),
        (lambda i: i.pop("crowd_fill"), "lacks crowd_fill"),
        (lambda i: i.update(kind="face"), "kind"),
        (lambda i: i.update(contract=1), "contract"),
        (lambda i: i.update(pk="fest/other"), "pk"),
        (lambda i: i.update(sk=f"{END:013d}#cam-9#crowd"), "sk"),
        (lambda i: i.update(sk=f"{END + 10_000:013d}#cam-1#crowd"), "sk"),
        (lambda i: i.update(captured_at_ms=END + 1), "sk"),
    ],
)
def test_the_server_side_check_refuses_forged_or_broken_items(change, message):
    item = signal()
    change(item)
    with pytest.raises(ContractError, match=message):
        validate_crowd_signal_item(item)


def test_face_items_say_they_are_faces_and_old_items_are_faces_too():
    crop = parse_crop_key(contracts.build_crop_key("fest", "main", "cam-1", END, 1))
    face = build_observation_item(
        crop=crop,
        face_index=0,
        scores={"HAPPY": 90.0},
        face_confidence=99.0,
        source="edge",
        analyzed_at_ms=END,
    )
    assert face["kind"] == KIND_FACE and face["contract"] == 2
    assert set(face) <= set(OBSERVATION_ATTRIBUTES)
    contract_1 = {k: v for k, v in face.items() if k != "kind"}
    assert observation_kind(contract_1) == KIND_FACE
    with pytest.raises(ContractError, match="kind"):
        observation_kind({**face, "kind": "audio"})


def test_the_camera_may_write_both_kinds_and_nothing_else():
    assert set(DEVICE_WRITABLE_ATTRIBUTES) == set(OBSERVATION_ATTRIBUTES) | set(
        CROWD_SIGNAL_ATTRIBUTES
    )
    assert len(DEVICE_WRITABLE_ATTRIBUTES) == len(set(DEVICE_WRITABLE_ATTRIBUTES))


def test_telemetry_3_carries_the_latest_crowd_values_within_bounds():
    payload = build_payload(
        device="cam-1",
        mode="cloud",
        counters={
            "motion_energy": 1.7,  # clamped, never refused on the camera
            "crowd_fill": 0.25,
            "sound_level_dbfs": -300.0,
            "face_free": True,
        },
        sent_at_ms=END,
    )
    assert payload["contract"] == contracts.TELEMETRY_CONTRACT_VERSION == 3
    assert payload["motion_energy"] == 1.0 and payload["crowd_fill"] == 0.25
    assert payload["sound_level_dbfs"] == contracts.SOUND_DBFS_MIN and payload["face_free"] is True
    assert not list(Draft202012Validator(contracts.TELEMETRY_SCHEMA).iter_errors(payload))
    absent = build_payload(
        device="cam-1", mode="cloud", counters={"sound_level_dbfs": None}, sent_at_ms=END
    )
    assert "sound_level_dbfs" not in absent


def test_face_free_is_an_edge_setting_that_must_be_a_boolean():
    assert contracts.EDGE_CONFIG_DEFAULTS["face_free"] is False
    assert validate_edge_config({"face_free": True}) == []
    assert validate_edge_config({"face_free": "true"}) == [
        "face_free: must be true or false, got 'true'"
    ]
