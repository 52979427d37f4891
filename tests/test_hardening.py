"""Inputs that must never reach a 500, errors in each protocol's own format, and the OpenID Connect
prompt and max_age rules."""

import base64
import time
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import jwt_part
from conftest import token_request

from connected_todos.rules import DEFAULT_CLIENT_SCOPE

# Inputs that are not text a database can store, or are out of range: 400s, never 500s.


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        (
            "POST",
            "/oauth/token",
            {"data": "[" * 100000 + "]" * 100000, "headers": {"Content-Type": "application/json"}},
        ),
        (
            "POST",
            "/oauth/token",
            {
                "data": '{"grant_type":"authorization_code","client_id":"\\ud800","client_secret":"x","code":"c"}',
                "headers": {"Content-Type": "application/json"},
            },
        ),
        (
            "POST",
            "/oauth/token",
            {"data": {"grant_type": "authorization_code", "client_id": "\x00", "client_secret": "x", "code": "c"}},
        ),
        (
            "POST",
            "/oauth/token",
            {
                "data": {"grant_type": "authorization_code", "code": "c"},
                "headers": {"Authorization": "Basic " + base64.b64encode(b"\xff:\xff").decode()},
            },
        ),
        (
            "POST",
            "/oauth/token",
            {
                "data": {"grant_type": "authorization_code", "code": "c"},
                "headers": {"Authorization": "Basic !!!not-base64"},
            },
        ),
        ("POST", "/oauth/revoke", {"data": {"token": "\x00", "client_id": "\x00"}}),
        ("POST", "/oauth/introspect", {"data": {"token": "x" * 10000}}),
        (
            "POST",
            "/oauth/register",
            {"data": "[" * 100000 + "]" * 100000, "headers": {"Content-Type": "application/json"}},
        ),
        ("GET", "/idp?client_id=%00&redirect_uri=x", {}),
        ("GET", "/idp?client_id=" + "a" * 9000, {}),
        ("GET", "/login?returnTo=%00", {}),
    ],
)
def test_malformed_input_gets_a_4xx_in_the_protocols_format(base_url, method, path, kwargs):
    response = requests.request(method, base_url + path, **kwargs)
    assert 400 <= response.status_code < 500, response.text[:200]
    if path.startswith("/oauth/"):
        assert response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/todos/2147483648", None),
        ("GET", "/api/todos/99999999999999999999", None),
        ("GET", "/api/todos?cursor=99999999999", None),
        ("GET", "/api/todos?cursor=-1", None),
        ("GET", "/api/todos?limit=%C2%B2", None),
        ("GET", "/api/todos?limit=%D9%A3", None),
        ("POST", "/api/todos", '{"title": "\\ud800"}'),
        ("POST", "/api/todos", '{"title": "a\\u0000b"}'),
        ("POST", "/api/todos", "[" * 100000 + "]" * 100000),
    ],
)
def test_malformed_api_input_is_a_4xx_json_error(base_url, tokens, method, path, body):
    headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
    response = requests.request(method, base_url + path, data=body, headers=headers)
    assert response.status_code in (400, 404) and response.json()["message"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/nothing"), ("PUT", "/api/todos"), ("GET", "/oauth/token")])
def test_unknown_paths_and_methods_answer_in_the_protocols_format(base_url, method, path):
    response = requests.request(method, base_url + path)
    assert response.status_code in (404, 405)
    body = response.json()
    assert body.get("error") and ("message" in body or "error_description" in body)
    if response.status_code == 405:
        assert response.headers["Allow"]


def test_an_unknown_page_is_a_friendly_page(base_url):
    response = requests.get(f"{base_url}/no-such-page")
    assert response.status_code == 404 and "Page not found" in response.text and "Traceback" not in response.text


# OpenID Connect prompt and max_age (Core §3.1.2.1), and scopes sent twice or left empty.


def test_duplicate_scopes_are_granted_once(base_url, org, gpt):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="openid " * 150)))
    assert exchange(base_url, gpt, cb["code"]).json()["scope"] == "openid"


def test_prompt_login_asks_for_the_password_again_without_a_loop(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    person.login()
    params = gpt_params(gpt, prompt="login")
    response = person.authorize(params)
    cb = callback_params(response)
    assert cb["code"] and cb["state"] == params["state"]
    again = person.get("/idp?" + urlencode(params))
    assert again.status_code == 302 and again.headers["Location"].startswith("/login")


def test_max_age_older_than_the_login_asks_again(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    person.login()
    time.sleep(1.1)
    first = person.get("/idp?" + urlencode(gpt_params(gpt, max_age="0")))
    assert first.status_code == 302 and first.headers["Location"].startswith("/login")
    assert callback_params(person.authorize(gpt_params(gpt, max_age="0")))["code"]


def test_the_gpt_journey_with_an_empty_scope_and_introspection_by_post(base_url, org, gpt):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="")))
    body = exchange(base_url, gpt, cb["code"], "basic").json()
    assert body["scope"] == DEFAULT_CLIENT_SCOPE and body["refresh_token"]
    refreshed = token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200


def test_auth_time_is_when_the_member_logged_in(base_url, org, gpt, clock):
    # OpenID Connect Core §2: auth_time is the time of the authentication, not of the authorization.
    person = Person(base_url, org.admin_email)
    person.login()
    logged_in_at = time.time()
    clock.shift(600)
    cb = callback_params(person.authorize(gpt_params(gpt)))
    claims = jwt_part(exchange(base_url, gpt, cb["code"]).json()["id_token"], 1)
    assert logged_in_at - 2 <= claims["auth_time"] <= logged_in_at + 2


def test_prompt_login_ends_the_session_before_asking(base_url, org, gpt):
    # OpenID Connect Core §3.1.2.1: prompt=login reauthenticates; going back to returnTo skips nothing.
    person = Person(base_url, org.admin_email)
    person.login()
    person.authorize(gpt_params(gpt))
    first = person.get("/idp?" + urlencode(gpt_params(gpt, prompt="login")))
    return_to = parse_qs(urlsplit(first.headers["Location"]).query)["returnTo"][0]
    skipped = person.get(return_to)
    assert skipped.status_code == 302 and skipped.headers["Location"].startswith("/login")


@pytest.mark.parametrize("max_age", ["abc", "٣", "-1", "1e3"])
def test_a_malformed_max_age_is_not_a_500(base_url, org, gpt, max_age):
    person = Person(base_url, org.admin_email)
    person.login()
    assert person.get("/idp?" + urlencode(gpt_params(gpt, max_age=max_age))).status_code < 500


def test_an_overlong_parameter_is_refused(base_url):
    response = requests.get(f"{base_url}/login", params={"returnTo": "/" + "a" * 9000})
    assert response.status_code == 400
