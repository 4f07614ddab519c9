"""Fleet objects across the tenancy boundary and roles: releases are global but only for members;
deployments, devices and their actions are scoped (another organization's is a 404)."""

from __future__ import annotations

import pytest

from devices import services
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_releases_are_visible_to_members_only(release, api_client, two_worlds, client):
    ours, _ = two_worlds
    outsider = make_user("outsider")
    api_client.force_authenticate(outsider)
    assert api_client.get("/api/v1/edge-releases/").json()["count"] == 0
    assert api_client.post("/api/v1/edge-releases/build/").status_code == 403
    api_client.force_authenticate(ours.viewer)
    listed = api_client.get("/api/v1/edge-releases/").json()
    assert [r["sha256"] for r in listed["results"]] == [release.sha256]
    assert api_client.post("/api/v1/edge-releases/build/").status_code == 403
    client.force_login(outsider)
    assert client.get("/admin/devices/edgerelease/").status_code == 403


def test_viewers_read_devices_but_cannot_change_or_pause(registered, api_client, two_worlds):
    device, _ = registered
    ours, _ = two_worlds
    api_client.force_authenticate(ours.viewer)
    assert api_client.get(f"/api/v1/devices/{device.pk}/").status_code == 200
    response = api_client.patch(
        f"/api/v1/devices/{device.pk}/", {"config": {"paused": True}}, format="json"
    )
    assert response.status_code == 403
    device.refresh_from_db()
    assert device.config == {} and device.shadow_synced_at is None


def test_other_organizations_device_admin_pages_are_404(registered, client, two_worlds):
    device, _ = registered
    _, theirs = two_worlds
    client.force_login(theirs.operator)
    assert client.get(f"/admin/devices/device/{device.pk}/change/").status_code == 404
    listing = client.get("/admin/devices/device/").content.decode()
    assert "ours-cam-1" not in listing
    # An action posted with our id from their session touches nothing of ours.
    client.post("/admin/devices/device/", {"action": "pause", "_selected_action": [device.pk]})
    device.refresh_from_db()
    assert device.config == {}


def test_their_deployments_do_not_show_in_our_admin(registered, release, client, two_worlds):
    ours, theirs = two_worlds
    mine = services.start_deployment(registered[0], release, enqueue=False)
    client.force_login(theirs.owner)
    assert "ours-cam-1" not in client.get("/admin/devices/deployment/").content.decode()
    assert client.get(f"/admin/devices/deployment/{mine.pk}/change/").status_code == 404
    client.force_login(ours.viewer)
    assert client.get(f"/admin/devices/deployment/{mine.pk}/change/").status_code == 200


def test_device_page_shows_its_last_deployment(registered, release, client, two_worlds):
    device, _ = registered
    services.start_deployment(device, release, enqueue=False)
    client.force_login(two_worlds[0].operator)
    listing = client.get("/admin/devices/device/").content.decode()
    assert f"{release.version} create_component" in listing
    page = client.get(f"/admin/devices/device/{device.pk}/change/")
    assert page.status_code == 200
    assert "Overrides of the edge defaults: fps_cap=" in page.content.decode()
