"""Labelled clips an organization uploads (a video + face boxes) join the promotion gate: they are
checked before anything is stored, kept in the private artifacts bucket, scored for both models
in every gate run of that organization (and no other), and a candidate worse on any of them is
refused with the clip named. Real videos: synthetic crowd frames written with cv2.VideoWriter."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

import awsclients as aws
from detectors.models import Evaluation, LabelledClip, ModelStatus
from detectors.services import labelled_clips
from detectors.services.gate import promote_model, run_gate
from detectors.services.labelled_clips import add_labelled_clip
from detectors.services.registry import register_model
from tests.clips import MEDIUM_FACES, SMALL_FACES, annotations_bytes, write_labelled_clip
from tests.detectors.test_gate import make_current

pytestmark = pytest.mark.django_db
URL = "/api/v1/labelled-clips/"
MODELS = "/api/v1/face-models/"
# Two close faces: the short-range model does as well as the full-range one on it.
CLOSE_GATE_CLIP = "frames=2,width=640,height=360,faces=2,min_face=100,max_face=160,seed=1"


@pytest.fixture
def small_faces(tmp_path):
    """A crowd of 24-40 px faces: the full-range model finds some, the short-range none."""
    return write_labelled_clip(tmp_path / "small.avi", **SMALL_FACES)


@pytest.fixture
def medium_faces(tmp_path):
    return write_labelled_clip(tmp_path / "medium.avi", **MEDIUM_FACES)


def artifacts(settings, prefix="labelled-clips/") -> list[str]:
    listing = aws.client("s3").list_objects_v2(Bucket=settings.ARTIFACTS_BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def upload(client, video: bytes, annotations: bytes, name="crowd-night"):
    body = {
        "name": name,
        "video": SimpleUploadedFile("clip.avi", video),
        "annotations": SimpleUploadedFile("clip.json", annotations),
    }
    return client.post(URL, body, format="multipart")


def add(organization, clip, name="crowd-night") -> LabelledClip:
    video, document = clip
    return add_labelled_clip(organization, name=name, video=video, annotations=json.dumps(document))


def test_an_operator_uploads_a_labelled_clip(moto_aws, api_client, ours, small_faces, settings):
    video, document = small_faces
    api_client.force_authenticate(ours.operator)
    response = upload(api_client, video, annotations_bytes(document))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["width"], body["height"], body["frame_count"], body["fps"]) == (640, 360, 3, 15)
    assert body["labelled_frames"] == 3 and body["faces"] == 12 and body["active"] is True
    assert body["annotations_json"]["frames"]["0"] == document["frames"]["0"]
    clip = LabelledClip.objects.get()
    assert clip.organization == ours.organization and clip.created_by == ours.operator
    stored = aws.client("s3").get_object(Bucket=settings.ARTIFACTS_BUCKET, Key=clip.key)
    assert stored["Body"].read() == video and stored["ServerSideEncryption"] == "AES256"
    assert clip.key.startswith(f"labelled-clips/{ours.organization.slug}/crowd-night/")
    again = upload(api_client, video, annotations_bytes(document))
    assert again.status_code == 400 and "already exists" in again.json()["error"]["message"]


def _corrupt(video: bytes) -> bytes:
    return video[:12] + b"\x00" * (len(video) - 12)  # an AVI header, no decodable frame


@pytest.mark.parametrize(
    "video, annotations, message",
    [
        (None, b"{nope", "Bad annotations: annotations are not valid JSON"),
        (None, {"frames": {"0": [[600, 10, 80, 80]]}}, "is outside the 640x360 frame"),
        (None, {"frames": {"3": [[10, 10, 30, 30]]}}, "frame 3 is outside the video"),
        (None, {"frames": {"0": [[10, 10, 0, 30]]}}, "width and height must be positive"),
        (None, {"fps": 15, "frames": {}}, "no labelled frame"),
        (_corrupt, None, "Unreadable video"),
        (b"#EXTM3U\nfile:///etc/passwd\n", None, "must be an AVI, MP4/MOV or Matroska/WebM"),
        (b"", None, "The submitted file is empty"),
    ],
)
def test_bad_clips_are_refused_and_nothing_is_stored(
    moto_aws, api_client, ours, small_faces, settings, video, annotations, message
):
    good_video, document = small_faces
    video = video(good_video) if callable(video) else good_video if video is None else video
    if annotations is None:
        annotations = document
    if isinstance(annotations, dict):
        annotations = annotations_bytes(annotations)
    api_client.force_authenticate(ours.operator)
    response = upload(api_client, video, annotations)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not LabelledClip.objects.exists() and artifacts(settings) == []


def test_the_service_refuses_a_video_over_the_frame_limit(moto_aws, ours, small_faces, settings):
    settings.LABELLED_CLIP_MAX_FRAMES = 2
    with pytest.raises(
        ValidationError, match="too large for the gate: it has more than 2 frames; at most 2 frames"
    ):
        add(ours.organization, small_faces)
    assert artifacts(settings) == []


def test_the_gate_scores_both_models_on_the_labelled_clip(
    moto_aws, api_client, client, ours, short_range, full_range, medium_faces
):
    old = make_current(ours.organization, short_range, "short")
    labelled = add(ours.organization, medium_faces, name="main-stage-friday")
    candidate = register_model(ours.organization, name="full", data=full_range.data)
    gate = promote_model(candidate)
    assert gate.passed is True
    [section] = gate.comparison["labelled_clips"]
    assert section["name"] == "main-stage-friday" and section["labelled_clip"] == labelled.id
    assert section["passed"] is True and section["faces_scored"] == 9
    assert {r["metric"] for r in section["rows"]} == {"recall", "precision", "fps"}
    # One Evaluation per model on the labelled clip, beside the synthetic-clip pair.
    on_clip = Evaluation.objects.filter(clip__labelled_clip=labelled.id)
    assert {e.face_model_id for e in on_clip} == {old.id, candidate.id}
    mine = on_clip.get(face_model=candidate)
    assert mine.baseline.face_model == old and mine.clip["name"] == "main-stage-friday"
    assert mine.recall == section["rows"][0]["candidate"] and mine.details["frames"] == 3
    # Shown in the API and the admin.
    api_client.force_authenticate(ours.viewer)
    shown = api_client.get(f"{MODELS}{candidate.id}/").json()["latest_gate"]["comparison"]
    assert shown["labelled_clips"][0]["name"] == "main-stage-friday"
    client.force_login(ours.operator)
    page = client.get(f"/admin/detectors/facemodel/{candidate.id}/change/").content.decode()
    assert "labelled clip &#x27;main-stage-friday&#x27;" in page and "synthetic crowd" in page


def test_a_candidate_worse_on_the_labelled_clip_only_is_refused(
    moto_aws, api_client, ours, short_range, small_faces, settings
):
    """The short-range model (made for faces within 2 m) matches the full-range one on a gate
    clip of close faces, but misses the small faces of the organization's crowd clip."""
    settings.FACE_MODEL_GATE_CLIP = CLOSE_GATE_CLIP
    add(ours.organization, small_faces, name="crowd-far")
    candidate = register_model(ours.organization, name="short", data=short_range.data)
    api_client.force_authenticate(ours.operator)
    response = api_client.post(f"{MODELS}{candidate.id}/promote/")
    assert response.status_code == 409
    error = response.json()["error"]
    comparison = error["evaluation"]["comparison"]
    synthetic = {r["metric"]: r for r in comparison["rows"]}
    assert synthetic["recall"]["delta"] >= -0.02 and synthetic["precision"]["delta"] >= -0.02
    [section] = comparison["labelled_clips"]
    assert section["passed"] is False
    assert "on labelled clip 'crowd-far': recall" in error["message"]
    assert all("crowd-far" in reason for reason in comparison["reasons"])
    candidate.refresh_from_db()
    assert candidate.status == ModelStatus.REFUSED
    # Taken out of the gate, the clip no longer stops it.
    clip_id = section["labelled_clip"]
    assert api_client.patch(f"{URL}{clip_id}/", {"active": False}).json()["active"] is False
    assert promote_model(candidate).comparison["labelled_clips"] == []


