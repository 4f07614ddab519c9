"""Registering a camera creates its IoT identity with least-privilege policies; the private key
is handed out once and never stored; deregistering removes everything again."""

from __future__ import annotations

import fnmatch
import io
import json
import zipfile

import pytest
from botocore.stub import Stubber
from django.core.exceptions import ValidationError

import awsclients as aws
from devices import services
from devices.models import Device, DeviceStatus
from devices.services.registration import device_role_policy_document, iot_policy_document

pytestmark = pytest.mark.django_db
REGION, ACCOUNT = "eu-west-1", "123456789012"


def test_registration_creates_thing_certificate_policy_and_role(registered):
    device, bundle = registered
    iot = aws.client("iot")
    assert device.status == DeviceStatus.REGISTERED
    principals = iot.list_thing_principals(thingName=device.thing_name)["principals"]
    assert principals == [device.certificate_arn]
    cert = iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    attached = iot.list_attached_policies(target=device.certificate_arn)["policies"]
    assert [p["policyName"] for p in attached] == [device.policy_name]
    alias = iot.describe_role_alias(roleAlias=device.role_alias)["roleAliasDescription"]
    role = aws.client("iam").get_role(RoleName=device.role_name)["Role"]
    assert alias["roleArn"] == role["Arn"]
    # The bundle: certificate, key, Amazon root CA, endpoint, config with a telemetry token.
    files = bundle.files()
    assert files["certificate.pem.crt"] == cert["certificatePem"]
    assert files["private.pem.key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert files["AmazonRootCA1.pem"].startswith("-----BEGIN CERTIFICATE-----")
    config = json.loads(files["stagepulse.json"])
    assert config["device"] == device.thing_name
    assert config["festival"] == device.festival.slug and config["stage"] == device.stage.slug
    assert config["device_token"].startswith("spd_")
    assert json.loads(files["endpoints.json"])["iot_data"]


def test_private_key_and_token_are_not_kept(registered):
    device, bundle = registered
    row = Device.objects.filter(pk=device.pk).values().get()
    stored = json.dumps(row, default=str)
    key_body = bundle.private_key.splitlines()[1]
    assert key_body not in stored
    token = json.loads(bundle.files()["stagepulse.json"])["device_token"]
    assert token not in stored
    assert services.device_for_token(token) == device  # only its hash is stored


def _allows(document: dict, action: str, resource: str) -> bool:
    for statement in document["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        # IAM/IoT wildcards: '*' matches any run of characters.
        matches = any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources)
        if statement["Effect"] == "Allow" and action in actions and matches:
            return True
    return False


def test_device_role_writes_only_under_its_own_crop_prefix(two_worlds):
    ours, theirs = two_worlds
    device = ours.device
    policy = device_role_policy_document(device, region=REGION, account=ACCOUNT)
    bucket = f"arn:aws:s3:::{device.festival.bucket}"
    own = f"{bucket}/faces/ours-fest/main/ours-cam-1/2026/07/10/18/1783706400000-1.jpg"
    assert _allows(policy, "s3:PutObject", own)
    for other in (
        f"{bucket}/faces/ours-fest/main/ours-cam-2/2026/07/10/18/1-1.jpg",  # sibling camera
        f"{bucket}/faces/ours-fest/bar/ours-cam-1/2026/07/10/18/1-1.jpg",  # other stage
        f"{bucket}/faces/theirs-fest/main/ours-cam-1/2026/07/10/18/1-1.jpg",  # other festival
        f"{bucket}/faces/ours-fest/main/ours-cam-10/x.jpg",  # prefix must end at a '/'
        f"{bucket}/reports/secret.json",
        "arn:aws:s3:::another-bucket/faces/ours-fest/main/ours-cam-1/x.jpg",
    ):
        assert not _allows(policy, "s3:PutObject", other), other
    assert not _allows(policy, "s3:GetObject", own)
    assert not _allows(policy, "s3:DeleteObject", own)


def test_iot_policy_is_scoped_to_the_devices_own_topics(two_worlds):
    device = two_worlds[0].device
    policy = iot_policy_document(device, region="eu-west-1", account="123456789012")
    arn = "arn:aws:iot:eu-west-1:123456789012"
    assert _allows(policy, "iot:Publish", f"{arn}:topic/stagepulse/telemetry/ours-cam-1")
    assert not _allows(policy, "iot:Publish", f"{arn}:topic/stagepulse/telemetry/theirs-cam-1")
    assert _allows(policy, "iot:Connect", f"{arn}:client/ours-cam-1")
    assert not _allows(policy, "iot:Connect", f"{arn}:client/theirs-cam-1")
    assert _allows(policy, "iot:Subscribe", f"{arn}:topicfilter/$aws/things/ours-cam-1/shadow/*")
    assert not _allows(
        policy, "iot:Subscribe", f"{arn}:topicfilter/$aws/things/theirs-cam-1/shadow/*"
    )
    assert not _allows(policy, "iot:Publish", f"{arn}:topic/$aws/things/theirs-cam-1/shadow/x")


def test_a_device_without_a_stage_cannot_register(moto_aws, two_worlds):
    device = two_worlds[0].device
    device.stage = None
    device.save()
    with pytest.raises(ValidationError, match="has no stage"):
        services.register_device(device)
    assert aws.client("iot").list_things()["things"] == []


def test_a_failed_registration_is_undone_and_says_why(moto_aws, two_worlds):
    device = two_worlds[0].device
    iam = aws.client("iam")
    # The device's role name is already taken: IAM refuses at the fifth step.
    iam.create_role(RoleName="stagepulse-dev-cam-ours-cam-1", AssumeRolePolicyDocument="{}")
    with pytest.raises(ValidationError, match="EntityAlreadyExists.*undone|undone.*Entity"):
        services.register_device(device)
    iot = aws.client("iot")
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    device.refresh_from_db()
    assert device.status == DeviceStatus.NEW and not device.certificate_arn


def test_leftovers_of_a_killed_registration_are_cleaned_by_deregister(moto_aws, two_worlds):
    """A process killed mid-registration leaves AWS objects the database never heard of."""
    device = two_worlds[0].device
    iot, iam = aws.client("iot"), aws.client("iam")
    iot.create_thing(thingName=device.thing_name)
    cert = iot.create_keys_and_certificate(setAsActive=True)["certificateArn"]
    iot.attach_thing_principal(thingName=device.thing_name, principal=cert)
    iot.create_policy(policyName="stagepulse-device-ours-cam-1", policyDocument="{}")
    iot.attach_policy(policyName="stagepulse-device-ours-cam-1", target=cert)
    iam.create_role(  # as registration creates it: tagged with the thing
        RoleName="stagepulse-dev-cam-ours-cam-1",
        AssumeRolePolicyDocument="{}",
        Tags=aws.tag_list(device.festival.slug, device.thing_name),
    )
    with pytest.raises(ValidationError, match="run Deregister to clean up"):
        services.register_device(device)
    services.deregister_device(device)
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    services.register_device(device)  # now it goes through


def test_registering_twice_is_refused(registered):
    device, _ = registered
    with pytest.raises(ValidationError, match="already registered"):
        services.register_device(device)


def test_deregistering_revokes_and_deletes_everything(registered):
    device, _ = registered
    role = device.role_name
    services.deregister_device(device)
    iot = aws.client("iot")
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    assert iot.list_role_aliases()["roleAliases"] == []
    assert role not in [r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]]
    device.refresh_from_db()
    assert device.status == DeviceStatus.RETIRED and device.token_hash == ""
    # ... and it can be registered again.
    services.register_device(device)


