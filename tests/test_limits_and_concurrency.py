"""Rate limits (429 in each protocol's format, with Retry-After) and races for one code, one
refresh token and one todo list, on whichever database the suite runs on."""

import threading
from collections.abc import Callable
from contextlib import contextmanager

import pytest
import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import pkce_pair
from conftest import token_request


@contextmanager
def limit(app, name: str, value: str):
    old = app.config[name]
    app.config[name] = value
    try:
        yield
    finally:
        app.config[name] = old


def in_parallel(count: int, work: Callable[[], requests.Response]) -> list[requests.Response]:
    barrier, results = threading.Barrier(count), []

    def run() -> None:
        barrier.wait()
        results.append(work())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def failed_login(base_url, email, password="wrong password") -> requests.Response:
    person = Person(base_url, email, password)
    return person.login()


def test_repeated_failed_logins_for_one_account_are_throttled(app, base_url, org):
    with limit(app, "LOGIN_ACCOUNT_RATE_LIMIT", "3 per minute"):
        statuses = [failed_login(base_url, org.member_email).status_code for _ in range(3)]
        throttled = failed_login(base_url, org.member_email)
        # Even the right password waits: the account is being guessed at.
        right = failed_login(base_url, org.member_email, PASSWORD)
        other_account = failed_login(base_url, org.admin_email)
    assert statuses == [200, 200, 200] and throttled.status_code == 429 and right.status_code == 429
    assert "Too many requests" in throttled.text and int(throttled.headers["Retry-After"]) > 0
    assert other_account.status_code == 200  # another account is not locked out


def test_successful_logins_do_not_count_against_the_account(app, base_url, org):
    with limit(app, "LOGIN_ACCOUNT_RATE_LIMIT", "2 per minute"):
        assert all(Person(base_url, org.admin_email).login().status_code == 302 for _ in range(4))


def test_logins_are_throttled_per_address(app, base_url):
    with limit(app, "LOGIN_RATE_LIMIT", "4 per minute"):
        statuses = [failed_login(base_url, f"user{i}@nowhere.test").status_code for i in range(5)]
    assert statuses[:4] == [200] * 4 and statuses[4] == 429


def test_the_token_endpoint_answers_429_as_oauth_json(app, base_url, gpt):
    with limit(app, "TOKEN_RATE_LIMIT", "2 per minute"):
        responses = [
            token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": "x"}) for _ in range(3)
        ]
    assert [r.status_code for r in responses] == [400, 400, 429]
    assert responses[2].json()["error"] == "temporarily_unavailable" and responses[2].headers["Retry-After"]


def test_the_api_answers_429_as_json(app, base_url, tokens):
    with limit(app, "API_RATE_LIMIT", "2 per minute"):
        responses = [requests.get(f"{base_url}/api/me", headers=bearer(tokens["access_token"])) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json()["error"] == "rate_limited" and responses[2].headers["Retry-After"]


# Races (RFC 6749 §4.1.2, RFC 9700 §4.14.2), with atomic conditional updates in the app.


def test_parallel_refreshes_of_a_confidential_token_all_succeed(base_url, gpt, tokens):
    """ChatGPT retries: no retry may log anyone out."""
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    responses = in_parallel(20, lambda: token_request(base_url, gpt, data))
    assert [r.status_code for r in responses] == [200] * 20
    for response in responses:
        assert requests.get(f"{base_url}/api/me", headers=bearer(response.json()["access_token"])).status_code == 200


def test_parallel_refreshes_of_a_public_token_make_at_most_one_family(base_url, org, world):
    client = world.client(redirect_uris=("http://127.0.0.1/cb",), public=True, name="CLI")
    verifier, challenge = pkce_pair()
    params = gpt_params(client, code_challenge=challenge, code_challenge_method="S256")
    code = callback_params(Person(base_url, org.admin_email).authorize(params))["code"]
    body = exchange(base_url, client, code, style="none", code_verifier=verifier).json()
    data = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": client.client_id}
    responses = in_parallel(20, lambda: requests.post(f"{base_url}/oauth/token", data=data))
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) <= 1 and all(r.json()["error"] == "invalid_grant" for r in responses if r.status_code != 200)
    # Reuse detection holds: the racing replays revoked the grant, and the old token stays dead.
    for winner in winners:
        new = {**data, "refresh_token": winner.json()["refresh_token"]}
        assert requests.post(f"{base_url}/oauth/token", data=new).json()["error"] == "invalid_grant"
    assert requests.post(f"{base_url}/oauth/token", data=data).json()["error"] == "invalid_grant"


def test_parallel_todo_writes_lose_nothing(base_url, world, gpt):
    org = world.org()
    person = Person(base_url, org.admin_email)
    token = exchange(base_url, gpt, callback_params(person.authorize(gpt_params(gpt)))["code"]).json()["access_token"]
    counter = iter(range(1000))
    lock = threading.Lock()

    def add() -> requests.Response:
        with lock:
            n = next(counter)
        return requests.post(f"{base_url}/api/todos", json={"title": f"parallel {n}"}, headers=bearer(token))

    responses = in_parallel(20, add)
    assert [r.status_code for r in responses] == [201] * 20
    count = world.sql(
        sa.text("SELECT count(*) FROM todo WHERE organization_id = :o AND title LIKE 'parallel %'"), o=org.id
    )
    assert count.scalar() == 20


def test_parallel_web_logins_get_separate_sessions(base_url, org):
    responses = in_parallel(10, lambda: Person(base_url, org.member_email).login())
    assert {r.status_code for r in responses} == {302}
    assert len({r.cookies.get("session") for r in responses}) == 10


@pytest.mark.parametrize("path", ["/login"])
def test_a_request_id_is_echoed(base_url, path):
    response = requests.get(base_url + path, headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    generated = requests.get(base_url + path).headers["X-Request-Id"]
    assert len(generated) == 16
    assert requests.get(base_url + path, headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"] != "bad id!"
