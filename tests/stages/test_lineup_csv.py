"""Lineup CSV import/export: all-or-nothing, a line-by-line report, local time with DST."""

from datetime import UTC, datetime

import pytest

from stages.models import Set
from stages.services import export_lineup, import_lineup

pytestmark = pytest.mark.django_db

HEADER = "stage,artist,starts_at,ends_at,notes\n"


@pytest.fixture
def festival(two_worlds):
    ours, _ = two_worlds
    Set.objects.all().delete()
    ours.festival.stages.create(organization=ours.organization, name="The Tent", slug="tent")
    return ours.festival


def sets_of(festival):
    return list(
        Set.objects.filter(stage__festival=festival)
        .order_by("starts_at")
        .values_list("stage__slug", "artist", "starts_at", "ends_at")
    )


def test_good_file_imports_in_festival_local_time(festival):
    result = import_lineup(
        festival,
        HEADER + "main,Nova Tide,2026-07-10 20:00,2026-07-10 21:30,\n"
        "The Tent,Kiko Bass,2026-07-10 20:00,2026-07-10 21:00,warm-up\n",
    )
    assert result.ok and result.created == 2
    assert sets_of(festival) == [
        (
            "main",
            "Nova Tide",
            datetime(2026, 7, 10, 18, 0, tzinfo=UTC),
            datetime(2026, 7, 10, 19, 30, tzinfo=UTC),
        ),
        (
            "tent",
            "Kiko Bass",
            datetime(2026, 7, 10, 18, 0, tzinfo=UTC),
            datetime(2026, 7, 10, 19, 0, tzinfo=UTC),
        ),
    ]


def test_set_spanning_midnight(festival):
    result = import_lineup(festival, HEADER + "main,Late Show,2026-07-10 23:30,2026-07-11 01:00,\n")
    assert result.ok
    ((_, _, starts, ends),) = sets_of(festival)
    assert (ends - starts).total_seconds() == 90 * 60


def test_bad_rows_are_reported_line_by_line_and_nothing_is_written(festival):
    content = (
        HEADER
        + "main,Good Act,2026-07-10 18:00,2026-07-10 19:00,\n"  # line 2: fine
        + "moon,Lost Act,2026-07-10 18:00,2026-07-10 19:00,\n"  # line 3: unknown stage
        + "main,,2026-07-10 20:00,2026-07-10 21:00,\n"  # line 4: no artist
        + "main,Backwards,2026-07-10 23:00,2026-07-10 22:00,\n"  # line 5: ends before start
        + "main,Typo,10/07/2026 18:00,2026-07-10 19:00,\n"  # line 6: unreadable time
        + "main,Clash,2026-07-10 18:30,2026-07-10 19:30,\n"  # line 7: overlaps line 2
    )
    result = import_lineup(festival, content)
    assert not result.ok
    assert [(e.line, e.column) for e in result.errors] == [
        (3, "stage"),
        (4, "artist"),
        (5, "ends_at"),
        (6, "starts_at"),
        (7, "starts_at"),
    ]
    assert "Unknown stage 'moon'" in result.errors[0].message
    assert "Overlaps line 2" in result.errors[4].message
    assert sets_of(festival) == []
    assert result.created == 0


def test_missing_columns_and_non_utf8(festival):
    result = import_lineup(festival, "stage,artist\nmain,X\n")
    assert [e.message for e in result.errors][0].startswith("Missing column(s): starts_at, ends_at")
    result = import_lineup(
        festival, "stage,artist,starts_at,ends_at\nmain,Bj\xf6rk,x,y\n".encode("latin-1")
    )
    assert "not UTF-8" in result.errors[0].message


def test_dst_changes_during_the_festival(festival):
    # Europe/Amsterdam: 2026-10-25 03:00 CEST -> 02:00 CET; 02:30 happens twice.
    result = import_lineup(festival, HEADER + "main,Ghost,2026-10-25 02:30,2026-10-25 03:30,\n")
    assert not result.ok
    assert "happens twice" in result.errors[0].message
    # An explicit offset removes the doubt; the set lasts 2 hours of real time (clock 01:30-02:30
    # CEST then back to 02:30 CET is 2h).
    result = import_lineup(
        festival, HEADER + "main,Night Owl,2026-10-25 01:30,2026-10-25 02:30+01:00,\n"
    )
    assert result.ok, result.errors
    ((_, _, starts, ends),) = sets_of(festival)
    assert (ends - starts).total_seconds() == 2 * 3600
    # 2026-03-29 02:30 does not exist in Amsterdam (clocks jump 02:00 -> 03:00).
    result = import_lineup(festival, HEADER + "main,Skipped,2026-03-29 02:30,2026-03-29 04:00,\n")
    assert "does not exist" in result.errors[0].message


