"""Registering a camera in AWS IoT: thing, key pair and certificate, a policy scoped to the
device's own topics, and an IAM role (reached through the IoT credentials provider's role alias)
that may only write under the device's own crop prefix.

The credentials bundle is returned once; the private key is never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import certifi
from botocore.exceptions import ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

import awsclients as aws
from devices.models import Device, DeviceStatus
from devices.services.tokens import issue_device_token
from edge_package.contracts import OBSERVATION_ATTRIBUTES
from festival.errors import AwsUnreachable

log = logging.getLogger(__name__)


TELEMETRY_TOPIC = "stagepulse/telemetry/{thing}"
CREDENTIALS_PROVIDER = "credentials.iot.amazonaws.com"


@dataclass(frozen=True)
class CredentialsBundle:
    """What a device needs to connect; offered for download once."""

    thing_name: str
    certificate_pem: str
    private_key: str
    root_ca: str
    endpoint: str
    credentials_endpoint: str
    device_config: dict

    def files(self) -> dict[str, str]:
        return {
            "certificate.pem.crt": self.certificate_pem,
            "private.pem.key": self.private_key,
            "AmazonRootCA1.pem": self.root_ca,
            "stagepulse.json": json.dumps(self.device_config, indent=2, sort_keys=True) + "\n",
            "endpoints.json": json.dumps(
                {"iot_data": self.endpoint, "credentials_provider": self.credentials_endpoint},
                indent=2,
            )
            + "\n",
        }


def _bounded(prefix: str, thing: str, limit: int) -> str:
    """prefix + thing within AWS's name length limit; a thing name too long for it is cut and
    given a hash of the whole name, so two long names sharing a start never collide."""
    name = prefix + thing
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(thing.encode()).hexdigest()[:10]
    return f"{prefix}{thing[: limit - len(prefix) - 11]}-{digest}"


# The stack's own roles are stagepulse-<env>-device, -analyzer and -telemetry-rule: a camera's
# role is stagepulse-<env>-cam-<thing>, so no thing name can give a stack role's name, and two
# environments in one account never share a camera role.
CAMERA_ROLE_INFIX = "cam-"
ROLE_POLICY_NAME = "own-prefix"


def role_prefix() -> str:
    return f"stagepulse-{settings.STAGEPULSE_ENV}-{CAMERA_ROLE_INFIX}"


def _names(device: Device) -> dict[str, str]:
    thing = device.thing_name
    return {
        # IoT policy names and role aliases: 128 characters at most; IAM role names: 64.
        "policy": _bounded("stagepulse-device-", thing, 128),
        "role": _bounded(role_prefix(), thing, 64),
        "role_alias": _bounded("stagepulse-device-", thing, 128),
    }


def permissions_boundary_arn(account: str) -> str:
    """The managed policy the stack creates as the ceiling of every camera role
    (DeviceRoleBoundary); the service's own policy lets it create roles only with it."""
    return settings.DEVICE_ROLE_BOUNDARY_ARN or aws.arn(
        "iam", f"policy/stagepulse-{settings.STAGEPULSE_ENV}-device-boundary", account=account
    )


def amazon_root_ca() -> str:
    """Amazon Root CA 1 (the IoT ATS endpoint's root), read from certifi's bundle."""
    with open(certifi.where(), encoding="ascii") as handle:
        text = handle.read()
    start = text.index('# Label: "Amazon Root CA 1"')
    begin = text.index("-----BEGIN CERTIFICATE-----", start)
    end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return text[begin:end] + "\n"


