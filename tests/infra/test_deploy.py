"""The stack deployed into moto behaves as the service and the analyzer expect."""

import json

import pytest
from botocore.exceptions import ClientError

import awsclients as aws
from infra import cfn_template, deploy, errors, stacks, teardown
from tests.infra.conftest import NAMES

CROP_KEY = "faces/pulse-2026/main/cam-1/2026/01/01/00/1767225600000-1.jpg"


def queue_messages(url: str) -> list[dict]:
    sqs = aws.client("sqs")
    bodies = []
    for _ in range(3):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        bodies += [json.loads(m["Body"]) for m in got.get("Messages", [])]
    return [b for b in bodies if b.get("Event") != "s3:TestEvent"]  # S3 sends one on setup


def test_outputs_name_everything_the_service_needs(stack):
    assert stack.action == "created" and stack.status == "CREATE_COMPLETE"
    env = cfn_template.service_env(stack.outputs)
    assert env["CROPS_BUCKET"] == NAMES["CropsBucketName"]
    assert env["ARTIFACTS_BUCKET"] == NAMES["ArtifactsBucketName"]
    assert env["OBSERVATIONS_TABLE"] == env["STAGEPULSE_OBSERVATIONS_TABLE"] == "test-observations"
    assert env["ANALYSIS_QUEUE_NAME"] == "test-analysis"
    assert env["STAGEPULSE_ANALYZER_QUEUE_URL"].endswith("/test-analysis")
    assert stack.outputs["DeviceRoleArn"].endswith(":role/stagepulse-test-device")
    # Embedded: no Lambda and no IoT rule in moto, by condition.
    assert "AnalyzerFunctionArn" not in stack.outputs
    assert "TelemetryRuleName" not in stack.outputs


def test_a_crop_upload_lands_in_the_analysis_queue(stack):
    s3 = aws.client("s3")
    s3.put_object(Bucket="test-crops", Key=CROP_KEY, Body=b"\xff\xd8jpeg")
    s3.put_object(Bucket="test-crops", Key="other/readme.txt", Body=b"not a crop")
    messages = queue_messages(stack.outputs["AnalysisQueueUrl"])
    assert len(messages) == 1
    (record,) = messages[0]["Records"]
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == "test-crops"
    assert record["s3"]["object"]["key"].replace("%2F", "/") == CROP_KEY


