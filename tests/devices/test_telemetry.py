"""POST /api/v1/telemetry/: device token auth, schema validation, flood limit, health."""

from __future__ import annotations

import time

import pytest

from devices import services
from devices.models import Device, DeviceStatus
from devices.services.tokens import hash_token

pytestmark = pytest.mark.django_db
URL = "/api/v1/telemetry/"


def request_client(name: str):
    """The cached client that code answering a request gets (awsclients.someone_waiting: a
    person waits, so it gives up fast); the one a Celery task gets is another instance."""
    import awsclients as aws

    with aws.someone_waiting():
        return aws.cached_client(name)


def report(device: Device, **extra) -> dict:
    payload = {
        "contract": 1,
        "device_id": device.thing_name,
        "software_version": "0.1.0",
        "sent_at_ms": int(time.time() * 1000),
        "analysis_mode": "cloud",
        "paused": False,
        "fps": 12.5,
        "frames": 750,
        "faces_detected": 41,
        "uploads": 30,
        "bytes_sent": 120000,
        "spool_depth": 2,
        "errors": 1,
        "last_error": "upload timeout",
    }
    payload.update(extra)
    return payload


def post(api_client, token: str, payload):
    return api_client.post(URL, payload, format="json", HTTP_AUTHORIZATION=f"Device {token}")


@pytest.fixture
def ours(two_worlds):
    device = two_worlds[0].device
    return device, services.issue_device_token(device)


def test_a_report_makes_the_device_healthy(api_client, ours):
    device, token = ours
    response = post(api_client, token, report(device))
    assert response.status_code == 202, response.json()
    assert response.json()["desired"]["paused"] is False
    device.refresh_from_db()
    assert device.status == DeviceStatus.ONLINE
    assert device.last_seen_at is not None
    assert device.software_version == "0.1.0"
    health = device.health
    assert (health["fps"], health["faces_detected"], health["uploads"]) == (12.5, 41, 30)
    assert (health["spool_depth"], health["errors"]) == (2, 1)
    assert health["last_error"] == "upload timeout"


def test_token_is_stored_hashed(ours):
    device, token = ours
    device.refresh_from_db()
    assert device.token_hash == hash_token(token) and token not in device.token_hash


@pytest.mark.parametrize(
    "header", ["", "Device ", "Device spd_wrong", "Token abc", "Device not-a-device-token"]
)
def test_wrong_or_missing_token_is_401_and_changes_nothing(api_client, ours, header):
    device, _ = ours
    response = api_client.post(URL, report(device), format="json", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    device.refresh_from_db()
    assert device.last_seen_at is None and device.status == DeviceStatus.NEW


def test_a_reissued_token_replaces_the_old_one(api_client, ours):
    device, old = ours
    new = services.issue_device_token(device)
    assert post(api_client, old, report(device)).status_code == 401
    assert post(api_client, new, report(device)).status_code == 202


def test_a_revoked_or_unknown_token_is_told_so(api_client, ours):
    device, old = ours
    services.issue_device_token(device)  # revokes `old`
    for token in (old, "spd_never-issued"):
        response = post(api_client, token, report(device))
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "Unknown or revoked device token."
        assert response["WWW-Authenticate"] == 'Device realm="telemetry"'


def test_no_token_at_all_is_told_how_to_send_one(api_client, ours):
    device, _ = ours
    response = api_client.post(URL, report(device), format="json")
    assert response.status_code == 401
    assert "Authorization: Device <token>" in response.json()["error"]["message"]


def test_a_token_cannot_report_for_another_organizations_device(api_client, ours, two_worlds):
    device, token = ours
    theirs = two_worlds[1].device
    response = post(api_client, token, report(theirs))
    assert response.status_code == 400
    assert "not the device these credentials belong to" in response.json()["error"]["message"]
    for d in (device, theirs):
        d.refresh_from_db()
        assert d.last_seen_at is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fps": "fast"}, "fps: 'fast' is not of type 'number'"),
        ({"faces_detected": -1}, "faces_detected: -1 is less than the minimum of 0"),
        ({"analysis_mode": "fog"}, "analysis_mode: 'fog' is not one of ['cloud', 'edge']"),
        ({"temperature": 80}, "(body): Additional properties are not allowed ('temperature'"),
    ],
)
def test_invalid_payload_is_refused_with_every_problem(api_client, ours, change, message):
    device, token = ours
    response = post(api_client, token, report(device, **change))
    assert response.status_code == 400
    problems = response.json()["error"]["fields"]["payload"]
    assert any(p.startswith(message) for p in problems), problems
    device.refresh_from_db()
    assert device.last_seen_at is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"faces_detected": 10**400}, "faces_detected: "),
        ({"bytes_sent": 2**53}, "bytes_sent: 9007199254740992 is greater than the maximum"),
        ({"errors": 1e20}, "errors: 1e+20 is greater than the maximum"),
        ({"sent_at_ms": 1e20}, "sent_at_ms: 1e+20 is greater than the maximum"),
        ({"sent_at_ms": 10**19}, "sent_at_ms: 10000000000000000000 is greater than the maximum"),
        ({"contract": 10**30}, "contract: "),
        ({"fps": 1e308}, "fps: 1e+308 is greater than the maximum of 1000"),
    ],
)
def test_numbers_out_of_bounds_are_a_400_and_change_nothing(api_client, ours, change, message):
    """A counter, rate or clock no camera can have is refused before it reaches the metrics
    task (a 401-digit counter once broke it for every tenant) or a datetime (1e20 was a 500)."""
    device, token = ours
    response = post(api_client, token, report(device, **change))
    assert response.status_code == 400
    problems = response.json()["error"]["fields"]["payload"]
    assert any(p.startswith(message) and "maximum" in p for p in problems), problems
    device.refresh_from_db()
    assert device.last_seen_at is None and device.health == {}