def test_a_half_done_deregistration_can_be_run_again(registered):
    device, _ = registered
    aws.client("iot").delete_role_alias(roleAlias=device.role_alias)  # already gone
    services.deregister_device(device)
    assert aws.client("iot").list_things()["things"] == []


def test_deregistration_failure_keeps_the_record(registered, monkeypatch):
    device, _ = registered
    iot = aws.client("iot")
    stubber = Stubber(iot)
    stubber.add_client_error("list_thing_principals", "ThrottlingException", "slow down")
    monkeypatch.setattr(aws, "cached_client", lambda name: iot)
    with stubber, pytest.raises(ValidationError, match="ThrottlingException.*run it again"):
        services.deregister_device(device)
    device.refresh_from_db()
    assert device.certificate_arn and device.status == DeviceStatus.REGISTERED


# --- API and admin --------------------------------------------------------------------------------
def test_api_register_returns_the_bundle_once(moto_aws, two_worlds, api_client):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    response = api_client.post(f"/api/v1/devices/{ours.device.pk}/register/")
    assert response.status_code == 201, response.json()
    assert "private.pem.key" in response.json()["files"]
    again = api_client.post(f"/api/v1/devices/{ours.device.pk}/register/")
    assert again.status_code == 400
    assert "already registered" in again.json()["error"]["message"]
    detail = api_client.get(f"/api/v1/devices/{ours.device.pk}/").json()
    assert detail["registered"] is True and detail["status"] == "registered"


def test_viewers_cannot_register_and_other_tenants_get_404(moto_aws, two_worlds, api_client):
    ours, theirs = two_worlds
    api_client.force_authenticate(ours.viewer)
    assert api_client.post(f"/api/v1/devices/{ours.device.pk}/register/").status_code == 403
    api_client.force_authenticate(ours.operator)
    for action in ("register", "deregister", "token"):
        url = f"/api/v1/devices/{theirs.device.pk}/{action}/"
        assert api_client.post(url).status_code == 404
    assert aws.client("iot").list_things()["things"] == []


