"""Rules written once (issue 13, "one rule, one place"): each is checked through every door that
uses it, so a copy that drifts (or a door that skips the rule) fails here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from django.core.exceptions import ValidationError
from django.urls import reverse

import awsclients as aws
from edge_package import contracts
from festival.api_common import error_handler
from festival.errors import AwsUnreachable
from festival.models import Festival, Invitation
from operations.services import update_festival

ENDS_BEFORE = "The festival cannot end before it starts."


# --- "a festival ends after it starts" ------------------------------------------------------------
@pytest.mark.django_db
def test_a_festival_ending_before_it_starts_is_refused_by_admin_api_and_service(
    client, api_client, two_worlds
):
    ours, _ = two_worlds
    festival = ours.festival
    starts, ends = festival.starts_on, festival.ends_on
    too_early = starts - timedelta(days=1)

    api_client.force_authenticate(ours.owner)
    answer = api_client.patch(
        f"/api/v1/festivals/{festival.pk}/", {"ends_on": too_early.isoformat()}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"] == {"ends_on": [ENDS_BEFORE]}

    client.force_login(ours.owner)
    page = client.get(reverse("admin:festival_festival_change", args=[festival.pk]))
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(ends_on=too_early.isoformat(), starts_on=starts.isoformat())
    refused = client.post(reverse("admin:festival_festival_change", args=[festival.pk]), data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["ends_on"] == [ENDS_BEFORE]

    with pytest.raises(ValidationError) as caught:
        update_festival(Festival.objects.get(pk=festival.pk), ends_on=too_early)
    assert caught.value.message_dict == {"ends_on": [ENDS_BEFORE]}
    assert Festival.objects.get(pk=festival.pk).ends_on == ends  # nothing was saved

    one_day = update_festival(Festival.objects.get(pk=festival.pk), ends_on=starts)
    assert one_day.ends_on == one_day.starts_on  # a one-day festival is fine


# --- the API's error handler answers what services raise ------------------------------------------
def _answer(exc):
    response = error_handler(exc, {})
    return response.status_code, response.data["error"]


def test_a_service_refusal_without_a_field_is_a_400_naming_no_field():
    status, body = _answer(ValidationError("Nothing to roll back."))
    assert status == 400
    assert body == {
        "status": 400,
        "code": "invalid",
        "message": "Nothing to roll back.",
        "fields": {"non_field_errors": ["Nothing to roll back."]},
    }


def test_a_service_refusal_of_a_field_is_a_400_on_that_field():
    status, body = _answer(ValidationError({"name": ["Taken."]}))
    assert status == 400
    assert body["fields"] == {"name": ["Taken."]} and body["message"] == "name: Taken."


def test_aws_not_answering_a_service_is_a_503():
    status, body = _answer(AwsUnreachable("AWS IoT did not answer; nothing was created."))
    assert status == 503
    assert body["code"] == "aws_unavailable"
    assert body["message"] == "AWS IoT did not answer; nothing was created."


# --- the AWS error code -------------------------------------------------------------------------
@pytest.mark.parametrize("read", [aws.error_code, contracts.aws_error_code], ids=["server", "edge"])
def test_the_error_code_of_an_aws_refusal(read):
    refusal = ClientError({"Error": {"Code": "NoSuchBucket", "Message": "gone"}}, "HeadBucket")
    assert read(refusal) == "NoSuchBucket"
    assert read(ClientError({"Error": {}}, "HeadBucket")) == ""
    assert read(ClientError({}, "HeadBucket")) == ""
    assert read(EndpointConnectionError(endpoint_url="http://x")) == ""
    assert read(ValueError("not AWS")) == ""


# --- the idempotent observation write -----------------------------------------------------------
ITEM = {"pk": "fest/main", "sk": "0000000000001#cam#1#0", "emotions": {"HAPPY": 91.5}}


def _dynamodb():
    import boto3

    return boto3.client("dynamodb", region_name="eu-west-1")


def test_an_observation_is_written_once_and_a_replay_writes_nothing():
    client = _dynamodb()
    expected = {
        "TableName": "observations",
        "Item": {
            "pk": {"S": "fest/main"},
            "sk": {"S": "0000000000001#cam#1#0"},
            "emotions": {"M": {"HAPPY": {"N": "91.5"}}},
        },
        "ConditionExpression": "attribute_not_exists(pk)",
    }
    with Stubber(client) as stub:
        stub.add_response("put_item", {}, expected)
        stub.add_client_error(
            "put_item", "ConditionalCheckFailedException", "exists", 400, expected
        )
        assert contracts.put_observation(client, "observations", ITEM) is True
        assert contracts.put_observation(client, "observations", ITEM) is False
        stub.assert_no_pending_responses()


def test_an_observation_write_that_fails_otherwise_is_raised_for_the_caller():
    client = _dynamodb()
    with Stubber(client) as stub:
        stub.add_client_error("put_item", "ProvisionedThroughputExceededException", "slow", 400)
        with pytest.raises(ClientError) as caught:
            contracts.put_observation(client, "observations", ITEM)
    assert aws.error_code(caught.value) == "ProvisionedThroughputExceededException"


def test_the_analyzer_and_the_camera_write_through_the_same_function():
    """Neither keeps a PutItem of its own (the edge sink and the analyzer once each had one)."""
    import inspect

    from analyzer import analyzer
    from edge_package import sinks

    for module in (sinks, analyzer):
        source = inspect.getsource(module)
        assert "put_observation(" in source, module.__name__
        assert "put_item(" not in source, module.__name__


# --- memberships: finding a user and "already a member" ----------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("how", ["username", "email"])
def test_inviting_a_member_is_refused_alike_by_the_api_and_the_admin(
    client, api_client, two_worlds, how
):
    ours, _ = two_worlds
    member = ours.viewer
    invitee = member.username if how == "username" else member.email.upper()  # e-mail: any case
    expected = [f"{invitee} is already a member."]

    api_client.force_authenticate(ours.owner)
    answer = api_client.post(
        "/api/v1/invitations/",
        {"invitee": invitee, "role": "operator", "organization": ours.organization.slug},
        format="json",
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"]["invitee"] == expected

    client.force_login(ours.owner)
    page = client.post(
        reverse("admin:festival_invitation_add"),
        {"organization": ours.organization.pk, "invitee": invitee, "role": "operator"},
    )
    assert page.status_code == 200
    assert page.context["adminform"].form.errors["invitee"] == expected
    assert not Invitation.objects.exists()
