"""What a first real deployment needs from registration: role names that cannot collide with the
stack's own roles, deregistration that converges where IAM answers DeleteConflict, a permissions
boundary on every camera role, confused-deputy and attachment conditions, and ARNs in the
region's partition. moto keeps roles, tags and boundaries and refuses to delete a role that still
has policies (as IAM does), so these run against moto."""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

import awsclients as aws
from devices import services
from devices.models import DeviceStatus
from devices.services.registration import (
    _names,
    device_role_policy_document,
    iot_policy_document,
)
from edge_package.contracts import OBSERVATION_ATTRIBUTES

pytestmark = pytest.mark.django_db
ACCOUNT = "123456789012"
STACK_ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}],
}


def _stack_role(iam, name: str) -> None:
    """A role as the stack creates it (DeviceRole: an inline policy, no thing tag)."""
    iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    iam.put_role_policy(
        RoleName=name, PolicyName="upload-own-crops", PolicyDocument=json.dumps(STACK_ROLE_POLICY)
    )


def test_a_camera_named_device_never_gets_the_stacks_role_name(moto_aws, two_worlds, settings):
    """Thing "device" in environment dev used to be role stagepulse-dev-device: the stack's."""
    device = two_worlds[0].device
    device.thing_name = "device"
    device.save()
    iam = aws.client("iam")
    _stack_role(iam, "stagepulse-dev-device")
    services.register_device(device)
    device.refresh_from_db()
    assert device.role_name == "stagepulse-dev-cam-device"
    settings.STAGEPULSE_ENV = "production"
    assert _names(device)["role"] == "stagepulse-production-cam-device"  # envs never share one
    settings.STAGEPULSE_ENV = "dev"
    services.deregister_device(device)
    # The stack's role is untouched; the camera's is gone.
    assert iam.get_role_policy(RoleName="stagepulse-dev-device", PolicyName="upload-own-crops")
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"].endswith("cam-device")]


def test_deregistration_converges_when_a_role_is_not_the_cameras(moto_aws, two_worlds):
    """A device row pointing at a role that is not its camera role (the collision of older
    names) made every Deregister stop at DeleteConflict; now it leaves that role alone."""
    device = two_worlds[0].device
    services.register_device(device)
    device.refresh_from_db()
    iam = aws.client("iam")
    _stack_role(iam, "stagepulse-dev-device")
    device.role_name = "stagepulse-dev-device"
    device.save()
    services.deregister_device(device)  # no ValidationError
    device.refresh_from_db()
    assert device.status == DeviceStatus.RETIRED
    assert iam.get_role(RoleName="stagepulse-dev-device")  # not ours: kept
    assert not [r for r in iam.list_roles()["Roles"] if "cam-ours-cam-1" in r["RoleName"]]


def test_deregistration_removes_whatever_policies_the_camera_role_gained(moto_aws, two_worlds):
    """IAM refuses DeleteRole while any policy is attached (DeleteConflict): all are removed."""
    device = two_worlds[0].device
    services.register_device(device)
    device.refresh_from_db()
    iam = aws.client("iam")
    iam.put_role_policy(
        RoleName=device.role_name, PolicyName="debug", PolicyDocument=json.dumps(STACK_ROLE_POLICY)
    )
    managed = iam.create_policy(PolicyName="extra", PolicyDocument=json.dumps(STACK_ROLE_POLICY))
    iam.attach_role_policy(RoleName=device.role_name, PolicyArn=managed["Policy"]["Arn"])
    services.deregister_device(device)
    assert not [r for r in iam.list_roles()["Roles"] if "cam-ours-cam-1" in r["RoleName"]]