def test_export_round_trips_including_ambiguous_times(festival):
    import_lineup(
        festival,
        HEADER + "main,Night Owl,2026-10-25 01:30,2026-10-25 02:30+01:00,\n"
        "tent,Kiko Bass,2026-07-10 20:00,2026-07-10 21:00,warm-up\n",
    )
    exported = export_lineup(festival)
    assert "2026-10-25 02:30+01:00" in exported
    assert "tent,Kiko Bass,2026-07-10 20:00,2026-07-10 21:00,warm-up" in exported
    before = sets_of(festival)
    result = import_lineup(festival, exported)
    assert result.ok and result.unchanged == 2 and result.created == 0
    result = import_lineup(festival, exported, replace=True)
    assert result.ok and result.deleted == 0 and result.created == 0 and result.unchanged == 2
    assert sets_of(festival) == before


def make_report(a_set, *, published=False):
    from emotions.models import ReportStatus, SetReport

    return SetReport.objects.create(
        organization=a_set.organization,
        festival=a_set.stage.festival,
        stage=a_set.stage,
        set=a_set,
        status=ReportStatus.READY,
        published=published,
    )


LINEUP = (
    HEADER + "main,Nova Tide,2026-07-10 20:00,2026-07-10 21:30,\n"
    "tent,Kiko Bass,2026-07-10 20:00,2026-07-10 21:00,\n"
)


def test_replacing_with_an_unchanged_lineup_keeps_the_sets_and_their_reports(festival):
    import_lineup(festival, LINEUP)
    ids = sorted(Set.objects.filter(stage__festival=festival).values_list("pk", flat=True))
    report = make_report(Set.objects.get(artist="Nova Tide"), published=True)
    result = import_lineup(festival, export_lineup(festival), replace=True)
    assert result.ok and result.unchanged == 2 and result.deleted == 0
    assert sorted(Set.objects.filter(stage__festival=festival).values_list("pk", flat=True)) == ids
    report.refresh_from_db()  # still there, still published
    assert report.published and report.set_id in ids


def test_replace_changes_only_the_rows_that_changed(festival):
    import_lineup(festival, LINEUP)
    kept = Set.objects.get(artist="Nova Tide")
    changed = LINEUP.replace("Kiko Bass,2026-07-10 20:00", "Kiko Bass,2026-07-10 20:15")
    changed = changed.replace("21:30,\n", "21:30,headliner\n")
    result = import_lineup(festival, changed, replace=True)
    assert (result.unchanged, result.created, result.deleted) == (1, 1, 1)
    kept.refresh_from_db()
    assert kept.notes == "headliner"  # notes follow the file without a new set
    moved = Set.objects.get(artist="Kiko Bass")
    assert moved.starts_at == datetime(2026, 7, 10, 18, 15, tzinfo=UTC)


def test_replace_that_would_delete_a_reported_set_is_refused_unless_forced(festival):
    import_lineup(festival, LINEUP)
    make_report(Set.objects.get(artist="Kiko Bass"))
    only_nova = HEADER + "main,Nova Tide,2026-07-10 20:00,2026-07-10 21:30,\n"
    result = import_lineup(festival, only_nova, replace=True)
    assert not result.ok
    assert "Kiko Bass" in result.errors[0].message and "force=true" in result.errors[0].message
    assert [b["artist"] for b in result.blocked_sets] == ["Kiko Bass"]
    assert Set.objects.filter(artist="Kiko Bass").exists()
    result = import_lineup(festival, only_nova, replace=True, force=True)
    assert result.ok and result.deleted == 1
    assert not Set.objects.filter(artist="Kiko Bass").exists()


def test_replace_with_a_header_only_file_is_refused(festival):
    import_lineup(festival, LINEUP)
    result = import_lineup(festival, HEADER, replace=True)
    assert not result.ok and "no sets" in result.errors[0].message
    assert len(sets_of(festival)) == 2


