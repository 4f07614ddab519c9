"""Alerts and announcements survive a channel outage: a failed channel is retried with backoff,
the working one is not sent twice, and giving up or a lost retry is logged."""

from unittest import mock

import pytest

from festival import notify
from festival.tasks import retry_notification

pytestmark = pytest.mark.django_db

MESSAGE = {"subject": "Camera offline", "body": "main-cam-1 silent", "payload": {"event": "x"}}


@pytest.fixture
def festival(two_worlds):
    festival = two_worlds[0].festival
    festival.ops_emails = "crew@example.org"
    festival.ops_webhook_url = "http://127.0.0.1:9/hook"
    festival.save()
    return festival


def test_a_failed_channel_is_queued_for_a_retry_after_commit(
    festival, mailoutbox, django_capture_on_commit_callbacks
):
    with (
        mock.patch.object(notify, "post_json", return_value=False),
        mock.patch.object(retry_notification, "apply_async") as queued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        sent = notify.notify_operations(festival, **MESSAGE)
    assert sent == ["email"] and len(mailoutbox) == 1  # e-mail went out once, now
    (args,), kwargs = queued.call_args
    assert args == (festival.pk, "webhook", "Camera offline", "main-cam-1 silent", {"event": "x"})
    assert kwargs == {"countdown": 60}


def test_the_retry_backs_off_until_the_webhook_answers(festival, settings):
    settings.NOTIFY_RETRY_DELAYS_S = [60, 300, 900]
    answers = [False, False, True]
    with mock.patch.object(notify, "post_json", side_effect=answers) as post:
        result = retry_notification.apply(
            (festival.pk, "webhook", "Camera offline", "main-cam-1 silent", {"event": "x"})
        )
    assert result.get() is True
    assert post.call_count == 3
    assert post.call_args.args[1]["text"] == "Camera offline\nmain-cam-1 silent"


def test_the_retry_gives_up_after_the_last_delay_and_says_so(festival, settings, caplog):
    settings.NOTIFY_RETRY_DELAYS_S = [60, 300]
    with mock.patch.object(notify, "post_json", return_value=False) as post:
        result = retry_notification.apply(
            (festival.pk, "webhook", "Camera offline", "body", {"event": "x"})
        )
    assert result.get() is False
    assert post.call_count == 2  # the tries after the first failure: one per delay
    assert "given up after 3 tries" in caplog.text


def test_a_broker_outage_loses_the_retry_loudly_not_the_caller(
    festival, caplog, django_capture_on_commit_callbacks
):
    with (
        mock.patch.object(notify, "post_json", return_value=False),
        mock.patch.object(retry_notification, "apply_async", side_effect=OSError("broker down")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        sent = notify.notify_operations(festival, **MESSAGE)
    assert sent == ["email"]
    assert "webhook 'Camera offline' lost, no retry queued: broker down" in caplog.text