def test_another_organizations_clips_are_not_used_and_are_404(
    moto_aws, api_client, client, ours, theirs, full_range, small_faces, medium_faces
):
    other = add(theirs.organization, small_faces, name="theirs-clip")
    mine = add(ours.organization, medium_faces, name="ours-clip")
    candidate = register_model(ours.organization, name="full", data=full_range.data)
    gate = run_gate(candidate)
    assert [c["name"] for c in gate.comparison["labelled_clips"]] == ["ours-clip"]
    assert not Evaluation.objects.filter(clip__labelled_clip=other.id).exists()
    api_client.force_authenticate(ours.operator)
    assert [r["id"] for r in api_client.get(URL).json()["results"]] == [mine.id]
    assert api_client.get(f"{URL}{other.id}/").status_code == 404
    assert api_client.patch(f"{URL}{other.id}/", {"active": False}).status_code == 404
    assert api_client.delete(f"{URL}{other.id}/").status_code == 404
    client.force_login(ours.operator)
    assert client.get(f"/admin/detectors/labelledclip/{other.id}/change/").status_code == 404
    assert client.post(f"/admin/detectors/labelledclip/{other.id}/delete/").status_code == 404
    assert client.get(f"/admin/detectors/labelledclip/{mine.id}/change/").status_code == 200
    assert "theirs-clip" not in client.get("/admin/detectors/labelledclip/").content.decode()
    other.refresh_from_db()
    assert other.active is True


