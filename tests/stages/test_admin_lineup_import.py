"""Lineup CSV in the admin: upload, a dry-run preview that writes nothing, then apply."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from stages.models import Set

pytestmark = pytest.mark.django_db

HEADER = "stage,artist,starts_at,ends_at,notes\n"
GOOD = HEADER + "main,Nova Tide,2026-07-11 20:00,2026-07-11 21:30,\n"


def upload(client, festival, text, **flags):
    return client.post(
        reverse("admin:festival_lineup_import", args=[festival.pk]),
        {"step": "preview", "file": SimpleUploadedFile("l.csv", text.encode()), **flags},
    )


def test_preview_writes_nothing_then_apply_imports(client, two_worlds):
    ours, _ = two_worlds
    client.force_login(ours.operator)
    url = reverse("admin:festival_lineup_import", args=[ours.festival.pk])
    page = client.get(url).content.decode()
    assert "Europe/Amsterdam" in page and 'id="preview"' in page
    page = upload(client, ours.festival, GOOD).content.decode()
    assert "Preview (nothing imported yet)" in page and 'id="apply"' in page
    assert not Set.objects.filter(artist="Nova Tide").exists()
    response = client.post(url, {"step": "apply", "content": GOOD, "replace": "0", "force": "0"})
    assert response.status_code == 302
    created = Set.objects.get(artist="Nova Tide")
    assert created.starts_at.isoformat() == "2026-07-11T18:00:00+00:00"


def test_preview_lists_problems_and_offers_no_apply(client, two_worlds):
    ours, _ = two_worlds
    client.force_login(ours.operator)
    bad = HEADER + "moon,Lost,2026-07-11 20:00,2026-07-11 21:00,\n"
    page = upload(client, ours.festival, bad).content.decode()
    assert "Unknown stage" in page and 'id="apply"' not in page


def test_replace_preview_names_reported_sets(client, two_worlds):
    from emotions.models import ReportStatus, SetReport

    ours, _ = two_worlds
    SetReport.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        set=ours.set,
        status=ReportStatus.READY,
    )
    client.force_login(ours.operator)
    page = upload(client, ours.festival, GOOD, replace="on").content.decode()
    assert "Ours Artist" in page and "force" in page and 'id="apply"' not in page
    page = upload(client, ours.festival, GOOD, replace="on", force="on").content.decode()
    assert 'id="apply"' in page and 'id="count-deleted">1<' in page


def test_viewers_and_other_organizations_cannot_import(client, two_worlds):
    ours, theirs = two_worlds
    client.force_login(ours.viewer)
    url = reverse("admin:festival_lineup_import", args=[ours.festival.pk])
    assert client.get(url).status_code == 403
    client.force_login(ours.owner)
    other = reverse("admin:festival_lineup_import", args=[theirs.festival.pk])
    assert client.get(other).status_code == 404
