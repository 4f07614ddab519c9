"""Rollout: a promoted model reaches cameras through their edge configuration and IoT shadow, per
device or per stage; a simulated camera (the real EdgeRunner on the configuration the device
receives) switches to it, and back on rollback."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

import awsclients as aws
from detectors.evaluation import CountingSink
from detectors.models import FaceModel, ModelRollout, ModelStatus, RolloutState
from detectors.services.registry import register_model
from detectors.services.rollouts import roll_back, roll_out
from devices.services.registration import device_config
from edge_package.config import parse_config
from edge_package.pipeline import EdgeRunner

pytestmark = pytest.mark.django_db


def promoted(organization, blob, name="short") -> FaceModel:
    model = register_model(organization, name=name, data=blob.data)
    FaceModel.objects.filter(pk=model.pk).update(
        status=ModelStatus.PROMOTED, promoted_at=timezone.now()
    )
    return model


def camera(device) -> EdgeRunner:
    """A simulated camera started from what the service sends this device."""
    device.refresh_from_db()
    config = parse_config(device_config(device), "simulated camera")
    return EdgeRunner(config, sink=CountingSink())


@pytest.fixture
def registered(moto_aws, ours):
    from devices.services.registration import register_device

    register_device(ours.device)
    ours.device.refresh_from_db()
    return ours.device


def desired(device) -> dict:
    shadow = aws.client("iot-data").get_thing_shadow(thingName=device.thing_name)
    return json.loads(shadow["payload"].read())["state"]["desired"]["stagepulse"]


def test_a_rolled_out_model_reaches_the_camera_and_rolls_back(registered, ours, short_range):
    assert camera(registered).model_choice.source == "bundled"
    model = promoted(ours.organization, short_range)
    (rollout,) = roll_out(model, devices=[registered], user=ours.operator)
    assert rollout.shadow_pushed and rollout.previous_model is None
    assert desired(registered)["face_model_url"] == model.uri
    assert desired(registered)["face_model_sha256"] == short_range.sha256
    cam = camera(registered)
    assert cam.model_choice.source == "rolled_out" and cam.detector.layout == "short_range"
    assert cam.errors == 0

    roll_back(registered, user=ours.operator)
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ROLLED_BACK
    # "" (not a missing key): a shadow update keeps keys it is not told to change.
    assert desired(registered)["face_model_url"] == ""
    cam = camera(registered)
    assert cam.model_choice.source == "bundled" and cam.detector.layout == "full_range"


def test_rollback_returns_to_the_previous_rolled_out_model(
    registered, ours, short_range, full_range
):
    first = promoted(ours.organization, short_range, "short")
    roll_out(first, devices=[registered])
    FaceModel.objects.filter(pk=first.pk).update(status=ModelStatus.RETIRED)
    second = promoted(ours.organization, full_range, "full")
    (rollout,) = roll_out(second, devices=[registered])
    assert rollout.previous_model == first
    roll_back(registered)
    assert desired(registered)["face_model_sha256"] == short_range.sha256
    active = ModelRollout.objects.get(device=registered, state=RolloutState.ACTIVE)
    assert active.face_model == first


def test_a_corrupt_stored_model_leaves_the_camera_on_the_bundled_one(
    registered, ours, short_range, settings
):
    model = promoted(ours.organization, short_range)
    roll_out(model, devices=[registered])
    aws.client("s3").put_object(Bucket=model.bucket, Key=model.key, Body=b"corrupted")
    cam = camera(registered)
    assert cam.model_choice.source == "bundled"
    assert "SHA-256 mismatch" in cam.last_error and cam.errors == 1


def test_per_stage_rollout_through_the_api(moto_aws, api_client, ours, short_range):
    model = promoted(ours.organization, short_range)
    api_client.force_authenticate(ours.operator)
    response = api_client.post(
        f"/api/v1/face-models/{model.id}/rollout/", {"stage": ours.stage.id}, format="json"
    )
    assert response.status_code == 201, response.json()
    (row,) = response.json()
    assert row["device"] == ours.device.id and row["shadow_pushed"] is False  # not registered
    ours.device.refresh_from_db()
    assert ours.device.config["face_model_sha256"] == short_range.sha256
    back = api_client.post(f"/api/v1/face-model-rollouts/{row['id']}/rollback/")
    assert back.status_code == 200 and back.json()["state"] == "rolled_back"
    ours.device.refresh_from_db()
    assert ours.device.config["face_model_url"] == ""


def test_only_promoted_models_roll_out(moto_aws, api_client, ours, short_range):
    model = register_model(ours.organization, name="short", data=short_range.data)
    api_client.force_authenticate(ours.operator)
    response = api_client.post(
        f"/api/v1/face-models/{model.id}/rollout/", {"devices": [ours.device.id]}, format="json"
    )
    assert response.status_code == 400
    assert "is not promoted" in response.json()["error"]["message"]


def test_another_organizations_cameras_and_rollouts_are_out_of_reach(
    moto_aws, api_client, client, ours, theirs, short_range
):
    model = promoted(ours.organization, short_range)
    their_model = promoted(theirs.organization, short_range)
    (their_rollout,) = roll_out(their_model, devices=[theirs.device])
    api_client.force_authenticate(ours.operator)
    response = api_client.post(
        f"/api/v1/face-models/{model.id}/rollout/", {"devices": [theirs.device.id]}, format="json"
    )
    assert response.status_code == 400 and "does not exist" in json.dumps(response.json())
    theirs.device.refresh_from_db()
    assert theirs.device.config["face_model_sha256"] == short_range.sha256  # untouched
    assert api_client.get("/api/v1/face-model-rollouts/").json()["results"] == []
    url = f"/api/v1/face-model-rollouts/{their_rollout.id}/rollback/"
    assert api_client.post(url).status_code == 404
    client.force_login(ours.operator)
    admin_url = f"/admin/detectors/modelrollout/{their_rollout.id}/change/"
    assert client.get(admin_url).status_code == 404


def test_viewers_cannot_roll_out_or_back(moto_aws, api_client, ours, short_range):
    model = promoted(ours.organization, short_range)
    (rollout,) = roll_out(model, devices=[ours.device])
    api_client.force_authenticate(ours.viewer)
    url = f"/api/v1/face-models/{model.id}/rollout/"
    assert api_client.post(url, {"devices": [ours.device.id]}, format="json").status_code == 403
    rollback = f"/api/v1/face-model-rollouts/{rollout.id}/rollback/"
    assert api_client.post(rollback).status_code == 403
    assert api_client.get("/api/v1/face-model-rollouts/").json()["count"] == 1


class ServicePublisher:
    """The camera's HTTPS telemetry transport, played through Django's test client: the real
    telemetry endpoint answers, with the device's current settings in `desired`."""

    def __init__(self, client, token: str):
        self.client, self.token = client, token

    def publish(self, payload: dict) -> dict:
        response = self.client.post(
            "/api/v1/telemetry/", payload, format="json", HTTP_AUTHORIZATION=f"Device {self.token}"
        )
        assert response.status_code == 202, response.json()
        return response.json()


def test_a_running_standalone_camera_switches_model_from_the_telemetry_answer(
    registered, ours, short_range, api_client
):
    from devices.services import issue_device_token

    cam = camera(registered)  # started on the bundled model, before the rollout
    cam.publisher = ServicePublisher(api_client, issue_device_token(registered))
    model = promoted(ours.organization, short_range)
    roll_out(model, devices=[registered], user=ours.operator)
    assert cam.model_choice.source == "bundled"
    cam.telemetry()  # the next report's answer carries the rollout
    assert cam.model_choice.source == "rolled_out" and cam.detector.layout == "short_range"
    roll_back(registered, user=ours.operator)
    cam.telemetry()
    assert cam.model_choice.source == "bundled" and cam.detector.layout == "full_range"
    assert cam.errors == 0
