"""Dynamic client registration (RFC 7591) at /oauth/register."""

import json

import pytest
import requests
from conftest import Client
from conftest import Person
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import register


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


@pytest.mark.parametrize("data", [b"not json", b"[]", b"null"])
def test_a_body_that_is_not_a_json_object_is_refused(base_url, data):
    response = requests.post(f"{base_url}/oauth/register", data=data, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata"


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
