"""Checks the OpenID conformance suite applies to every flow (security reference §2.4), and the
top-40 items not proven elsewhere: RFC 9700 §4.11 (303 after POST), §4.7 and §4.14 (CSRF)."""

import math
import re
import string
from collections import Counter

import pytest
import requests
from conftest import Person
from conftest import callback_params
from conftest import csrf_of
from conftest import exchange
from conftest import gpt_params
from conftest import token_request

ALLOWED_ERROR_DESCRIPTION = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")  # RFC 6749 §5.2
TOKEN_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "temporarily_unavailable",
}


def entropy_bits(value: str) -> float:
    """A pessimistic estimate: length times the log2 of the characters actually used."""
    return len(value) * math.log2(max(len(Counter(value)), 2))


def test_codes_and_tokens_have_enough_entropy_and_safe_characters(base_url, org, gpt):
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt)))["code"]
    body = exchange(base_url, gpt, code).json()
    safe = set(string.ascii_letters + string.digits + "-._~")
    for name, value in [("code", code), ("refresh_token", body["refresh_token"]), ("client_secret", gpt.client_secret)]:
        assert set(value) <= safe, name
        assert entropy_bits(value) >= 128, name
    assert set(body["access_token"]) <= safe  # a JWT: base64url segments and dots


@pytest.mark.parametrize(
    "data",
    [
        {"grant_type": "authorization_code", "code": "nope"},
        {"grant_type": "refresh_token", "refresh_token": "nope"},
        {"grant_type": "password", "username": "a", "password": "b"},
        {"grant_type": "authorization_code"},
        {},
    ],
)
def test_token_errors_have_the_rfc6749_syntax(base_url, gpt, data):
    response = token_request(base_url, gpt, data)
    assert response.status_code in (400, 401) and response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] in TOKEN_ERRORS
    assert ALLOWED_ERROR_DESCRIPTION.fullmatch(body.get("error_description", ""))
    assert set(body) <= {"error", "error_description", "error_uri"}


def test_authorization_errors_carry_only_the_allowed_parameters(base_url, gpt):
    response = requests.get(f"{base_url}/idp", params=gpt_params(gpt, scope="nonsense"), allow_redirects=False)
    params = callback_params(response)
    assert set(params) <= {"error", "error_description", "error_uri", "state", "iss"}
    assert ALLOWED_ERROR_DESCRIPTION.fullmatch(params.get("error_description", ""))


def test_every_token_response_is_uncacheable_json_bearer_with_expires_in(base_url, org, gpt):
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt)))["code"]
    first = exchange(base_url, gpt, code)
    second = token_request(
        base_url, gpt, {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}
    )
    for response in (first, second):
        body = response.json()
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
        assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int) and body["expires_in"] > 0


def test_the_consent_post_answers_302_or_303_never_307(base_url, org, gpt):
    """RFC 9700 §4.11: a 307 would make the browser re-send the form, password fields included."""
    for decision in ("allow", "deny"):
        response = Person(base_url, org.admin_email).authorize(gpt_params(gpt, prompt="consent"), decision=decision)
        assert response.status_code in (302, 303)


@pytest.mark.parametrize("token_kind", ["wrong", "another session's"])
def test_a_consent_post_with_a_foreign_csrf_token_gets_no_code(base_url, org, gpt, token_kind):
    victim = Person(base_url, org.admin_email)
    page = victim.authorize(gpt_params(gpt, prompt="consent"), decision=None)
    if token_kind == "wrong":
        token = "not-a-token"
    else:
        attacker = Person(base_url, org.member_email)
        token = csrf_of(attacker.authorize(gpt_params(gpt, prompt="consent"), decision=None).text)
    response = victim.post(page.url, {"csrf_token": token, "decision": "allow"})
    assert response.status_code == 400 and "Location" not in response.headers


def test_hsts_over_https_only(base_url):
    """RFC 9700 §4.1.1 rests on TLS: behind a TLS proxy every answer pins https."""
    secure = requests.get(f"{base_url}/login", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "Strict-Transport-Security" not in requests.get(f"{base_url}/login").headers
