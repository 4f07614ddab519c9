"""The evaluation gate on a short synthetic crowd clip, with the two bundled BlazeFace models as
real candidates: short-range is refused against full-range, full-range accepted against
short-range. Figures come from detectors.evaluation (the bench's code)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from detectors.models import FaceModel, ModelStatus, Source
from detectors.services.gate import compare, promote_model
from detectors.services.registry import register_model

pytestmark = pytest.mark.django_db
URL = "/api/v1/face-models/"


def make_current(organization, blob, name="current") -> FaceModel:
    model = register_model(organization, name=name, data=blob.data)
    FaceModel.objects.filter(pk=model.pk).update(
        status=ModelStatus.PROMOTED, promoted_at=timezone.now()
    )
    return model


def test_short_range_is_refused_against_the_bundled_full_range(
    moto_aws, api_client, ours, short_range
):
    candidate = register_model(ours.organization, name="short", data=short_range.data)
    api_client.force_authenticate(ours.operator)
    response = api_client.post(f"{URL}{candidate.id}/promote/")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "promotion_refused"
    assert "worse than the current model" in error["message"]
    cand, current = error["evaluation"], error["current"]
    # Both scored on the same clip, side by side.
    assert cand["clip"] == current["clip"] and cand["clip"]["frames"] == 3
    assert cand["passed"] is False
    assert cand["precision"] < current["precision"] - 0.02 or cand["recall"] < (
        current["recall"] - 0.02
    )
    candidate.refresh_from_db()
    assert candidate.status == ModelStatus.REFUSED
    # Without a promoted model, the bundled full-range model is the current one.
    baseline = FaceModel.objects.get(status=ModelStatus.PROMOTED)
    assert baseline.source == Source.BUNDLED and baseline.layout == "full_range"
    # The model page shows the comparison.
    listed = api_client.get(f"{URL}{candidate.id}/").json()["latest_gate"]
    assert listed["comparison"]["rows"][0]["metric"] == "recall"


def test_full_range_is_accepted_against_short_range(moto_aws, ours, short_range, full_range):
    old = make_current(ours.organization, short_range, "short")
    candidate = register_model(ours.organization, name="full", data=full_range.data)
    gate = promote_model(candidate)
    assert gate.passed is True and gate.baseline.face_model == old
    assert gate.recall >= gate.baseline.recall - 0.02
    assert gate.precision >= gate.baseline.precision - 0.02
    assert {row["metric"] for row in gate.comparison["rows"]} == {"recall", "precision", "fps"}
    candidate.refresh_from_db()
    old.refresh_from_db()
    assert candidate.status == ModelStatus.PROMOTED and old.status == ModelStatus.RETIRED
    assert FaceModel.objects.filter(status=ModelStatus.PROMOTED).count() == 1


def test_the_current_model_cannot_be_promoted_again(moto_aws, ours, full_range):
    from django.core.exceptions import ValidationError

    current = make_current(ours.organization, full_range)
    with pytest.raises(ValidationError, match="already the current model"):
        promote_model(current)


@pytest.mark.parametrize(
    "candidate, passed, reason",
    [
        ({"recall": 0.90, "precision": 0.95, "fps": 10}, True, ""),
        ({"recall": 0.885, "precision": 0.95, "fps": 10}, True, ""),  # within the margin
        ({"recall": 0.87, "precision": 0.95, "fps": 10}, False, "recall 0.870"),
        ({"recall": 0.90, "precision": 0.90, "fps": 10}, False, "precision 0.900"),
        ({"recall": 0.95, "precision": 0.99, "fps": 4}, False, "fps 4.0 is below 0.5"),
    ],
)
def test_the_verdict_follows_the_margins(candidate, passed, reason):
    baseline = {"recall": 0.90, "precision": 0.95, "fps": 10}
    verdict = compare(candidate, baseline, margin=0.02, min_fps_ratio=0.5)
    assert verdict["passed"] is passed
    assert reason in " ".join(verdict["reasons"])


def test_fps_is_not_gated_unless_configured():
    verdict = compare(
        {"recall": 0.9, "precision": 0.9, "fps": 1},
        {"recall": 0.9, "precision": 0.9, "fps": 50},
        margin=0.02,
    )
    assert verdict["passed"] is True


def test_evaluation_records_the_bench_figures(moto_aws, api_client, ours, full_range):
    model = register_model(ours.organization, name="full", data=full_range.data)
    api_client.force_authenticate(ours.operator)
    response = api_client.post(f"{URL}{model.id}/evaluate/")
    assert response.status_code == 201
    body = response.json()
    assert 0 < body["recall"] <= 1 and 0 < body["precision"] <= 1 and body["fps"] > 0
    assert body["threshold"] == 0.45 and body["passed"] is None
    model.refresh_from_db()
    assert model.status == ModelStatus.EVALUATED


def test_the_admin_action_shows_the_refusal(moto_aws, client, ours, short_range):
    candidate = register_model(ours.organization, name="short", data=short_range.data)
    client.force_login(ours.operator)
    response = client.post(
        "/admin/detectors/facemodel/",
        {"action": "promote_through_gate", "_selected_action": [candidate.id]},
        follow=True,
    )
    assert "Promotion refused" in response.content.decode()
    page = client.get(f"/admin/detectors/facemodel/{candidate.id}/change/").content.decode()
    assert "Refused" in page and "blazeface-full-range" in page