def test_the_largest_values_in_bounds_are_accepted(api_client, ours, moto_aws):
    from edge_package.contracts import COUNTER_MAX, SENT_AT_MS_MAX

    device, token = ours
    payload = report(device, faces_detected=COUNTER_MAX, sent_at_ms=SENT_AT_MS_MAX)
    assert post(api_client, token, payload).status_code == 202
    device.refresh_from_db()
    assert device.health["faces_detected"] == COUNTER_MAX
    assert services.publish_device_metrics() == {"sent": 1, "skipped": 0, "failed": 0}


def test_missing_fields_are_all_listed(api_client, ours):
    device, token = ours
    response = post(api_client, token, {"device_id": device.thing_name})
    problems = response.json()["error"]["fields"]["payload"]
    for name in ("software_version", "sent_at_ms", "analysis_mode"):
        assert any(f"'{name}' is a required property" in p for p in problems)


def test_not_json_is_a_400(api_client, ours):
    _, token = ours
    response = api_client.post(
        URL, "{oops", content_type="application/json", HTTP_AUTHORIZATION=f"Device {token}"
    )
    assert response.status_code == 400


def test_a_flood_is_throttled_per_device(api_client, ours, two_worlds):
    device, token = ours
    codes = [post(api_client, token, report(device)).status_code for _ in range(31)]
    assert codes[:30] == [202] * 30
    assert codes[30] == 429
    # Another device is not held back by this one.
    other = two_worlds[1].device
    assert post(api_client, services.issue_device_token(other), report(other)).status_code == 202


def test_token_guessing_is_throttled_too(api_client, ours):
    device, _ = ours
    codes = [post(api_client, "spd_guess", report(device)).status_code for _ in range(31)]
    assert codes[:30] == [401] * 30 and codes[30] == 429


def test_iot_rule_path_identifies_the_device_by_its_topic(api_client, ours, settings):
    device, _ = ours
    settings.TELEMETRY_IOT_RULE_SECRET = "rule-secret-0123456789"
    headers = {"HTTP_X_STAGEPULSE_THING": device.thing_name}
    bad = api_client.post(
        URL, report(device), format="json", HTTP_AUTHORIZATION="IotRule nope", **headers
    )
    assert bad.status_code == 401
    good = api_client.post(
        URL,
        report(device),
        format="json",
        HTTP_AUTHORIZATION="IotRule rule-secret-0123456789",
        **headers,
    )
    assert good.status_code == 202
    device.refresh_from_db()
    assert device.status == DeviceStatus.ONLINE


def test_iot_rule_path_is_off_without_a_secret(api_client, ours, settings):
    device, _ = ours
    settings.TELEMETRY_IOT_RULE_SECRET = ""
    response = api_client.post(
        URL,
        report(device),
        format="json",
        HTTP_AUTHORIZATION="IotRule ",
        HTTP_X_STAGEPULSE_THING=device.thing_name,
    )
    assert response.status_code == 401