def test_api_replace_refusal_and_force(api_client, two_worlds, festival):
    ours, _ = two_worlds
    import_lineup(festival, LINEUP)
    make_report(Set.objects.get(artist="Kiko Bass"))
    api_client.force_authenticate(ours.operator)
    url = f"/api/v1/festivals/{festival.pk}/lineup/import/"
    only_nova = HEADER + "main,Nova Tide,2026-07-10 20:00,2026-07-10 21:30,\n"
    response = api_client.post(url + "?replace=true", only_nova, content_type="text/csv")
    assert response.status_code == 400
    assert "Kiko Bass" in response.json()["error"]["message"]
    assert response.json()["error"]["report"]["blocked_sets"][0]["artist"] == "Kiko Bass"
    response = api_client.post(url + "?replace=true&force=true", only_nova, content_type="text/csv")
    assert response.status_code == 200 and response.json()["deleted"] == 1


def test_import_colliding_with_existing_set_and_dry_run(festival):
    import_lineup(festival, HEADER + "main,Resident,2026-07-10 20:00,2026-07-10 22:00,\n")
    result = import_lineup(festival, HEADER + "main,Guest,2026-07-10 21:00,2026-07-10 23:00,\n")
    assert "Overlaps the existing set 'Resident'" in result.errors[0].message
    result = import_lineup(
        festival, HEADER + "main,Guest,2026-07-10 22:00,2026-07-10 23:00,\n", dry_run=True
    )
    assert result.ok and result.created == 1
    assert [row[1] for row in sets_of(festival)] == ["Resident"]


def test_api_import_and_export(api_client, two_worlds, festival):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    url = f"/api/v1/festivals/{festival.pk}/lineup/"
    bad = HEADER + "moon,Lost,2026-07-10 18:00,2026-07-10 19:00,\n"
    response = api_client.post(url + "import/", bad, content_type="text/csv")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "lineup_invalid"
    assert error["report"]["errors"][0]["line"] == 2
    good = HEADER + "main,Found,2026-07-10 18:00,2026-07-10 19:00,\n"
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("lineup.csv", good.encode(), content_type="text/csv")
    response = api_client.post(url + "import/", {"file": upload}, format="multipart")
    assert response.status_code == 200, response.json()
    assert response.json()["created"] == 1
    response = api_client.get(url)
    assert response["Content-Type"] == "text/csv"
    assert "main,Found,2026-07-10 18:00,2026-07-10 19:00" in response.content.decode()
    api_client.force_authenticate(ours.viewer)
    assert api_client.post(url + "import/", good, content_type="text/csv").status_code == 403


def test_semicolon_separated_files_from_excel_are_read(festival):
    text = (
        "stage;artist;starts_at;ends_at;notes\nmain;Nova Tide;2026-07-10 20:00;2026-07-10 21:30;\n"
    )
    result = import_lineup(festival, text)
    assert result.ok and result.created == 1
    assert sets_of(festival)[0][1] == "Nova Tide"


def test_a_wrong_header_names_the_delimiter_it_was_read_with(festival):
    result = import_lineup(festival, "stage;artist;begin;end\nmain;X;a;b\n")
    assert "read as semicolon-separated" in result.errors[0].message


def test_an_empty_file_gets_a_clear_message(api_client, two_worlds, festival):
    result = import_lineup(festival, b"")
    assert "The file is empty" in result.errors[0].message
    from django.core.files.uploadedfile import SimpleUploadedFile

    api_client.force_authenticate(two_worlds[0].operator)
    upload = SimpleUploadedFile("lineup.csv", b"", content_type="text/csv")
    response = api_client.post(
        f"/api/v1/festivals/{festival.pk}/lineup/import/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert "The file is empty" in response.json()["error"]["message"]


def test_likely_mistakes_are_warnings_not_errors(festival):
    text = (
        HEADER
        # +01:00 in July is not Amsterdam's offset (+02:00)
        + "main,Offset Act,2026-07-10 20:00+01:00,2026-07-10 21:00+01:00,\n"
        # the festival runs 10-12 July
        + "main,Too Early,2026-06-01 20:00,2026-06-01 21:00,\n"
        # the same artist on two stages at once
        + "main,Twin,2026-07-11 20:00,2026-07-11 21:00,\n"
        + "tent,Twin,2026-07-11 20:30,2026-07-11 21:30,\n"
        # the last night's set past midnight is fine
        + "main,Closer,2026-07-12 23:30,2026-07-13 01:00,\n"
    )
    result = import_lineup(festival, text, dry_run=True)
    assert result.ok and result.created == 5
    messages = {(w.line, w.column): w.message for w in result.warnings}
    assert "not Europe/Amsterdam's" in messages[(2, "starts_at")]
    assert "outside the festival's dates" in messages[(3, "starts_at")]
    assert "'Twin' also plays Ours Main" in messages[(5, "artist")]
    assert not [w for w in result.warnings if w.line == 6]
    assert result.as_dict()["warnings"]
