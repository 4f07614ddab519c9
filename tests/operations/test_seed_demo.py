"""seed_demo builds the demo world once; running it again changes nothing."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from devices.models import Device
from festival.models import Festival, Membership, Organization
from stages.models import Set, Stage

pytestmark = pytest.mark.django_db


def counts():
    return {
        model.__name__: model.objects.count()
        for model in (Organization, Membership, Festival, Stage, Set, Device, get_user_model())
    }


def test_seed_demo_is_idempotent():
    call_command("seed_demo", stdout=StringIO())
    first = counts()
    assert first["Organization"] == 2
    assert Stage.objects.filter(festival__slug="pulse-2026").count() == 4
    assert Set.objects.filter(stage__festival__slug="pulse-2026").count() >= 4 * 2 * 5
    assert Device.objects.filter(festival__slug="pulse-2026").count() == 4
    call_command("seed_demo", stdout=StringIO())
    assert counts() == first


def test_demo_logins_work_and_stay_in_their_organization(client):
    call_command("seed_demo", stdout=StringIO())
    assert client.login(username="bob", password="stagepulse-demo")
    page = client.get("/admin/festival/festival/").content.decode()
    assert "Riverside Sessions" in page and "Pulse Festival" not in page


def test_every_demo_login_works_and_the_password_is_hashed_once(client, monkeypatch):
    """The first start hashed the shared demo password once per user (~1 s of CPU each on the
    real hasher); now once in all, and every login printed in the banner still works."""
    from operations import services

    hashed = []
    real = services.make_password
    monkeypatch.setattr(services, "make_password", lambda raw: hashed.append(raw) or real(raw))
    logins = services.seed_demo()
    assert hashed == [services.DEMO_PASSWORD]
    assert len(logins) == get_user_model().objects.count() >= 5
    for login in logins:
        assert client.login(username=login.username, password=services.DEMO_PASSWORD), login
    assert get_user_model().objects.get(username="admin").is_superuser