def test_analysis_queue_redrives_to_its_dead_letter_queue(stack):
    attrs = aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.outputs["AnalysisQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":test-analysis-dlq")
    assert int(redrive["maxReceiveCount"]) >= 1
    assert int(attrs["MessageRetentionPeriod"]) <= 86400


def test_crops_bucket_is_private_encrypted_and_expires_faces(stack):
    s3 = aws.client("s3")
    block = s3.get_public_access_block(Bucket="test-crops")["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    ownership = s3.get_bucket_ownership_controls(Bucket="test-crops")["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]  # ACLs disabled
    rule = s3.get_bucket_encryption(Bucket="test-crops")["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = s3.get_bucket_lifecycle_configuration(Bucket="test-crops")["Rules"]
    faces = [r for r in rules if r["Filter"].get("Prefix") == "faces/"]
    assert faces[0]["Status"] == "Enabled" and faces[0]["Expiration"]["Days"] <= 1


def test_artifacts_bucket_is_private_and_versioned(stack):
    s3 = aws.client("s3")
    assert s3.get_bucket_versioning(Bucket="test-artifacts")["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket="test-artifacts")["PublicAccessBlockConfiguration"]
    assert all(block.values())
    assert s3.get_bucket_encryption(Bucket="test-artifacts")["ServerSideEncryptionConfiguration"]


def test_observations_table_has_contract_keys_and_ttl(stack):
    ddb = aws.client("dynamodb")
    table = ddb.describe_table(TableName="test-observations")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName="test-observations")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_observations_table_streams_new_images_for_the_ingest(stack):
    """The service ingests by reading this stream (emotions.services.StreamReader)."""
    table = aws.client("dynamodb").describe_table(TableName="test-observations")["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    shards = aws.client("dynamodbstreams").describe_stream(StreamArn=table["LatestStreamArn"])
    assert shards["StreamDescription"]["Shards"]


def test_redeploy_without_changes_is_graceful_and_keeps_parameters(stack):
    again = deploy.deploy("stagepulse-test", emit=lambda _: None)
    assert again.action == "unchanged"
    assert again.parameters["CropsBucketName"] == "test-crops"  # previous value, not the default


def test_update_goes_through_a_change_set(stack):
    updated = deploy.deploy(
        "stagepulse-test", {"MetricsNamespace": "StagePulseTest"}, emit=lambda _: None
    )
    assert updated.action == "updated" and updated.status == "UPDATE_COMPLETE"
    assert updated.parameters["MetricsNamespace"] == "StagePulseTest"
    assert updated.parameters["CropsBucketName"] == "test-crops"
    sets = aws.client("cloudformation").list_change_sets(StackName="stagepulse-test")
    assert any(s["ExecutionStatus"] == "EXECUTE_COMPLETE" for s in sets["Summaries"])


def test_create_defaults_apply_only_to_a_new_stack(stack):
    again = deploy.deploy(
        "stagepulse-test", create_defaults={"CropsBucketName": "renamed"}, emit=lambda _: None
    )
    assert again.action == "unchanged" and again.parameters["CropsBucketName"] == "test-crops"


def test_unknown_parameter_is_refused_with_the_known_ones(moto_aws):
    with pytest.raises(errors.DeployError, match="unknown parameter.*CropBucket.*CropsBucketName"):
        deploy.deploy("stagepulse-test", {"CropBucket": "x"}, emit=lambda _: None)


def test_status_reports_resources_and_outputs(stack):
    state = stacks.status("stagepulse-test")
    assert state.status == "CREATE_COMPLETE" and not state.failures
    kinds = {logical: kind for logical, kind, _ in state.resources}
    assert kinds["CropsBucket"] == "AWS::S3::Bucket"
    assert kinds["AnalysisQueue"] == "AWS::SQS::Queue"
    assert state.outputs["CropsBucketName"] == "test-crops"
    assert stacks.status("no-such-stack") is None


def test_teardown_deletes_crops_and_stack_but_keeps_artifacts(stack):
    s3 = aws.client("s3")
    s3.put_object(Bucket="test-crops", Key=CROP_KEY, Body=b"jpeg")
    s3.put_object(Bucket="test-artifacts", Key="releases/edge.zip", Body=b"zip")
    assert teardown.teardown("stagepulse-test", emit=lambda _: None) is True
    assert stacks.status("stagepulse-test") is None
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket="test-crops")
    with pytest.raises(ClientError):
        aws.client("dynamodb").describe_table(TableName="test-observations")
    assert s3.get_object(Bucket="test-artifacts", Key="releases/edge.zip")["Body"].read() == b"zip"
    assert teardown.teardown("stagepulse-test", emit=lambda _: None) is False


def test_teardown_can_purge_the_artifacts_bucket(stack):
    s3 = aws.client("s3")
    s3.put_object(Bucket="test-artifacts", Key="releases/edge.zip", Body=b"v1")
    s3.put_object(Bucket="test-artifacts", Key="releases/edge.zip", Body=b"v2")
    teardown.teardown("stagepulse-test", purge_artifacts=True, emit=lambda _: None)
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket="test-artifacts")
    # and the same names deploy again afterwards (the demo restarts this way)
    again = deploy.deploy("stagepulse-test", {"Embedded": "true", **NAMES}, emit=lambda _: None)
    assert again.action == "created"


def test_teardown_then_deploy_again_adopts_the_retained_artifacts_bucket(stack):
    """The artifacts bucket outlives its stack (releases, labelled clips, models): deploying the
    same names again must take it over, not stop at BucketAlreadyExists, and keep its objects."""
    s3 = aws.client("s3")
    s3.put_object(Bucket="test-artifacts", Key="edge-releases/edge.zip", Body=b"zip")
    teardown.teardown("stagepulse-test", emit=lambda _: None)
    messages: list[str] = []
    same = {"Embedded": "true", "EnvironmentName": "test", **NAMES}  # the very same names
    again = deploy.deploy("stagepulse-test", same, emit=messages.append)
    assert again.action == "created" and again.status == "CREATE_COMPLETE"
    assert again.parameters["ArtifactsBucketExists"] == "true"
    assert again.outputs["ArtifactsBucketName"] == "test-artifacts"
    assert any("retained artifacts bucket test-artifacts" in m for m in messages), messages
    assert s3.get_bucket_versioning(Bucket="test-artifacts")["Status"] == "Enabled"
    body = s3.get_object(Bucket="test-artifacts", Key="edge-releases/edge.zip")["Body"].read()
    assert body == b"zip"
    # and once more: teardown, deploy (the stack never owned the bucket this time)
    teardown.teardown("stagepulse-test", emit=lambda _: None)
    assert deploy.deploy("stagepulse-test", same, emit=lambda _: None).action == "created"
    assert s3.head_bucket(Bucket="test-artifacts")["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_an_artifacts_bucket_name_owned_by_someone_else_is_a_clear_error(stack, monkeypatch):
    teardown.teardown("stagepulse-test", emit=lambda _: None)
    denied = ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadBucket")
    real = aws.client

    def client(name, **kwargs):
        made = real(name, **kwargs)
        if name == "s3":
            monkeypatch.setattr(made, "head_bucket", lambda **_: (_ for _ in ()).throw(denied))
        return made

    monkeypatch.setattr(aws, "client", client)
    with pytest.raises(errors.DeployError, match="test-artifacts.*another AWS account"):
        deploy.deploy("stagepulse-test", {"Embedded": "true", **NAMES}, emit=lambda _: None)