def iot_policy_document(device: Device, *, region: str, account: str) -> dict:
    """MQTT rights for this thing only: its client id, telemetry topic, shadow, Greengrass v2 core
    topics, and the role alias of its own S3 role."""
    thing = device.thing_name
    arn = aws.arn("iot", "", region_name=region, account=account).rstrip(":")
    names = _names(device)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                # only a certificate attached to this thing may connect as it
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/{thing}*",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [
                    f"{arn}:topic/{TELEMETRY_TOPIC.format(thing=thing)}",
                    f"{arn}:topic/$aws/things/{thing}/shadow/*",
                    f"{arn}:topic/$aws/things/{thing}/jobs/*",
                    f"{arn}:topic/$aws/things/{thing}/greengrass/*",
                    f"{arn}:topic/$aws/things/{thing}/greengrassv2/*",
                ],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [
                    f"{arn}:topicfilter/$aws/things/{thing}/shadow/*",
                    f"{arn}:topicfilter/$aws/things/{thing}/jobs/*",
                    f"{arn}:topicfilter/$aws/things/{thing}/greengrass/*",
                    f"{arn}:topicfilter/$aws/things/{thing}/greengrassv2/*",
                ],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": [
                    f"{arn}:topic/$aws/things/{thing}/shadow/*",
                    f"{arn}:topic/$aws/things/{thing}/jobs/*",
                    f"{arn}:topic/$aws/things/{thing}/greengrass/*",
                    f"{arn}:topic/$aws/things/{thing}/greengrassv2/*",
                ],
            },
            {
                "Effect": "Allow",
                "Action": ["iot:GetThingShadow", "iot:UpdateThingShadow"],
                "Resource": f"{arn}:thing/{thing}",
            },
            {
                "Effect": "Allow",
                "Action": "iot:AssumeRoleWithCertificate",
                "Resource": f"{arn}:rolealias/{names['role_alias']}",
            },
            {
                # Greengrass v2 nucleus calls; AWS scopes them by the certificate, not by ARN.
                "Effect": "Allow",
                "Action": [
                    "greengrass:GetComponentVersionArtifact",
                    "greengrass:ResolveComponentCandidates",
                    "greengrass:GetDeploymentConfiguration",
                ],
                "Resource": "*",
            },
        ],
    }