def test_api_token_action_is_for_operators(api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.viewer)
    assert api_client.post(f"/api/v1/devices/{ours.device.pk}/token/").status_code == 403
    api_client.force_authenticate(ours.operator)
    response = api_client.post(f"/api/v1/devices/{ours.device.pk}/token/")
    assert response.status_code == 201
    token = response.json()["token"]
    assert services.device_for_token(token) == ours.device


def test_management_command_issues_a_working_token(api_client, ours, capsys):
    from django.core.management import call_command

    device, _ = ours
    call_command("device_token", device.thing_name)
    token = capsys.readouterr().out.strip()
    assert post(api_client, token, report(device)).status_code == 202


def test_config_command_gives_the_cli_everything_it_needs(api_client, ours, capsys):
    import json

    from django.core.management import call_command

    from edge_package.config import parse_config

    device, _ = ours
    call_command("device_token", device.thing_name, "--config", "--service-url", "http://x:8000")
    raw = json.loads(capsys.readouterr().out)
    config = parse_config(raw)  # the edge accepts it as is
    assert config.service_url == "http://x:8000" and config.stage == "main"
    assert post(api_client, config.device_token, report(device)).status_code == 202


CONFIRMATION = {
    "arn": "arn:aws:iot:eu-west-1:123456789012:ruledestination/http/6f1f7e3c-0000-4a4a-9b9b-1",
    "confirmationToken": "AYADeMXLrPrNY5wqJKa4QIMPQzoAXwABABVhd3MtY3J5cHRv",
    "enableUrl": "https://iot.eu-west-1.amazonaws.com/confirmdestination/AYADeMXLrPr",
}


def test_the_iot_rule_destination_confirms_itself(api_client, settings):
    """AWS posts the confirmation once, without the rule's headers; moto has no topic rule
    destinations, so the IoT call is checked with botocore's Stubber on its real shape."""
    from botocore.stub import Stubber

    settings.TELEMETRY_IOT_RULE_SECRET = "rule-secret-0123456789"
    with Stubber(request_client("iot")) as iot:
        iot.add_response(
            "confirm_topic_rule_destination",
            {},
            {"confirmationToken": CONFIRMATION["confirmationToken"]},
        )
        response = api_client.post(URL, CONFIRMATION, format="json")
        iot.assert_no_pending_responses()
    assert response.status_code == 200
    assert response.json() == {"confirmed": True, "destination": CONFIRMATION["arn"]}


def test_a_bad_or_foreign_confirmation_is_refused_without_calling_aws(api_client, settings):
    from botocore.stub import Stubber

    with Stubber(request_client("iot")):  # any IoT call would fail the test
        forged = api_client.post(URL, {**CONFIRMATION, "arn": "arn:aws:s3:::bucket"}, format="json")
        elsewhere = api_client.post(
            URL,
            {**CONFIRMATION, "arn": CONFIRMATION["arn"].replace("eu-west-1", "us-east-1")},
            format="json",
        )
    assert forged.status_code == 400
    assert "Not an AWS IoT HTTPS rule destination" in str(forged.json())
    assert elsewhere.status_code == 400 and "not in this service's region" in str(elsewhere.json())


def test_the_first_deploy_is_confirmed_before_the_rule_secret_is_configured(api_client, settings):
    """The stack generates the rule's secret, so AWS's confirmation arrives while the service has
    none configured: it is confirmed anyway (AWS checks the token against our account)."""
    from botocore.stub import Stubber

    settings.TELEMETRY_IOT_RULE_SECRET = ""
    settings.TELEMETRY_IOT_RULE_SECRET_ARN = ""
    with Stubber(request_client("iot")) as iot:
        iot.add_response(
            "confirm_topic_rule_destination",
            {},
            {"confirmationToken": CONFIRMATION["confirmationToken"]},
        )
        response = api_client.post(URL, CONFIRMATION, format="json")
        iot.assert_no_pending_responses()
    assert response.status_code == 200 and response.json()["confirmed"] is True


def test_a_refused_confirmation_logs_the_token_for_the_manual_fallback(api_client, caplog):
    from botocore.stub import Stubber

    with Stubber(request_client("iot")) as iot:
        iot.add_client_error(
            "confirm_topic_rule_destination",
            "UnauthorizedException",
            "User is not authorized to perform iot:ConfirmTopicRuleDestination",
            401,
        )
        with caplog.at_level("WARNING", logger="devices.services.telemetry"):
            response = api_client.post(URL, CONFIRMATION, format="json")
    assert response.status_code == 400
    assert (
        f"confirm-topic-rule-destination --confirmation-token {CONFIRMATION['confirmationToken']}"
        in caplog.text
    )


