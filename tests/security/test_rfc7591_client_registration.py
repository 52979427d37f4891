"""Dynamic registration (RFC 7591) lets anyone name an app: its metadata is checked and escaped, a
self-registered app always meets the consent screen, and registration is rate limited."""

import pytest
import requests
from conftest import Client
from conftest import Person
from conftest import csrf_of
from conftest import gpt_params
from conftest import pkce_pair
from conftest import register


@pytest.mark.parametrize(
    "metadata",
    [
        {"redirect_uris": []},
        {"redirect_uris": "https://a.test/cb"},
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"grant_types": ["client_credentials"]},
        {"response_types": ["token"]},
        {"scope": "admin"},
        {"client_name": 5},
        {"client_uri": "javascript:alert(1)"},
        {"logo_uri": "http://example.com/logo.png"},
        {"client_uri": "https://example.com/" + "x" * 600},
    ],
)
def test_invalid_metadata_is_refused(base_url, metadata):
    response = register(base_url, **metadata)
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_client_metadata", "invalid_redirect_uri")


@pytest.mark.parametrize(
    "name",
    [
        "x" * 101,
        "Evil \u202eTPGtahC",  # a right-to-left override: shows as "Evil ChatGPT"
        "Chat\u200bGPT",  # a zero-width space
        "ChatGPT\nVerified by OpenAI",
        "ChatGPT\u2028Verified by OpenAI",  # a line separator
        "App \U000f0000",  # a private-use character
        "ChatGPT\U000e0041",  # an invisible tag character
        " ",
    ],
)
def test_a_client_name_that_could_pass_for_another_is_refused(base_url, name):
    # RFC 7591 §5: a self-asserted name can impersonate another app; the consent screen shows it.
    response = register(base_url, client_name=name)
    assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata"
    assert "client_name" in response.json()["error_description"]


def test_a_client_name_in_any_script_is_welcome(base_url):
    for name in ["Todo-Assistent für Zürich · 東京 · مساعد", "دستیار\u200cمن", "👩\u200d💻 Dev helper"]:
        assert register(base_url, client_name=name).json()["client_name"] == name  # joiners are welcome


def test_a_self_registered_client_always_sees_consent_and_is_escaped(base_url, org):
    name = '<script>alert("x")</script>'
    assert register(base_url, client_uri="https://example.com/?q=<b>").status_code == 400  # not a URI at all
    body = register(
        base_url,
        client_name=name,
        client_uri="https://example.com/?q=%3Cb%3E",
        token_endpoint_auth_method="none",
        redirect_uris=["http://127.0.0.1/cb"],
    ).json()
    client = Client(body["client_id"], None, "http://127.0.0.1/cb")
    _, challenge = pkce_pair()
    page = Person(base_url, org.admin_email).authorize(
        gpt_params(client, code_challenge=challenge, code_challenge_method="S256"), decision=None
    )
    assert page.status_code == 200 and "registered itself" in page.text and "127.0.0.1" in page.text
    assert name not in page.text and "&lt;script&gt;" in page.text and "<b>" not in page.text


def test_registration_is_rate_limited(app, base_url):
    app.config["REGISTRATION_RATE_LIMIT"] = "3 per minute"
    try:
        statuses = [register(base_url).status_code for _ in range(4)]
        limited = register(base_url)
    finally:
        app.config["REGISTRATION_RATE_LIMIT"] = "100000 per minute"
    assert statuses[:3] == [201, 201, 201] and limited.status_code == 429
    assert limited.json()["error"] == "invalid_request" and int(limited.headers["Retry-After"]) > 0


@pytest.fixture
def closed_registration(app):
    app.config["INITIAL_ACCESS_TOKEN"] = "operator-initial-access-token"
    yield "operator-initial-access-token"
    app.config["INITIAL_ACCESS_TOKEN"] = ""


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, 'Bearer realm="{base_url}"'),  # RFC 6750 §3.1: no error code without a token
        ("Bearer guessed-token", 'Bearer realm="{base_url}", error="invalid_token"'),
        ("Basic b3BlcmF0b3I6c2VjcmV0", 'Bearer realm="{base_url}"'),
    ],
)
def test_closed_registration_needs_the_initial_access_token(base_url, closed_registration, authorization, challenge):
    # RFC 7591 §3: the initial access token is presented as an RFC 6750 bearer token.
    headers = {"Authorization": authorization} if authorization else {}
    body = {"redirect_uris": ["https://claude.ai/api/mcp/auth_callback"]}
    refused = requests.post(f"{base_url}/oauth/register", json=body, headers=headers)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    assert refused.headers["WWW-Authenticate"].startswith(challenge.format(base_url=base_url))
    allowed = requests.post(
        f"{base_url}/oauth/register", json=body, headers={"Authorization": f"Bearer {closed_registration}"}
    )
    assert allowed.status_code == 201 and allowed.json()["client_id"]


def test_registration_is_open_without_an_initial_access_token(base_url):
    assert register(base_url, client_name="Claude").status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client_name", '<script>alert("name")</script>'),
        ("client_uri", 'https://example.com/"><script>alert("uri")</script>'),
        ("logo_uri", 'https://example.com/logo.png"><script>alert("logo")</script>'),
        ("redirect_uris", ['http://127.0.0.1/cb?x="><script>alert("cb")</script>']),
    ],
)
def test_script_in_any_client_field_is_refused_or_escaped_on_every_page(base_url, operator, field, value):
    """A self-registered name, home page, logo or callback reaches the consent, connected-apps, setup
    and audit pages; each either refuses the value or shows it as text."""
    redirect_uri = value[0] if field == "redirect_uris" else "http://127.0.0.1/cb"
    response = register(
        base_url, **{"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", field: value}
    )
    if response.status_code == 400:
        assert response.json()["error"] in ("invalid_client_metadata", "invalid_redirect_uri")
        return
    client = Client(response.json()["client_id"], None, redirect_uri)
    _, challenge = pkce_pair()
    params = gpt_params(client, scope="openid todos:read", code_challenge=challenge, code_challenge_method="S256")
    consent = operator.authorize(params, decision=None)
    assert consent.status_code == 200 and 'name="decision"' in consent.text
    allowed = operator.post(consent.url, {"csrf_token": csrf_of(consent.text), "decision": "allow"})
    assert allowed.status_code in (302, 303)
    pages = ("/settings/connected-apps", "/setup", f"/setup/clients/{client.client_id}", "/setup/audit")
    for page in (consent.text, *(operator.get(p).text for p in pages)):
        assert "<script>alert(" not in page


def test_registration_errors_are_not_cached(base_url):
    # RFC 7591 §3.2.2 answers errors like §3.2.1 answers success: never from a cache.
    response = register(base_url, redirect_uris=[])
    assert response.status_code == 400 and response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("key", ["client_uri", "logo_uri"])
def test_a_client_link_needs_a_host(base_url, key):
    assert register(base_url, **{key: "https:///evil.test/x"}).status_code == 400


def test_the_initial_access_token_comes_only_as_a_bearer_token(base_url, closed_registration):
    # RFC 7591 §3 presents it as an RFC 6750 bearer token; no other scheme, and no cached refusal.
    body = {"redirect_uris": ["https://claude.ai/api/mcp/auth_callback"]}
    other_scheme = {"Authorization": f"Token {closed_registration}"}
    refused = requests.post(f"{base_url}/oauth/register", json=body, headers=other_scheme)
    assert refused.status_code == 401 and refused.headers["Cache-Control"] == "no-store"
    assert refused.headers["WWW-Authenticate"] == f'Bearer realm="{base_url}"'  # RFC 6750 §3.1: no error code