def test_deleting_a_clip_removes_its_s3_object(
    moto_aws, api_client, ours, small_faces, medium_faces, settings
):
    clip = add(ours.organization, small_faces)
    kept = add(ours.organization, medium_faces, name="kept")
    api_client.force_authenticate(ours.viewer)
    assert api_client.get(f"{URL}{clip.id}/").status_code == 200
    assert api_client.delete(f"{URL}{clip.id}/").status_code == 403
    api_client.force_authenticate(ours.operator)
    assert api_client.delete(f"{URL}{clip.id}/").status_code == 204
    assert not LabelledClip.objects.filter(pk=clip.pk).exists()
    assert artifacts(settings) == [kept.key]


def test_an_operator_uploads_and_deletes_through_the_admin(
    moto_aws, client, ours, small_faces, settings
):
    video, document = small_faces
    client.force_login(ours.operator)

    def post(name, annotations):
        return client.post(
            "/admin/detectors/labelledclip/add/",
            {
                "organization": ours.organization.id,
                "name": name,
                "video": SimpleUploadedFile("clip.avi", video),
                "annotations_file": SimpleUploadedFile("clip.json", annotations),
            },
        )

    refused = post("admin-clip", annotations_bytes({"frames": {"7": []}}))
    assert refused.status_code == 200 and "frame 7 is outside the video" in refused.content.decode()
    assert artifacts(settings) == []
    response = post("admin-clip", annotations_bytes(document))
    assert response.status_code == 302, response.context["adminform"].form.errors
    clip = LabelledClip.objects.get(name="admin-clip")
    assert clip.created_by == ours.operator and artifacts(settings) == [clip.key]
    deleted = client.post(f"/admin/detectors/labelledclip/{clip.id}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not LabelledClip.objects.exists() and artifacts(settings) == []


def versioned(settings) -> None:
    """As in infra/stagepulse.yaml: the artifacts bucket keeps noncurrent versions (90 days)."""
    aws.client("s3").put_bucket_versioning(
        Bucket=settings.ARTIFACTS_BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )


def versions(settings, key: str) -> list[str]:
    """Every version and delete marker of exactly `key`."""
    listing = aws.client("s3").list_object_versions(Bucket=settings.ARTIFACTS_BUCKET, Prefix=key)
    entries = [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
    return [e["VersionId"] for e in entries if e["Key"] == key]


def test_deleting_a_clip_deletes_every_version_of_its_video(
    moto_aws, api_client, ours, small_faces, medium_faces, settings
):
    """The bucket is versioned: a plain DeleteObject leaves the crowd video readable as a
    noncurrent version (and adds a delete marker) for 90 days."""
    versioned(settings)
    clip = add(ours.organization, small_faces)
    # An older version of the same key (an earlier upload of that video) and a neighbour whose
    # key starts with the clip's key: the first goes, the second stays.
    s3 = aws.client("s3")
    s3.put_object(Bucket=settings.ARTIFACTS_BUCKET, Key=clip.key, Body=small_faces[0])
    s3.put_object(Bucket=settings.ARTIFACTS_BUCKET, Key=f"{clip.key}.keep", Body=b"x")
    kept = add(ours.organization, medium_faces, name="kept")
    assert len(versions(settings, clip.key)) == 2
    api_client.force_authenticate(ours.operator)
    assert api_client.delete(f"{URL}{clip.id}/").status_code == 204
    assert versions(settings, clip.key) == []
    assert len(versions(settings, f"{clip.key}.keep")) == 1
    assert len(versions(settings, kept.key)) == 1


def test_a_clip_row_that_cannot_be_created_leaves_no_video(
    moto_aws, ours, small_faces, medium_faces, settings, monkeypatch
):
    """A race on the name passes check_clip_name, then the row's unique constraint refuses it:
    the video just put is deleted (every version) and the error names the clash."""
    versioned(settings)
    winner = add(ours.organization, medium_faces)
    monkeypatch.setattr(labelled_clips, "check_clip_name", lambda organization, name: None)
    with pytest.raises(ValidationError, match="already exists"):
        add(ours.organization, small_faces)
    assert artifacts(settings) == [winner.key]
    assert _keys_of(settings) == {winner.key}
    assert LabelledClip.objects.get() == winner


def _keys_of(settings) -> set[str]:
    listing = aws.client("s3").list_object_versions(
        Bucket=settings.ARTIFACTS_BUCKET, Prefix="labelled-clips/"
    )
    return {e["Key"] for e in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]}


def test_a_race_on_the_same_video_keeps_the_winners_version(
    moto_aws, ours, small_faces, settings, monkeypatch
):
    """Same name, same video: the same key. Only the loser's own version is deleted."""
    versioned(settings)
    winner = add(ours.organization, small_faces)
    monkeypatch.setattr(labelled_clips, "check_clip_name", lambda organization, name: None)
    with pytest.raises(ValidationError, match="already exists"):
        add(ours.organization, small_faces)
    assert len(versions(settings, winner.key)) == 1
    stored = aws.client("s3").get_object(Bucket=settings.ARTIFACTS_BUCKET, Key=winner.key)
    assert stored["Body"].read() == small_faces[0]


def test_a_database_error_on_create_leaves_no_video(
    moto_aws, ours, small_faces, settings, monkeypatch
):
    """PostgreSQL refusing the row (e.g. a DataError) must not orphan the uploaded video."""
    from django.db import DataError

    versioned(settings)

    def refuse(**kwargs):
        raise DataError("invalid input syntax for type json")

    monkeypatch.setattr(LabelledClip.objects, "create", refuse)
    with pytest.raises(DataError):
        add(ours.organization, small_faces)
    assert _keys_of(settings) == set()


def test_the_admin_refuses_oversized_files_before_reading_them(
    moto_aws, client, ours, small_faces, settings, monkeypatch
):
    video, document = small_faces
    inspected = []
    monkeypatch.setattr(labelled_clips, "inspect_labelled_clip", lambda *a: inspected.append(a))
    client.force_login(ours.operator)

    def post():
        return client.post(
            "/admin/detectors/labelledclip/add/",
            {
                "organization": ours.organization.id,
                "name": "big-clip",
                "video": SimpleUploadedFile("clip.avi", video),
                "annotations_file": SimpleUploadedFile("clip.json", annotations_bytes(document)),
            },
        )

    settings.LABELLED_CLIP_MAX_BYTES = 100
    refused = post()
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["video"] == [
        "The video is larger than 100 bytes."
    ]
    settings.LABELLED_CLIP_MAX_BYTES = len(video)
    monkeypatch.setattr(labelled_clips, "ANNOTATIONS_MAX_BYTES", 10)
    refused = post()
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["annotations_file"] == [
        "The annotations file is larger than 10 bytes."
    ]
    assert inspected == [] and artifacts(settings) == [] and not LabelledClip.objects.exists()


@pytest.mark.parametrize(
    "annotations, message",
    [
        (b'{"frames": {"0": [[NaN, 10, 30, 30]]}}', "NaN is not allowed"),
        (b'{"frames": {"0": [[10, 10, 1e400, 30]]}}', "must be finite numbers"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_non_finite_or_deep_annotations_are_a_400(
    moto_aws, api_client, ours, small_faces, settings, annotations, message
):
    api_client.force_authenticate(ours.operator)
    response = upload(api_client, small_faces[0], annotations)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not LabelledClip.objects.exists() and artifacts(settings) == []
