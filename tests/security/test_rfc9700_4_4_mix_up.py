"""RFC 9700 §4.4 (mix-up): every authorization response, success or error, carries the issuer in
``iss`` (RFC 9207 §2) and the client's ``state`` unchanged."""

from urllib.parse import urlencode

import requests
from conftest import Person
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import idp


def test_allow_redirects_with_code_state_and_iss(base_url, org, gpt):
    params = gpt_params(gpt)
    cb = callback_params(Person(base_url, org.admin_email).authorize(params))
    assert set(cb) == {"code", "state", "iss"}
    assert cb["state"] == params["state"] and cb["iss"] == base_url


def test_deny_redirects_with_access_denied_state_and_iss(base_url, org, gpt):
    params = gpt_params(gpt)
    cb = callback_params(Person(base_url, org.admin_email).authorize(params, decision="deny"))
    assert cb["error"] == "access_denied" and cb["state"] == params["state"] and cb["iss"] == base_url
    assert "code" not in cb


def test_an_unknown_scope_gets_invalid_scope_with_state_and_iss(base_url, gpt):
    params = gpt_params(gpt, scope="openid admin:everything")
    cb = callback_params(idp(base_url, params))
    assert cb["error"] == "invalid_scope" and cb["state"] == params["state"] and cb["iss"] == base_url


def test_an_unsupported_response_type_is_redirected_with_state_and_iss(base_url, gpt):
    params = gpt_params(gpt, response_type="token")
    cb = callback_params(idp(base_url, params))
    assert cb["error"] == "unsupported_response_type" and cb["state"] == params["state"] and cb["iss"] == base_url


def test_prompt_none_without_consent_gets_consent_required(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    person.login()
    params = gpt_params(gpt, prompt="none")
    cb = callback_params(person.get("/idp?" + urlencode(params)))
    assert cb["error"] == "consent_required" and cb["state"] == params["state"] and cb["iss"] == base_url


def test_prompt_none_without_login_gets_login_required(base_url, gpt):
    params = gpt_params(gpt, prompt="none")
    cb = callback_params(idp(base_url, params))
    assert cb["error"] == "login_required" and cb["state"] == params["state"] and cb["iss"] == base_url


def test_prompt_none_without_a_session_is_login_required_even_with_the_default_scope(base_url, gpt):
    params = gpt_params(gpt, scope=None, prompt="none")
    response = requests.get(f"{base_url}/idp", params=params, allow_redirects=False)
    cb = callback_params(response)
    assert cb["error"] == "login_required" and cb["iss"] == base_url and cb["state"] == params["state"]


def test_the_issuer_is_spelled_the_same_in_tokens_and_responses(base_url, org, gpt):
    from conftest import Person

    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt)))
    body = exchange(base_url, gpt, cb["code"]).json()
    from test_token import jwt_part

    assert cb["iss"] == jwt_part(body["access_token"], 1)["iss"] == jwt_part(body["id_token"], 1)["iss"] == base_url