def device_role_policy_document(device: Device, *, region: str, account: str) -> dict:
    """What the device's temporary credentials may do: write crops under its own prefix only,
    read its organization's rolled-out face models, (edge mode) write observation items of its
    own stage only, read the edge releases Greengrass v2 downloads with these credentials, and
    read its own thing's shadow (where pause and config changes arrive)."""
    festival = device.festival
    artifacts = aws.arn("s3", settings.ARTIFACTS_BUCKET)
    statements = [
        {
            "Sid": "OwnCropPrefixOnly",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": aws.arn("s3", f"{festival.bucket}/{device.crop_prefix}*"),
        },
        {
            # face models rolled out to cameras (detectors/): its own organization's only
            "Sid": "OwnOrganizationFaceModelsReadOnly",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": f"{artifacts}/face-models/{device.organization.slug}/*",
        },
        {
            # Greengrass v2 fetches component artifacts with the token exchange role; without
            # these every deployment fails with AccessDenied. Releases carry no tenant data.
            "Sid": "EdgeReleaseArtifactsReadOnly",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": f"{artifacts}/edge-releases/*",
        },
        {
            "Sid": "ArtifactsBucketLocation",
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation"],
            "Resource": artifacts,
        },
        {
            # Greengrass v2 and DeepLens cameras poll it (edge_package/shadow.py); read only.
            "Sid": "OwnThingShadowReadOnly",
            "Effect": "Allow",
            "Action": ["iot:GetThingShadow"],
            "Resource": aws.arn(
                "iot", f"thing/{device.thing_name}", region_name=region, account=account
            ),
        },
        {
            # DynamoDB conditions reach the partition key and attribute names, not the sort key or
            # values: a camera writes only its own stage's partition, only the attributes an
            # observation has, and can never read an item back (ReturnValues NONE). That the
            # item's device is this camera is checked by the ingest (wrong_device).
            "Sid": "OwnStageObservationsOnly",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem"],
            "Resource": aws.arn(
                "dynamodb", f"table/{festival.table}", region_name=region, account=account
            ),
            "Condition": {
                "ForAllValues:StringEquals": {
                    "dynamodb:LeadingKeys": [f"{festival.slug}/{device.stage.slug}"],
                    "dynamodb:Attributes": list(OBSERVATION_ATTRIBUTES),
                },
                "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
            },
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def credentials_trust_policy(account: str) -> dict:
    """Only the IoT credentials provider (and Greengrass) acting for this account may assume the
    role: aws:SourceAccount stops a confused deputy in another account."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": [CREDENTIALS_PROVIDER, "greengrass.amazonaws.com"]},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            }
        ],
    }


def _account_id() -> str:
    return aws.cached_client("sts").get_caller_identity()["Account"]


def device_config(device: Device, *, token: str = "") -> dict:
    """The flat edge configuration (edge_package.config) for this device."""
    festival = device.festival
    config = {
        "device": device.thing_name,
        "festival": festival.slug,
        "stage": device.stage.slug if device.stage_id else "",
        "organization": device.organization.slug,
        "bucket": festival.bucket,
        "observations_table": festival.table,
        "region": aws.region(),
        **device.effective_config,
    }
    if settings.STAGEPULSE_PUBLIC_URL:
        config["service_url"] = settings.STAGEPULSE_PUBLIC_URL
    if token:
        config["device_token"] = token
    return config


def register_device(device: Device) -> CredentialsBundle:
    """Create the thing, certificate, policy and S3 role; return the bundle (once).

    Any AWS failure undoes what this call created and raises ValidationError with the reason
    (AwsUnreachable when AWS did not answer); the device stays unregistered. What an interrupted
    attempt could not undo is removed by the next one before it starts.
    """
    if device.status not in (DeviceStatus.NEW, DeviceStatus.RETIRED):
        raise ValidationError(
            f"{device.thing_name} is already registered; deregister it first to issue new "
            "credentials."
        )
    if not device.stage_id:
        raise ValidationError(
            f"{device.thing_name} has no stage: choose its stage first (the stage is part of the "
            "S3 prefix it may write to)."
        )
    iot, iam = aws.cached_client("iot"), aws.cached_client("iam")
    names = _names(device)
    undo: list = []
    try:
        _clean_up_an_interrupted_registration(iot, iam, device)
        iot.create_thing(
            thingName=device.thing_name,
            attributePayload={
                "attributes": {
                    "festival": device.festival.slug,
                    "stage": device.stage.slug,
                    "organization": device.organization.slug,
                }
            },
        )
        undo.append(lambda: iot.delete_thing(thingName=device.thing_name))
        keys = iot.create_keys_and_certificate(setAsActive=True)
        cert_arn, cert_id = keys["certificateArn"], keys["certificateId"]
        undo.append(lambda: _delete_certificate(iot, cert_arn, cert_id, device.thing_name))
        # Attached at once: a registration killed after this leaves a certificate that the
        # thing (found by its festival attribute) still leads to, so closeout can remove it.
        iot.attach_thing_principal(thingName=device.thing_name, principal=cert_arn)
        tags = aws.tag_list(device.festival.slug, device.thing_name)
        account = _account_id()
        iot.create_policy(
            policyName=names["policy"],
            policyDocument=json.dumps(
                iot_policy_document(device, region=aws.region(), account=account)
            ),
            tags=tags,
        )
        undo.append(lambda: _delete_policy(iot, names["policy"], cert_arn))
        iot.attach_policy(policyName=names["policy"], target=cert_arn)
        role = iam.create_role(
            RoleName=names["role"],
            AssumeRolePolicyDocument=json.dumps(credentials_trust_policy(account)),
            Description=f"StagePulse camera {device.thing_name}: own crop prefix only",
            PermissionsBoundary=permissions_boundary_arn(account),
            Tags=tags,
        )["Role"]
        undo.append(lambda: _delete_role(iam, names["role"]))
        iam.put_role_policy(
            RoleName=names["role"],
            PolicyName=ROLE_POLICY_NAME,
            PolicyDocument=json.dumps(
                device_role_policy_document(device, region=aws.region(), account=account)
            ),
        )
        iot.create_role_alias(
            roleAlias=names["role_alias"],
            roleArn=role["Arn"],
            credentialDurationSeconds=3600,
            tags=tags,
        )
        undo.append(lambda: iot.delete_role_alias(roleAlias=names["role_alias"]))
        endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        credentials_endpoint = iot.describe_endpoint(endpointType="iot:CredentialProvider")[
            "endpointAddress"
        ]
    except aws.UNREACHABLE as exc:
        left_behind = _undo(undo)
        outcome = (
            "some of what it had created could not be removed yet; registering again removes "
            "it first"
            if left_behind
            else "what it had created was undone"
        )
        raise AwsUnreachable(
            f"AWS stopped answering ({type(exc).__name__}) while registering "
            f"{device.thing_name}: it is not registered, and {outcome}. Try again when AWS "
            "answers."
        ) from exc
    except ClientError as exc:
        _undo(undo)
        error = exc.response.get("Error", {})
        code = error.get("Code", "Error")
        hint = (
            " A previous registration left it behind: run Deregister to clean up, then register "
            "again."
            if code in ("EntityAlreadyExists", "ResourceAlreadyExistsException")
            else ""
        )
        raise ValidationError(
            f"AWS IoT registration of {device.thing_name} failed and was undone: "
            f"{code}: {error.get('Message', exc)}.{hint}"
        ) from exc

    token = issue_device_token(device, save=False)
    device.certificate_arn = cert_arn
    device.certificate_id = cert_id
    device.policy_name = names["policy"]
    device.role_name = names["role"]
    device.role_alias = names["role_alias"]
    device.registered_at = timezone.now()
    device.status = DeviceStatus.REGISTERED
    device.save()
    return CredentialsBundle(
        thing_name=device.thing_name,
        certificate_pem=keys["certificatePem"],
        private_key=keys["keyPair"]["PrivateKey"],
        root_ca=amazon_root_ca(),
        endpoint=endpoint,
        credentials_endpoint=credentials_endpoint,
        device_config=device_config(device, token=token),
    )


def _undo(steps: list) -> int:
    """Run the undo steps newest first, each even if one before was refused; returns how many
    were not undone (their objects stay in AWS, named after the device, for the next registration
    to remove). Once AWS does not answer, the rest are not tried: each call would spend the
    client's whole retry budget first, and the request would time out instead of answering."""
    refused = 0
    for done, step in enumerate(reversed(steps)):
        try:
            step()
        except aws.UNREACHABLE as cleanup:
            log.warning("cleanup after failed registration stopped: %s", cleanup)
            return refused + len(steps) - done
        except ClientError as cleanup:  # keep undoing; report the original problem
            refused += 1
            log.warning("cleanup after failed registration: %s", cleanup)
    return refused


def _clean_up_an_interrupted_registration(iot, iam, device: Device) -> None:
    """A registration that AWS stopped answering (or a killed process) may have left a thing
    tagged with this device's organization and festival: remove it, and everything named after
    the device, before starting again. A thing of that name that registration did not create is
    left alone (create_thing then refuses and the error says what to do)."""
    try:
        attributes = iot.describe_thing(thingName=device.thing_name).get("attributes", {})
    except ClientError as exc:
        if aws.error_code(exc) == "ResourceNotFoundException":
            return
        raise
    ours = {"organization": device.organization.slug, "festival": device.festival.slug}
    if all(attributes.get(key) == value for key, value in ours.items()):
        log.info("removing what an interrupted registration of %s left", device.thing_name)
        _remove_from_aws(iot, iam, device)


def _delete_certificate(iot, cert_arn: str, cert_id: str, thing_name: str) -> None:
    _ignore_missing(lambda: iot.detach_thing_principal(thingName=thing_name, principal=cert_arn))
    try:
        attached = iot.list_attached_policies(target=cert_arn).get("policies", [])
    except ClientError as exc:
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise
        attached = []
    for policy in attached:
        name = policy["policyName"]
        _ignore_missing(lambda name=name: iot.detach_policy(policyName=name, target=cert_arn))
    _ignore_missing(lambda: iot.update_certificate(certificateId=cert_id, newStatus="REVOKED"))
    _ignore_missing(lambda: iot.delete_certificate(certificateId=cert_id, forceDelete=True))


def _delete_policy(iot, policy_name: str, cert_arn: str) -> None:
    _ignore_missing(lambda: iot.detach_policy(policyName=policy_name, target=cert_arn))
    _ignore_missing(lambda: iot.delete_policy(policyName=policy_name))


def _role_is_the_devices(iam, role: dict, thing_name: str) -> bool:
    """Registration tags a camera role with its thing (older ones: by their description)."""
    listed = role.get("Tags")
    if listed is None:  # GetRole returns tags; ListRoleTags where an endpoint leaves them out
        listed = iam.list_role_tags(RoleName=role["RoleName"]).get("Tags", [])
    tags = {t["Key"]: t["Value"] for t in listed}
    if aws.THING_TAG in tags:
        return tags[aws.THING_TAG] == thing_name
    return (role.get("Description") or "").startswith(f"StagePulse camera {thing_name}:")


def _delete_role(iam, role_name: str, thing_name: str = "") -> None:
    """Delete a camera role the way IAM requires (inline policies, managed policies, instance
    profiles first), so a retry never loops on DeleteConflict. With thing_name, a role of that
    name that is not this camera's (a stack role, another environment's) is left alone."""
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except ClientError as exc:
        if aws.error_code(exc) in ("NoSuchEntity", "NoSuchEntityException"):
            return
        raise
    if thing_name and not _role_is_the_devices(iam, role, thing_name):
        log.warning("role %s is not %s's camera role; left alone", role_name, thing_name)
        return
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for name in page["PolicyNames"]:
            _ignore_missing(lambda n=name: iam.delete_role_policy(RoleName=role_name, PolicyName=n))
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        for policy in page["AttachedPolicies"]:
            arn = policy["PolicyArn"]
            _ignore_missing(lambda a=arn: iam.detach_role_policy(RoleName=role_name, PolicyArn=a))
    profiles = iam.list_instance_profiles_for_role(RoleName=role_name)["InstanceProfiles"]
    for profile in profiles:
        name = profile["InstanceProfileName"]
        _ignore_missing(
            lambda n=name: iam.remove_role_from_instance_profile(
                InstanceProfileName=n, RoleName=role_name
            )
        )
    _ignore_missing(lambda: iam.delete_role(RoleName=role_name))


def _ignore_missing(call) -> None:
    try:
        call()
    except ClientError as exc:
        code = aws.error_code(exc)
        if code not in ("ResourceNotFoundException", "NoSuchEntity", "NoSuchEntityException"):
            raise


def deregister_device(device: Device) -> None:
    """Revoke and delete the certificate, policy, role, role alias and thing. Parts already gone are
    skipped, and parts named after the device are found even when the database never learnt of
    them (a registration killed mid-way), so running it again always converges."""
    iot, iam = aws.cached_client("iot"), aws.cached_client("iam")
    try:
        _remove_from_aws(iot, iam, device)
    except aws.UNREACHABLE as exc:
        raise AwsUnreachable(
            f"AWS cannot be reached ({type(exc).__name__}); deregistering {device.thing_name} "
            "stopped and its record is kept as it was. Nothing was lost; run it again when AWS "
            "answers."
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ValidationError(
            f"Deregistering {device.thing_name} stopped at {error.get('Code')}: "
            f"{error.get('Message')}. Nothing was lost; run it again."
        ) from exc
    device.certificate_arn = device.certificate_id = device.policy_name = ""
    device.role_name = device.role_alias = device.token_hash = ""
    device.registered_at = None
    device.status = DeviceStatus.RETIRED
    device.save()


def _remove_from_aws(iot, iam, device: Device) -> None:
    """Everything registration creates for the device, found by the database's names or, when it
    never learnt them, by the names registration gives; parts already gone are skipped."""
    names = _names(device)
    try:
        principals = iot.list_thing_principals(thingName=device.thing_name)["principals"]
    except ClientError as exc:
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise
        principals = []
    certificates = {arn for arn in [*principals, device.certificate_arn] if arn}
    for arn in sorted(certificates):
        _delete_certificate(iot, arn, arn.rsplit("/", 1)[-1], device.thing_name)
    policy = device.policy_name or names["policy"]
    _ignore_missing(lambda: iot.delete_policy(policyName=policy))
    alias = device.role_alias or names["role_alias"]
    _ignore_missing(lambda: iot.delete_role_alias(roleAlias=alias))
    for role_name in dict.fromkeys(r for r in (device.role_name, names["role"]) if r):
        _delete_role(iam, role_name, device.thing_name)
    _ignore_missing(lambda: iot.delete_thing(thingName=device.thing_name))


def delete_device(device: Device) -> None:
    """Delete a device, deregistering it from AWS first so nothing is left behind there. If AWS
    refuses, the device is kept (ValidationError says why)."""
    if device.registered_at or device.certificate_arn:
        deregister_device(device)
    device.delete()


def update_device_role_policy(device: Device) -> None:
    """Rewrite the role's policy (after a stage change, or to give an existing device the
    statements of a newer release)."""
    if device.role_name and device.stage_id:
        # arn:aws:iot:<region>:<account>:cert/<id> names where the thing lives.
        parts = device.certificate_arn.split(":")
        region, account = (parts[3], parts[4]) if len(parts) > 5 else (aws.region(), _account_id())
        aws.cached_client("iam").put_role_policy(
            RoleName=device.role_name,
            PolicyName=ROLE_POLICY_NAME,
            PolicyDocument=json.dumps(
                device_role_policy_document(device, region=region, account=account)
            ),
        )
