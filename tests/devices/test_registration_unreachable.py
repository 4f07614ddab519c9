"""AWS not answering at all (no route, DNS, timeouts) during register or deregister is a JSON 503
that says to try again, never a 500 page; an interrupted registration is cleaned up, and what
could not be cleaned up is removed by the next attempt, which then goes through."""

from __future__ import annotations

import pytest
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

import awsclients as aws
from devices import services
from devices.models import DeviceStatus

pytestmark = pytest.mark.django_db


class Outage:
    """Wraps real (moto) clients; once AWS "goes down", every call fails as a lost network
    does: the operation named in `from_operation` is the first to fail."""

    def __init__(self, from_operation: str):
        self.from_operation = from_operation
        self.down = False
        self.calls_while_down = 0

    def wrap(self, client):
        outage = self

        class Client:
            def __getattr__(self, name):
                real = getattr(client, name)
                if not callable(real):
                    return real

                def call(*args, **kwargs):
                    if name == outage.from_operation:
                        outage.down = True
                    if outage.down:
                        outage.calls_while_down += 1
                        raise EndpointConnectionError(endpoint_url=f"https://{name}.invalid")
                    return real(*args, **kwargs)

                return call

        return Client()


@pytest.fixture
def outage(moto_aws, monkeypatch):
    outage = Outage(from_operation="create_role")
    real = aws.cached_client
    monkeypatch.setattr(aws, "cached_client", lambda name: outage.wrap(real(name)))
    return outage


def assert_503(response) -> str:
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["status"] == 503 and error["code"] == "aws_unavailable"
    return error["message"]


def test_an_outage_mid_registration_is_a_503_and_the_next_attempt_goes_through(
    outage, two_worlds, api_client
):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    url = f"/api/v1/devices/{ours.device.pk}/register/"

    message = assert_503(api_client.post(url))
    assert "EndpointConnectionError" in message and "registering again removes it" in message
    ours.device.refresh_from_db()
    assert ours.device.status == DeviceStatus.NEW and not ours.device.certificate_arn
    iot = aws.client("iot")
    (left_cert,) = iot.list_certificates()["certificates"]  # the undo could not reach AWS either
    # create_role, then one undo call: the rest are not tried (each would burn its retries)
    assert outage.calls_while_down == 2

    outage.down, outage.from_operation = False, ""  # AWS answers again
    response = api_client.post(url)
    assert response.status_code == 201, response.content[:300]
    (cert,) = iot.list_certificates()["certificates"]
    assert cert["certificateArn"] != left_cert["certificateArn"]
    assert [t["thingName"] for t in iot.list_things()["things"]] == [ours.device.thing_name]
    assert len(iot.list_policies()["policies"]) == 1
    ours.device.refresh_from_db()
    assert ours.device.certificate_arn == cert["certificateArn"]


def test_an_outage_that_leaves_nothing_behind_says_so(moto_aws, two_worlds, monkeypatch):
    """Only IAM is unreachable: the IoT parts are undone, the device stays new."""
    real = aws.cached_client

    def pick(name):
        if name != "iam":
            return real(name)
        outage = Outage(from_operation="create_role")
        return outage.wrap(real(name))

    monkeypatch.setattr(aws, "cached_client", pick)
    device = two_worlds[0].device
    with pytest.raises(services.AwsUnreachable, match="was undone"):
        services.register_device(device)
    iot = aws.client("iot")
    assert iot.list_things()["things"] == [] and iot.list_certificates()["certificates"] == []


def test_an_unreachable_endpoint_on_deregister_is_a_503_and_keeps_the_record(
    registered, two_worlds, api_client, monkeypatch
):
    """A real client pointed at a closed port: botocore's own connection error, no stubbing."""
    device, _ = registered
    nowhere = aws.client(
        "iot",
        endpoint_url="http://127.0.0.1:9",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    )
    monkeypatch.setattr(aws, "cached_client", lambda name: nowhere)
    api_client.force_authenticate(two_worlds[0].operator)
    message = assert_503(api_client.post(f"/api/v1/devices/{device.pk}/deregister/"))
    assert "run it again" in message
    device.refresh_from_db()
    assert device.status == DeviceStatus.REGISTERED and device.certificate_arn
    monkeypatch.undo()
    assert api_client.post(f"/api/v1/devices/{device.pk}/deregister/").status_code == 200


def test_a_timeout_anywhere_else_in_the_api_is_a_503_too(two_worlds, api_client, monkeypatch):
    """Views that do not catch it themselves (the error handler maps it for every endpoint)."""

    def timeout(*args, **kwargs):
        raise ConnectTimeoutError(endpoint_url="https://iot.invalid")

    monkeypatch.setattr(services, "issue_device_token", timeout)
    api_client.force_authenticate(two_worlds[0].operator)
    assert_503(api_client.post(f"/api/v1/devices/{two_worlds[0].device.pk}/token/"))


class DroppingServer:
    """Accepts every connection and closes it at once (an AWS endpoint that is down behind a
    load balancer), counting the attempts botocore makes."""

    def __init__(self):
        import socket
        import threading

        from tests.isolation import free_port

        self.attempts = 0
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.attempts += 1
            connection.close()

    def close(self):
        self.listener.close()


@pytest.fixture
def aws_endpoint_down(monkeypatch):
    """Every client made from here on talks to a DroppingServer (cached ones too)."""
    server = DroppingServer()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.port}")
    aws._cached_client.cache_clear()
    yield server
    server.close()
    aws._cached_client.cache_clear()


def test_a_person_waiting_on_an_aws_outage_gets_a_503_after_two_attempts(
    registered, two_worlds, api_client, aws_endpoint_down, monkeypatch
):
    """Through the router: a request's AWS calls use the fail-fast config (two attempts), so the
    operator hears "try again" in seconds; background work keeps its patient retries."""
    import botocore.endpoint

    backoff: list[float] = []  # botocore's waits between attempts, recorded instead of slept
    monkeypatch.setattr(botocore.endpoint.time, "sleep", backoff.append)
    device, _ = registered
    api_client.force_authenticate(two_worlds[0].operator)
    assert_503(api_client.post(f"/api/v1/devices/{device.pk}/deregister/"))
    assert aws_endpoint_down.attempts == 2 and sum(backoff) <= 1.0
    device.refresh_from_db()
    assert device.status == DeviceStatus.REGISTERED  # nothing lost: it can be run again

    aws_endpoint_down.attempts, backoff[:] = 0, []
    with pytest.raises(services.AwsUnreachable):  # a Celery task or a command: no one waits
        services.deregister_device(device)
    assert aws_endpoint_down.attempts == 9  # botocore's max_attempts 8 counts the retries