def test_camera_roles_have_the_boundary_and_trust_only_this_account(moto_aws, two_worlds):
    device = two_worlds[0].device
    services.register_device(device)
    device.refresh_from_db()
    role = aws.client("iam").get_role(RoleName=device.role_name)["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == (
        f"arn:aws:iam::{ACCOUNT}:policy/stagepulse-dev-device-boundary"
    )
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_connect_needs_the_certificate_attached_to_the_thing(two_worlds):
    device = two_worlds[0].device
    document = iot_policy_document(device, region="eu-west-1", account=ACCOUNT)
    (connect,) = [s for s in document["Statement"] if s["Action"] == "iot:Connect"]
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}


def test_a_camera_writes_only_observation_attributes_and_never_reads_back(two_worlds):
    device = two_worlds[0].device
    document = device_role_policy_document(device, region="eu-west-1", account=ACCOUNT)
    (put,) = [s for s in document["Statement"] if s["Sid"] == "OwnStageObservationsOnly"]
    assert put["Resource"] == f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/{device.festival.table}"
    only = put["Condition"]["ForAllValues:StringEquals"]
    assert only["dynamodb:LeadingKeys"] == [f"{device.festival.slug}/{device.stage.slug}"]
    assert set(only["dynamodb:Attributes"]) == set(OBSERVATION_ATTRIBUTES)
    assert put["Condition"]["StringEqualsIfExists"] == {"dynamodb:ReturnValues": "NONE"}


@pytest.mark.parametrize(
    "region, partition", [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]
)
def test_arns_follow_the_partition(two_worlds, monkeypatch, region, partition):
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    device = two_worlds[0].device
    documents = [
        iot_policy_document(device, region=region, account=ACCOUNT),
        device_role_policy_document(device, region=region, account=ACCOUNT),
    ]
    resources = []
    for document in documents:
        for statement in document["Statement"]:
            value = statement["Resource"]
            resources += value if isinstance(value, list) else [value]
    arns = [r for r in resources if r != "*"]
    assert arns and all(r.startswith(f"arn:{partition}:") for r in arns), arns


def test_a_missing_boundary_is_a_clear_refusal_and_undone(moto_aws, two_worlds):
    """IAM answers NoSuchEntity when the boundary policy does not exist (moto accepts any ARN):
    registration is undone and says so."""
    from django.core.exceptions import ValidationError

    device = two_worlds[0].device
    iam = aws.cached_client("iam")
    with Stubber(iam) as stub:
        stub.add_client_error(
            "create_role",
            "NoSuchEntity",
            "Scope ARN: arn:aws:iam::123456789012:policy/stagepulse-dev-device-boundary does not "
            "exist or is not attachable.",
            404,
        )
        with pytest.raises(ValidationError, match="NoSuchEntity.*boundary"):
            services.register_device(device)
    assert aws.client("iot").list_things()["things"] == []


def test_every_grant_of_a_camera_role_lies_within_the_stacks_boundary(two_worlds, settings):
    """IAM intersects the inline policy with the boundary: a grant outside it would silently
    stop working on AWS (moto does not evaluate boundaries), so each one is checked here."""
    import fnmatch

    from infra import cfn_template, embedded

    device = two_worlds[0].device
    template = cfn_template.load_template()
    params = {
        "ArtifactsBucketName": settings.ARTIFACTS_BUCKET,
        "ObservationsTableName": device.festival.table,
    }
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": ACCOUNT}
    resolver = embedded.Resolver(template, params, {}, pseudo, None)
    boundary = resolver.value(
        template["Resources"]["DeviceRoleBoundary"]["Properties"]["PolicyDocument"]
    )["Statement"]

    def within(action: str, resource: str) -> bool:
        for statement in boundary:
            actions = statement["Action"]
            resources = statement["Resource"]
            if action in ([actions] if isinstance(actions, str) else actions) and any(
                fnmatch.fnmatchcase(resource, pattern)
                for pattern in ([resources] if isinstance(resources, str) else resources)
            ):
                return True
        return False

    document = device_role_policy_document(device, region="eu-west-1", account=ACCOUNT)
    outside = [
        (action, resource)
        for statement in document["Statement"]
        for action in statement["Action"]
        for resource in (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        if not within(action, resource)
    ]
    assert outside == []
