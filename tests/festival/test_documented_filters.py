"""Every list filter the README documents actually filters.

The test reads the README's filter table, so a filter documented later is checked too. For each
(endpoint, filter) it picks a value that some rows have and others do not, and checks that the
filtered list is exactly the rows with that value (a filter the API silently ignores returns all).
"""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.models import Device
from emotions.models import ReportStatus, SetReport
from festival.models import AnalysisMode, Festival, Membership, Role
from stages.models import Set, Stage
from tests.factories import make_user

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_filters() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text.split("### Filters", 1)[1].split("\n#", 1)[0]
    pairs = []
    for endpoint, filters in re.findall(r"^\| `(/api/v1/[^`]+)` \| (.+) \|$", section, re.M):
        pairs += [(endpoint, name) for name in re.findall(r"`([^`]+)`", filters)]
    return pairs


FILTERS = documented_filters()


def test_the_readme_documents_the_sets_festival_filter():
    assert ("/api/v1/sets/", "festival") in FILTERS
    assert len(FILTERS) >= 20


@pytest.fixture
def rich_world(two_worlds):
    """Our organization with two festivals, two stages each, sets, cameras and reports that
    differ in every filtered field; a second organization of ours for members/festivals."""
    ours, _ = two_worlds
    org = ours.organization
    second = Festival.objects.create(
        organization=org,
        name="Second Fest",
        slug="second-fest",
        timezone="Europe/Lisbon",
        starts_on=ours.festival.starts_on,
        ends_on=ours.festival.ends_on,
        public=False,
        analysis_mode=AnalysisMode.EDGE,
    )
    other_org = type(org).objects.create(name="Sister Org", slug="sister-org")
    Membership.objects.create(user=ours.owner, organization=other_org, role=Role.VIEWER)
    Membership.objects.create(
        user=make_user("sister-operator"), organization=other_org, role=Role.OPERATOR
    )
    Festival.objects.create(
        organization=other_org,
        name="Sister Fest",
        slug="sister-fest",
        timezone="UTC",
        starts_on=ours.festival.starts_on,
        ends_on=ours.festival.ends_on,
    )
    tent = Stage.objects.create(
        organization=org, festival=ours.festival, name="Tent", slug="tent", position=1
    )
    far = Stage.objects.create(organization=org, festival=second, name="Far", slug="far")
    sets = [ours.set]
    for stage, hour in ((tent, 20), (far, 14), (far, 22), (ours.stage, 21)):
        sets.append(
            Set.objects.create(
                organization=org,
                stage=stage,
                artist=f"{stage.slug} {hour}",
                starts_at=datetime(2026, 7, 10, hour, 0, tzinfo=UTC),
                ends_at=datetime(2026, 7, 10, hour, 45, tzinfo=UTC),
            )
        )
    Device.objects.create(
        organization=org,
        festival=second,
        stage=far,
        name="Far cam",
        thing_name="far-cam",
        platform="deeplens",
        status="online",
    )
    Device.objects.create(
        organization=org, festival=ours.festival, stage=tent, name="Tent cam", thing_name="t-cam"
    )
    for index, a_set in enumerate(sets):
        SetReport.objects.create(
            organization=org,
            festival=a_set.stage.festival,
            stage=a_set.stage,
            set=a_set,
            status=ReportStatus.READY if index % 2 else ReportStatus.PENDING,
            published=index == 1,
        )
    return ours


def value_of(row: dict, name: str, api_client):
    """The row's value for filter `name`, in the form the filter takes."""
    field = re.sub(r"__(gte|lte|exact)$", "", name)
    value = row[field]
    if name == "organization" and isinstance(value, str):  # shown as a slug, filtered by id
        from festival.models import Organization

        return Organization.objects.get(slug=value).pk
    return value


def matches(row_value, name: str, wanted) -> bool:
    if name.endswith("__gte"):
        return datetime.fromisoformat(row_value) >= datetime.fromisoformat(wanted)
    if name.endswith("__lte"):
        return datetime.fromisoformat(row_value) <= datetime.fromisoformat(wanted)
    return row_value == wanted


@pytest.mark.parametrize(("endpoint", "name"), FILTERS)
def test_documented_filter_filters(api_client, rich_world, endpoint, name):
    api_client.force_authenticate(rich_world.owner)
    everything = api_client.get(endpoint, {"page_size": 500}).json()["results"]
    values = [value_of(row, name, api_client) for row in everything]
    # a value some rows have and some do not; for ranges, the middle one
    candidates = sorted({str(v) if not isinstance(v, bool) else v for v in values}, key=str)
    assert len(candidates) > 1, f"test data does not tell {endpoint} rows apart by {name}"
    wanted = candidates[len(candidates) // 2] if "__" in name else candidates[0]
    typed = next(v for v in values if (str(v) if not isinstance(v, bool) else v) == wanted)
    param = str(typed).lower() if isinstance(typed, bool) else typed
    response = api_client.get(endpoint, {name: param, "page_size": 500})
    assert response.status_code == 200, response.json()
    got = {row["id"] for row in response.json()["results"]}
    expected = {
        row["id"] for row, v in zip(everything, values, strict=True) if matches(v, name, typed)
    }
    assert got == expected, f"{endpoint}?{name}={param}"
    assert got != {row["id"] for row in everything}, f"{endpoint}?{name}= filtered nothing"
