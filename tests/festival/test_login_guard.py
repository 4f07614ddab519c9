"""Password logins are limited per account and per address (API token endpoint and admin), API
tokens can be revoked and rotated, and a password change ends them (issue 11, item 5)."""

import pytest
from django.contrib.auth import get_user_model

from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"


@pytest.fixture(autouse=True)
def limits(settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 5
    settings.LOGIN_FAILURES_PER_ADDRESS = 20
    settings.LOGIN_LOCKOUT_SECONDS = 900
    settings.LOGIN_FAILURES_PER_ACCOUNT_ALL_ADDRESSES = 30


def login(client, username, password, address="203.0.113.7"):
    return client.post(TOKEN_URL, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_the_right_password_is_refused_after_too_many_wrong_ones(api_client):
    make_user("alice")
    for _ in range(5):
        assert login(api_client, "alice", "guess").status_code == 400
    response = login(api_client, "alice", PASSWORD)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "login_locked"
    assert "Too many failed logins" in error["message"]
    assert 0 < int(response["Retry-After"]) <= 900


def test_failing_on_purpose_does_not_lock_the_owner_out(api_client):
    """Anyone who knows a username can fail at it; that locks only their own address out of
    that account, not the owner logging in from elsewhere (nor a fan of the same Wi-Fi logging
    in to another account)."""
    make_user("alice")
    make_user("neighbour")
    for _ in range(10):
        login(api_client, "alice", "guess", address="192.0.2.66")
    assert login(api_client, "alice", PASSWORD, address="192.0.2.66").status_code == 429
    assert login(api_client, "alice", PASSWORD, address="198.51.100.1").status_code == 200
    assert login(api_client, "neighbour", PASSWORD, address="192.0.2.66").status_code == 200


def test_guesses_spread_over_many_addresses_lock_only_unknown_addresses(api_client):
    """30 addresses failing once each at one account: a new address is refused even with the
    right password, while the address the owner logged in from before still gets in."""
    make_user("frank")
    assert login(api_client, "frank", PASSWORD, address="198.51.100.9").status_code == 200
    for n in range(30):
        assert login(api_client, "frank", "guess", address=f"192.0.2.{n}").status_code == 400
    assert login(api_client, "frank", PASSWORD, address="203.0.113.200").status_code == 429
    assert login(api_client, "frank", PASSWORD, address="198.51.100.9").status_code == 200
    # an unknown name answers the same, so the lock tells nobody which accounts exist
    for n in range(30):
        login(api_client, "no-such-frank", "guess", address=f"192.0.2.{n}")
    assert login(api_client, "no-such-frank", "guess", address="203.0.113.200").status_code == 429


def test_one_address_guessing_many_accounts_is_stopped(api_client):
    make_user("bob")
    for n in range(20):
        login(api_client, f"someone-{n}", "guess")
    assert login(api_client, "bob", PASSWORD).status_code == 429
    assert login(api_client, "bob", PASSWORD, address="198.51.100.1").status_code == 200


def test_unknown_accounts_answer_and_lock_like_real_ones(api_client):
    make_user("carol")
    answers = {}
    for name in ("carol", "no-such-person"):
        bodies = [login(api_client, name, "guess").json() for _ in range(5)]
        answers[name] = (bodies, login(api_client, name, "guess").status_code)
    assert answers["carol"] == answers["no-such-person"]
    assert answers["carol"][1] == 429


def test_a_successful_login_clears_the_accounts_count(api_client):
    make_user("dave")
    for _ in range(2):
        for _ in range(4):
            login(api_client, "dave", "guess")
        assert login(api_client, "dave", PASSWORD).status_code == 200


def test_the_admin_login_is_guarded_too(client):
    make_user("erin")
    for _ in range(5):
        client.post("/admin/login/", {"username": "erin", "password": "guess"})
    response = client.post("/admin/login/", {"username": "erin", "password": PASSWORD})
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def token_for(api_client, username):
    return login(api_client, username, PASSWORD).json()["token"]


def with_token(api_client, token):
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api_client


def test_a_token_can_be_revoked(api_client):
    make_user("frank")
    client = with_token(api_client, token_for(api_client, "frank"))
    assert client.get("/api/v1/festivals/").status_code == 200
    assert client.post("/api/v1/auth/token/revoke/").status_code == 204
    response = client.get("/api/v1/festivals/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid token."


def test_a_token_can_be_rotated(api_client):
    make_user("grace")
    old = token_for(api_client, "grace")
    response = with_token(api_client, old).post("/api/v1/auth/token/rotate/")
    assert response.status_code == 201
    new = response.json()["token"]
    assert new != old
    assert with_token(api_client, old).get("/api/v1/festivals/").status_code == 401
    assert with_token(api_client, new).get("/api/v1/festivals/").status_code == 200


def test_a_password_change_ends_the_accounts_tokens(api_client):
    user = make_user("heidi")
    token = token_for(api_client, "heidi")
    user.set_password("a-brand-new-password-42")
    user.save()
    assert with_token(api_client, token).get("/api/v1/festivals/").status_code == 401


def test_other_saves_keep_the_token(api_client):
    user = make_user("ivan")
    token = token_for(api_client, "ivan")
    get_user_model().objects.get(pk=user.pk).save()
    user.first_name = "Ivan"
    user.save()
    assert with_token(api_client, token).get("/api/v1/festivals/").status_code == 200
