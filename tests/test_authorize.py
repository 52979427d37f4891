"""The authorization endpoint /idp at work: login, consent and its memory, prompt, and scopes.

Its defences (redirect URIs, PKCE, mix-up, CSRF) are in tests/security/."""

from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from conftest import GPT_CALLBACK
from conftest import Person
from conftest import callback_params
from conftest import csrf_of
from conftest import exchange
from conftest import gpt_params
from conftest import idp


def test_the_only_registered_uri_is_used_when_none_is_sent(base_url, org, gpt):
    params = gpt_params(gpt, redirect_uri=None)
    response = Person(base_url, org.admin_email).authorize(params)
    assert response.headers["Location"].startswith(GPT_CALLBACK + "?code=")


# Login and consent.


def test_a_person_who_is_not_logged_in_is_sent_to_login_with_the_whole_request(base_url, gpt):
    params = gpt_params(gpt)
    response = idp(base_url, params)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    return_to = parse_qs(location.query)["returnTo"][0]
    assert return_to.startswith("/idp?") and parse_qs(urlsplit(return_to).query) == {k: [v] for k, v in params.items()}


def test_consent_page_names_the_client_host_organization_and_scopes(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    page = person.authorize(gpt_params(gpt), decision=None)
    assert page.status_code == 200
    for text in (
        "ChatGPT",
        "chat.openai.com",
        f"Org {org.slug.removeprefix('org-')}",
        "See your email address",
        "See your organization&#39;s todos",
        'name="decision" value="allow"',
        'name="decision" value="deny"',
    ):
        assert text in page.text


def test_consent_is_remembered_for_the_same_scopes_or_fewer(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    callback_params(person.authorize(gpt_params(gpt)))
    again = person.get("/idp?" + urlencode(gpt_params(gpt, scope="openid todos:read")))
    assert again.status_code == 302 and "code=" in again.headers["Location"]


def test_a_wider_scope_asks_again(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    callback_params(person.authorize(gpt_params(gpt, scope="openid")))
    again = person.get("/idp?" + urlencode(gpt_params(gpt, scope="openid todos:write")))
    assert again.status_code == 200 and 'name="decision"' in again.text


def test_prompt_consent_shows_the_page_again(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    callback_params(person.authorize(gpt_params(gpt)))
    again = person.get("/idp?" + urlencode(gpt_params(gpt, prompt="consent")))
    assert again.status_code == 200 and 'name="decision"' in again.text


def test_first_party_clients_skip_consent(base_url, org, world):
    client = world.client(first_party=True, name="Our own app")
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(client), decision=None))
    assert "code" in cb


# Scopes (RFC 6749 §3.3).


@pytest.mark.parametrize(
    ("scope", "granted"),
    [
        ("openid,profile,email", "openid profile email"),
        ("openid profile email", "openid profile email"),
        ("openid, todos:read", "openid todos:read"),
        ("", "openid profile email offline_access todos:read todos:write"),
        (None, "openid profile email offline_access todos:read todos:write"),
    ],
)
def test_scope_may_use_commas_or_spaces_and_empty_means_the_registered_default(base_url, org, gpt, scope, granted):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope=scope)))
    response = exchange(base_url, gpt, cb["code"])
    assert response.json()["scope"] == granted


def test_an_authorization_request_may_come_by_post(base_url, org, gpt):
    """OIDC Core §3.1.2.1: the authorization endpoint supports GET and POST (form-encoded)."""
    params = gpt_params(gpt)
    person = Person(base_url, org.admin_email)
    person.login()
    response = person.post("/idp", params)  # no CSRF token: the request itself changes nothing
    assert response.status_code == 303
    location = response.headers["Location"]
    assert parse_qs(urlsplit(location).query) == {k: [v] for k, v in params.items()}
    consent = person.get(location)
    assert 'name="decision"' in consent.text
    cb = callback_params(person.post(consent.url, {"csrf_token": csrf_of(consent.text), "decision": "allow"}))
    assert cb["code"] and cb["state"] == params["state"]


@pytest.mark.parametrize("prompt", ["none consent", "login none", "none select_account"])
def test_prompt_none_with_another_value_is_an_error_oidc_core_3_1_2_1(base_url, org, gpt, prompt):
    person = Person(base_url, org.admin_email)
    person.login()
    answer = callback_params(person.get("/idp?" + urlencode(gpt_params(gpt, prompt=prompt))))
    assert answer["error"] == "invalid_request" and "state" in answer
