"""Checks the OpenID conformance suite applies to every flow: the entropy and characters of codes
and tokens, the syntax of errors (RFC 6749 §5.2, §4.1.2.1), and uncacheable token responses."""

import math
import re
import string
from collections import Counter

import pytest
import requests
from conftest import Person
from conftest import callback_params
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
