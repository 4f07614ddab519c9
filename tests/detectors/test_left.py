"""What the issue asks for and this change does not do yet, as expected failures with reasons."""

from __future__ import annotations

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


@pytest.mark.xfail(
    strict=True,
    reason="devices/ owns the device role policy: it grants crop uploads only, so a registered "
    "camera cannot yet read s3://ARTIFACTS_BUCKET/face-models/<org>/* (docs/detectors.md)",
)
def test_a_cameras_role_may_read_its_organizations_face_models(ours):
    from devices.services.registration import device_role_policy_document

    document = device_role_policy_document(ours.device)
    wanted = f"arn:aws:s3:::{settings.ARTIFACTS_BUCKET}/face-models/{ours.organization.slug}/*"
    assert any(
        "s3:GetObject" in statement["Action"] and statement["Resource"] == wanted
        for statement in document["Statement"]
    )


@pytest.mark.xfail(
    strict=True,
    reason="the gate scores the synthetic crowd clip only; labelled clips an organization "
    "uploads (video + boxes) are not modelled yet",
)
def test_an_organizations_labelled_clip_joins_the_gate():
    from detectors import models

    assert hasattr(models, "LabelledClip")
