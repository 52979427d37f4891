"""The authorization endpoint /idp: client and redirect checks, login, consent, scopes, PKCE,
and RFC 9207's iss on every authorization response."""

from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
from conftest import GPT_CALLBACK
from conftest import Person
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import pkce_pair


def idp(base_url: str, params: dict) -> requests.Response:
    return requests.get(f"{base_url}/idp?" + urlencode(params), allow_redirects=False)


# RFC 6749 §4.1.2.1: without a valid client and redirect URI, never redirect.


def test_unknown_client_gets_an_html_error_page_not_a_redirect(base_url, gpt):
    response = idp(base_url, gpt_params(gpt, client_id="no-such-client"))
    assert response.status_code == 400 and "Location" not in response.headers
    assert "text/html" in response.headers["Content-Type"]
    assert "No app with the client_id" in response.text


def test_missing_client_id_gets_an_html_error_page(base_url, gpt):
    response = idp(base_url, gpt_params(gpt, client_id=None))
    assert response.status_code == 400 and "no client_id" in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        GPT_CALLBACK + "/extra",  # suffix
        GPT_CALLBACK[:-1],  # prefix
        GPT_CALLBACK.upper(),  # case
        GPT_CALLBACK.replace("https", "http"),
        GPT_CALLBACK + "?x=1",
        GPT_CALLBACK.replace("/oauth/", "/oauth/../oauth/"),
        GPT_CALLBACK.replace("https://", "https://user@"),
        GPT_CALLBACK.replace("/aip/", "/aip%2F"),
        "https://evil.test/callback",
    ],
)
def test_an_unregistered_redirect_uri_gets_an_html_error_page(base_url, gpt, redirect_uri):
    response = idp(base_url, gpt_params(gpt, redirect_uri=redirect_uri))
    assert response.status_code == 400 and "Location" not in response.headers
    assert "is not registered for ChatGPT" in response.text


def test_errors_are_checked_after_the_client_even_with_a_bad_response_type(base_url, gpt):
    response = idp(base_url, gpt_params(gpt, redirect_uri="https://evil.test/", response_type="token"))
    assert response.status_code == 400 and "Location" not in response.headers


def test_several_registered_uris_and_none_in_the_request_gets_an_error_page(base_url, world):
    client = world.client(redirect_uris=(GPT_CALLBACK, "https://chatgpt.com/aip/g-1/oauth/callback"))
    response = idp(base_url, gpt_params(client, redirect_uri=None))
    assert response.status_code == 400 and "several redirect URIs" in response.text


def test_the_only_registered_uri_is_used_when_none_is_sent(base_url, org, gpt):
    params = gpt_params(gpt, redirect_uri=None)
    response = Person(base_url, org.admin_email).authorize(params)
    assert response.headers["Location"].startswith(GPT_CALLBACK + "?code=")


def test_repeated_client_id_gets_an_error_page(base_url, gpt):
    query = urlencode(gpt_params(gpt)) + "&client_id=other"
    response = requests.get(f"{base_url}/idp?{query}", allow_redirects=False)
    assert response.status_code == 400 and "more than one client_id" in response.text


# RFC 8252 §7.3: a loopback redirect URI matches on any port.


@pytest.mark.parametrize("port", ["", ":1", ":51004"])
def test_a_loopback_redirect_uri_matches_on_any_port(base_url, org, world, port):
    client = world.client(redirect_uris=("http://127.0.0.1/callback",), public=True)
    _verifier, challenge = pkce_pair()
    params = gpt_params(client, redirect_uri=f"http://127.0.0.1{port}/callback", code_challenge=challenge)
    params["code_challenge_method"] = "S256"
    response = Person(base_url, org.admin_email).authorize(params)
    assert response.headers["Location"].startswith(f"http://127.0.0.1{port}/callback?code=")


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8080/other",
        "http://127.0.0.2:8080/callback",
        "http://localhost:80@evil.test/callback",
        "https://127.0.0.1:8080/callback",
        "http://127.0.0.1:8080/callback#frag",
    ],
)
def test_loopback_matching_still_checks_host_path_and_userinfo(base_url, world, uri):
    client = world.client(redirect_uris=("http://127.0.0.1/callback",), public=True)
    response = idp(base_url, gpt_params(client, redirect_uri=uri))
    assert response.status_code == 400 and "Location" not in response.headers


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


def test_deny_redirects_with_access_denied_state_and_iss(base_url, org, gpt):
    params = gpt_params(gpt)
    cb = callback_params(Person(base_url, org.admin_email).authorize(params, decision="deny"))
    assert cb["error"] == "access_denied" and cb["state"] == params["state"] and cb["iss"] == base_url
    assert "code" not in cb


def test_allow_redirects_with_code_state_and_iss(base_url, org, gpt):
    params = gpt_params(gpt)
    cb = callback_params(Person(base_url, org.admin_email).authorize(params))
    assert set(cb) == {"code", "state", "iss"}
    assert cb["state"] == params["state"] and cb["iss"] == base_url


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


def test_first_party_clients_skip_consent(base_url, org, world):
    client = world.client(first_party=True, name="Our own app")
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(client), decision=None))
    assert "code" in cb


def test_consent_form_needs_its_csrf_token(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    page = person.authorize(gpt_params(gpt), decision=None)
    response = person.post(page.url, {"decision": "allow"})
    assert response.status_code == 400 and "Location" not in response.headers


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


def test_an_unknown_scope_gets_invalid_scope_with_state_and_iss(base_url, gpt):
    params = gpt_params(gpt, scope="openid admin:everything")
    cb = callback_params(idp(base_url, params))
    assert cb["error"] == "invalid_scope" and cb["state"] == params["state"] and cb["iss"] == base_url


def test_an_unsupported_response_type_is_redirected_with_state_and_iss(base_url, gpt):
    params = gpt_params(gpt, response_type="token")
    cb = callback_params(idp(base_url, params))
    assert cb["error"] == "unsupported_response_type" and cb["state"] == params["state"] and cb["iss"] == base_url


# PKCE (RFC 7636), S256 only.


def test_plain_pkce_is_rejected(base_url, gpt):
    verifier, _ = pkce_pair()
    params = gpt_params(gpt, code_challenge=verifier, code_challenge_method="plain")
    assert callback_params(idp(base_url, params))["error"] == "invalid_request"


def test_a_challenge_without_a_method_is_rejected_because_it_would_mean_plain(base_url, gpt):
    _, challenge = pkce_pair()
    params = gpt_params(gpt, code_challenge=challenge)
    assert callback_params(idp(base_url, params))["error"] == "invalid_request"


def test_public_clients_must_send_a_code_challenge(base_url, world):
    client = world.client(redirect_uris=("http://127.0.0.1/cb",), public=True)
    cb = callback_params(idp(base_url, gpt_params(client)))
    assert cb["error"] == "invalid_request" and "code_challenge" in cb["error_description"]
