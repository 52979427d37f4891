"""Dynamic client registration (RFC 7591) at /oauth/register."""

import json

import pytest
import requests
from conftest import Client
from conftest import Person
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import pkce_pair


def register(base_url, **metadata) -> requests.Response:
    body = {"redirect_uris": ["https://claude.ai/api/mcp/auth_callback"], **metadata}
    return requests.post(f"{base_url}/oauth/register", json=body)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_secret_method_gets_a_secret_that_works(base_url, org, method):
    response = register(
        base_url,
        token_endpoint_auth_method=method,
        client_name="Claude",
        grant_types=["authorization_code", "refresh_token"],
    )
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert (
        body["token_endpoint_auth_method"] == method and body["client_secret"] and body["client_secret_expires_at"] == 0
    )
    assert body["client_id_issued_at"] > 0 and body["redirect_uris"] == ["https://claude.ai/api/mcp/auth_callback"]
    client = Client(body["client_id"], body["client_secret"], body["redirect_uris"][0])
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(client)))["code"]
    assert exchange(base_url, client, code, style=method.removeprefix("client_secret_")).status_code == 200


def test_auth_method_none_gets_no_secret(base_url):
    body = register(base_url, token_endpoint_auth_method="none").json()
    assert "client_secret" not in body and body["token_endpoint_auth_method"] == "none"


def test_an_omitted_auth_method_is_rfc7591s_default_client_secret_basic(base_url):
    body = register(base_url).json()
    assert body["token_endpoint_auth_method"] == "client_secret_basic" and body["client_secret"]
    assert body["grant_types"] == ["authorization_code"] and body["response_types"] == ["code"]


def test_unknown_fields_are_ignored(base_url):
    response = register(base_url, application_type="native", resource="x", software_id="abc", jwks_uri=None)
    assert response.status_code == 201 and "software_id" not in response.json()


def test_the_secret_is_stored_hashed(base_url, world):
    import sqlalchemy as sa

    body = register(base_url).json()
    stored = world.sql(
        sa.text("SELECT client_secret_hash FROM client WHERE client_id = :c"), c=body["client_id"]
    ).scalar()
    assert stored != body["client_secret"] and len(stored) == 64


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "http://example.com/cb",
        "https://example.com/cb#fragment",
        "https://user:pw@example.com/cb",
        "/relative",
        "",
    ],
)
def test_unsafe_redirect_uris_are_refused(base_url, uri):
    response = register(base_url, redirect_uris=[uri])
    assert response.status_code == 400 and response.json()["error"] == "invalid_redirect_uri"


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:33418/callback",
        "http://localhost/callback",
        "http://[::1]:8080/cb",
        "cursor://anysphere.cursor-retrieval/oauth/callback",
        "com.example.app:/oauth",
        "https://chatgpt.com/connector/oauth/abc",
    ],
)
def test_loopback_native_and_https_redirect_uris_are_accepted(base_url, uri):
    assert register(base_url, redirect_uris=[uri], token_endpoint_auth_method="none").status_code == 201


@pytest.mark.parametrize(
    "metadata",
    [
        {"redirect_uris": []},
        {"redirect_uris": "https://a.test/cb"},
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"grant_types": ["client_credentials"]},
        {"response_types": ["token"]},
        {"scope": "admin"},
        {"client_name": "x" * 201},
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


@pytest.mark.parametrize("data", [b"not json", b"[]", b"null"])
def test_a_body_that_is_not_a_json_object_is_refused(base_url, data):
    response = requests.post(f"{base_url}/oauth/register", data=data, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata"


def test_a_self_registered_client_always_sees_consent_and_is_escaped(base_url, org):
    name = '<script>alert("x")</script>'
    body = register(
        base_url,
        client_name=name,
        client_uri="https://example.com/?q=<b>",
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
    assert limited.json()["error"] == "temporarily_unavailable" and int(limited.headers["Retry-After"]) > 0


def test_prune_clients_lists_and_deletes_unused_registrations(app, base_url, world):
    import sqlalchemy as sa

    unused = register(base_url, client_name="Never used").json()["client_id"]
    world.sql(sa.text("UPDATE client SET created_at = '2000-01-01 00:00:00' WHERE client_id = :c"), c=unused)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["prune-clients"])
    assert unused in listed.output and "Never used" in listed.output
    assert world.sql(sa.text("SELECT count(*) FROM client WHERE client_id = :c"), c=unused).scalar() == 1
    deleted = runner.invoke(args=["prune-clients", "--delete"])
    assert "deleted" in deleted.output
    assert world.sql(sa.text("SELECT count(*) FROM client WHERE client_id = :c"), c=unused).scalar() == 0


def test_registration_answers_json_errors_never_html(base_url):
    response = requests.post(f"{base_url}/oauth/register", data="x=1")
    assert response.status_code == 400 and json.loads(response.text)["error"]
