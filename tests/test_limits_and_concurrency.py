"""Rate limits (429 in each protocol's format, with Retry-After) and races for one refresh token,
one todo list and many logins, on whichever database the suite runs on."""

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import in_parallel
from conftest import setting
from conftest import token_request


def test_the_token_endpoint_answers_429_with_a_code_of_rfc6749_5_2(app, base_url, gpt):
    with setting(app, "TOKEN_RATE_LIMIT", "2 per minute"):
        responses = [
            token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": "x"}) for _ in range(3)
        ]
    assert [r.status_code for r in responses] == [400, 400, 429]
    # §5.2 has no rate-limit code, and temporarily_unavailable is the authorization endpoint's (§4.1.2.1).
    assert responses[2].json()["error"] == "invalid_request" and responses[2].headers["Retry-After"]


def test_the_api_answers_429_as_json(app, base_url, tokens):
    with setting(app, "API_RATE_LIMIT", "2 per minute"):
        responses = [requests.get(f"{base_url}/api/me", headers=bearer(tokens["access_token"])) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json()["error"] == "rate_limited"
    # RFC 6585 §4: when the window of "2 per minute" ends, in whole seconds; no X-RateLimit-* headers.
    assert 1 <= int(responses[2].headers["Retry-After"]) <= 60
    assert not [name for name in responses[2].headers if name.lower().startswith("x-ratelimit")]


APP_WIDE_LIMIT = """
from conftest import app_config
from connected_todos import create_app
create_app({**app_config("sqlite:///%s"), "RATELIMIT_DEFAULT": "1000 per day"})
"""


def test_a_limit_for_the_whole_app_is_refused_at_start_up(tmp_path):
    """Every limit sits on its view (web.ViewLimiter): a default limit would never be checked."""
    tests = Path(__file__).parent
    script = APP_WIDE_LIMIT % (tmp_path / "app.db")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tests}:{tests.parent}"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "application and default limits would not be checked" in result.stderr


# Races (RFC 6749 §4.1.2, RFC 9700 §4.14.2), with atomic conditional updates in the app.


def test_parallel_refreshes_of_a_confidential_token_all_succeed(base_url, gpt, tokens):
    """ChatGPT retries: no retry may log anyone out."""
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    responses = in_parallel(20, lambda: token_request(base_url, gpt, data))
    assert [r.status_code for r in responses] == [200] * 20
    for response in responses:
        assert requests.get(f"{base_url}/api/me", headers=bearer(response.json()["access_token"])).status_code == 200


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