def test_admin_register_action_downloads_the_bundles(moto_aws, two_worlds, client):
    ours, theirs = two_worlds
    client.force_login(ours.operator)
    response = client.post(
        "/admin/devices/device/",
        {"action": "register", "_selected_action": [ours.device.pk, theirs.device.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "ours-cam-1/private.pem.key" in names
    assert not any(n.startswith("theirs-cam-1/") for n in names)  # not in our scope
    theirs.device.refresh_from_db()
    assert theirs.device.status == DeviceStatus.NEW


def test_deleting_a_registered_device_cleans_up_aws(registered, api_client, two_worlds):
    device, _ = registered
    api_client.force_authenticate(two_worlds[0].operator)
    assert api_client.delete(f"/api/v1/devices/{device.pk}/").status_code == 204
    assert not Device.objects.filter(pk=device.pk).exists()
    assert aws.client("iot").list_things()["things"] == []
    assert aws.client("iot").list_certificates()["certificates"] == []


def test_register_command_writes_a_private_bundle(moto_aws, two_worlds, tmp_path):
    from django.core.management import call_command

    call_command("register_device", "ours-cam-1", str(tmp_path / "bundle"))
    key = tmp_path / "bundle" / "private.pem.key"
    assert key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert key.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert json.loads((tmp_path / "bundle" / "stagepulse.json").read_text())["device_token"]


def test_a_cameras_role_may_read_its_organizations_face_models_only(two_worlds):
    from django.conf import settings

    from devices.services.registration import device_role_policy_document

    ours, theirs = two_worlds
    document = device_role_policy_document(ours.device, region=REGION, account=ACCOUNT)
    wanted = f"arn:aws:s3:::{settings.ARTIFACTS_BUCKET}/face-models/{ours.organization.slug}/*"
    assert any(
        "s3:GetObject" in statement["Action"] and statement["Resource"] == wanted
        for statement in document["Statement"]
    )
    assert not any(
        theirs.organization.slug in statement["Resource"] for statement in document["Statement"]
    )


def test_device_role_reads_edge_releases_and_its_own_shadow_only(two_worlds, settings):
    """Greengrass v2 downloads the release with the device role (token exchange), and the camera
    reads its own shadow; nothing wider."""
    ours, theirs = two_worlds
    policy = device_role_policy_document(ours.device, region=REGION, account=ACCOUNT)
    artifacts = f"arn:aws:s3:::{settings.ARTIFACTS_BUCKET}"
    release = f"{artifacts}/edge-releases/0.3.0/stagepulse-edge.zip"
    assert _allows(policy, "s3:GetObject", release)
    assert _allows(policy, "s3:GetBucketLocation", artifacts)
    for other in (
        f"{artifacts}/face-models/{theirs.organization.slug}/m.tflite",  # another tenant's model
        f"{artifacts}/edge-releases-private/x.zip",  # prefix must end at a '/'
        f"{artifacts}/other/x.zip",
        "arn:aws:s3:::another-bucket/edge-releases/0.3.0/stagepulse-edge.zip",
    ):
        assert not _allows(policy, "s3:GetObject", other), other
    assert not _allows(policy, "s3:PutObject", release)
    assert not _allows(policy, "s3:DeleteObject", release)
    assert not _allows(policy, "s3:GetBucketLocation", "arn:aws:s3:::another-bucket")
    assert not _allows(policy, "s3:ListBucket", artifacts)

    thing = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing"
    assert _allows(policy, "iot:GetThingShadow", f"{thing}/ours-cam-1")
    for other in (
        f"{thing}/theirs-cam-1",
        f"{thing}/ours-cam-10",  # the ARN is exact, not a prefix
        f"{thing}/ours-cam-2",
        f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/ours-cam-1",
        f"arn:aws:iot:{REGION}:999999999999:thing/ours-cam-1",
    ):
        assert not _allows(policy, "iot:GetThingShadow", other), other
    assert not _allows(policy, "iot:UpdateThingShadow", f"{thing}/ours-cam-1")
    assert not _allows(policy, "iot:DeleteThingShadow", f"{thing}/ours-cam-1")
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        assert "*" not in (resources if isinstance(resources, list) else [resources])


def test_the_registered_roles_policy_names_the_accounts_own_thing(registered):
    device, _ = registered
    document = aws.client("iam").get_role_policy(
        RoleName=device.role_name, PolicyName="own-prefix"
    )["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    shadow = [s for s in document["Statement"] if s.get("Sid") == "OwnThingShadowReadOnly"]
    assert shadow[0]["Resource"] == f"arn:aws:iot:{aws.region()}:{ACCOUNT}:thing/ours-cam-1"