def test_rule_requests_are_checked_against_the_stacks_secret(api_client, settings, ours):
    """TELEMETRY_IOT_RULE_SECRET_ARN: the token is read from Secrets Manager, not configured."""
    import json as _json

    from botocore.stub import Stubber

    from devices import selectors

    device, _ = ours
    settings.TELEMETRY_IOT_RULE_SECRET = ""
    settings.TELEMETRY_IOT_RULE_SECRET_ARN = (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:stagepulse/dev/telemetry-rule-Ab12Cd"
    )
    selectors._rule_secret.update(value="", arn="", at=0.0)
    secret = {
        "ARN": settings.TELEMETRY_IOT_RULE_SECRET_ARN,
        "Name": "stagepulse/dev/telemetry-rule",
        "VersionId": "7c9d2a3e-1f0b-4c5d-9e8f-0a1b2c3d4e5f",
        "SecretString": _json.dumps({"token": "generated-token-0123456789abcdef"}),
        "VersionStages": ["AWSCURRENT"],
    }
    with Stubber(request_client("secretsmanager")) as sm:
        sm.add_response(
            "get_secret_value", secret, {"SecretId": settings.TELEMETRY_IOT_RULE_SECRET_ARN}
        )
        good = api_client.post(
            URL,
            report(device),
            format="json",
            HTTP_AUTHORIZATION="IotRule generated-token-0123456789abcdef",
            HTTP_X_STAGEPULSE_THING=device.thing_name,
        )
        bad = api_client.post(  # cached: no second Secrets Manager call
            URL,
            report(device),
            format="json",
            HTTP_AUTHORIZATION="IotRule guessed",
            HTTP_X_STAGEPULSE_THING=device.thing_name,
        )
    selectors._rule_secret.update(value="", arn="", at=0.0)
    assert good.status_code == 202
    assert bad.status_code == 401


def test_aws_refusing_the_token_is_a_clear_400(api_client, settings):
    from botocore.stub import Stubber

    settings.TELEMETRY_IOT_RULE_SECRET = "rule-secret-0123456789"
    with Stubber(request_client("iot")) as iot:
        iot.add_client_error(
            "confirm_topic_rule_destination", "InvalidRequestException", "token expired"
        )
        response = api_client.post(URL, CONFIRMATION, format="json")
    assert response.status_code == 400
    assert "AWS refused the confirmation" in str(response.json())


def test_a_festival_in_edge_mode_makes_its_cameras_score_on_the_device(api_client, ours):
    """The festival's privacy choice reaches the camera: registration config and every telemetry
    answer say edge mode, unless the device itself was set otherwise."""
    from devices.services.registration import device_config
    from edge_package.config import parse_config

    device, token = ours
    assert post(api_client, token, report(device)).json()["desired"]["mode"] == "cloud"
    device.festival.analysis_mode = "edge"
    device.festival.save()
    device.refresh_from_db()
    assert parse_config(device_config(device), "camera").mode == "edge"
    assert post(api_client, token, report(device)).json()["desired"]["mode"] == "edge"
    device.config = {**device.config, "mode": "cloud"}  # an explicit per-device choice wins
    device.save()
    assert post(api_client, token, report(device)).json()["desired"]["mode"] == "cloud"


def test_contract_3_crowd_values_are_kept_in_the_health(api_client, ours):
    """Telemetry 3's latest crowd signal values are shown on the device, not refused."""
    device, token = ours
    fields = {"motion_energy": 0.37, "sound_level_dbfs": -18.5, "crowd_fill": 0.6}
    response = post(api_client, token, report(device, contract=3, face_free=True, **fields))
    assert response.status_code == 202, response.json()
    device.refresh_from_db()
    assert {k: device.health[k] for k in fields} == fields
    assert device.health["face_free"] is True


@pytest.mark.parametrize(
    "change", [{"motion_energy": 1.5}, {"crowd_fill": -0.1}, {"sound_level_dbfs": 6.0}]
)
def test_crowd_values_out_of_range_are_a_400(api_client, ours, change):
    device, token = ours
    response = post(api_client, token, report(device, contract=3, **change))
    assert response.status_code == 400
    (field,) = change
    assert any(p.startswith(f"{field}: ") for p in response.json()["error"]["fields"]["payload"])
