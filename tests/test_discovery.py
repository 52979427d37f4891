"""Discovery (RFC 8414, OpenID Connect Discovery), the issuer, and the signing keys."""

import pytest
import requests
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import setting


def test_both_metadata_documents_are_the_same_and_valid(base_url):
    oidc = requests.get(f"{base_url}/.well-known/openid-configuration").json()
    oauth = requests.get(f"{base_url}/.well-known/oauth-authorization-server").json()
    assert oidc == oauth
    assert oidc["issuer"] == base_url
    assert oidc["authorization_endpoint"] == f"{base_url}/idp"
    assert oidc["token_endpoint"] == f"{base_url}/oauth/token"
    assert oidc["code_challenge_methods_supported"] == ["S256"]
    assert oidc["authorization_response_iss_parameter_supported"] is True
    methods = {"client_secret_basic", "client_secret_post", "none", "private_key_jwt"}
    assert set(oidc["token_endpoint_auth_methods_supported"]) == methods
    # RFC 8414 §2: required with private_key_jwt; asymmetric algorithms only, never "none".
    algorithms = oidc["token_endpoint_auth_signing_alg_values_supported"]
    assert "RS256" in algorithms and not {"none", "HS256", "HS384", "HS512"} & set(algorithms)
    # draft-ietf-oauth-client-id-metadata-document §6; Claude also looks for "none" above.
    assert oidc["client_id_metadata_document_supported"] is True
    assert set(oidc["scopes_supported"]) >= {
        "openid",
        "profile",
        "email",
        "offline_access",
        "todos:read",
        "todos:write",
    }
    # Only what the server does: code flow, query responses, RS256, and no unauthenticated introspection.
    assert oidc["response_types_supported"] == ["code"] and oidc["response_modes_supported"] == ["query"]
    assert oidc["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert oidc["request_parameter_supported"] is False and oidc["request_uri_parameter_supported"] is False
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "none" not in oidc["introspection_endpoint_auth_methods_supported"]
    AuthorizationServerMetadata(oauth).validate()
    OpenIDProviderMetadata(oidc).validate()


def test_without_public_url_the_issuer_is_the_loopback_origin_and_no_other_host_is_served(base_url):
    # RFC 9700 §4.13: an issuer taken from the request may only ever be a loopback origin.
    metadata = requests.get(f"{base_url}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == base_url and metadata["jwks_uri"] == f"{base_url}/.well-known/jwks.json"
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "todos.example.com"}
    refused = requests.get(f"{base_url}/.well-known/openid-configuration", headers=forged)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"


def test_public_url_sets_the_issuer_without_a_trailing_slash(app, base_url):
    with setting(app, "PUBLIC_URL", "https://todos.example.com"):
        https = {"X-Forwarded-Proto": "https"}  # an https PUBLIC_URL is served over https only
        metadata = requests.get(f"{base_url}/.well-known/oauth-authorization-server", headers=https).json()
    assert metadata["issuer"] == "https://todos.example.com"


def test_jwks_publishes_public_keys_only(base_url):
    keys = requests.get(f"{base_url}/.well-known/jwks.json").json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["kid"] and k["use"] == "sig" and "d" not in k for k in keys)


def test_rotating_the_key_keeps_the_previous_one_published(app, base_url, org, gpt):
    from conftest import Person

    runner = app.test_cli_runner()
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt)))["code"]
    old_token = exchange(base_url, gpt, code).json()["access_token"]
    result = runner.invoke(args=["rotate-keys"])
    assert result.exit_code == 0, result.output
    kids = [k["kid"] for k in requests.get(f"{base_url}/.well-known/jwks.json").json()["keys"]]
    assert len(kids) == 2 and result.output.split()[-1] == kids[0]
    assert requests.get(f"{base_url}/api/me", headers=bearer(old_token)).status_code == 200
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt)))["code"]
    from test_token import jwt_part

    assert jwt_part(exchange(base_url, gpt, code).json()["access_token"], 0)["kid"] == kids[0]
    runner.invoke(args=["rotate-keys"])
    kids_after = [k["kid"] for k in requests.get(f"{base_url}/.well-known/jwks.json").json()["keys"]]
    assert len(kids_after) == 2 and kids[0] in kids_after and kids[1] not in kids_after
    # The old token's signature was verified before, but its key is gone: it no longer counts.
    assert requests.get(f"{base_url}/api/me", headers=bearer(old_token)).status_code == 401


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/jwks.json"])
def test_discovery_documents_are_json(base_url, path):
    assert requests.get(f"{base_url}{path}").headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("suffix", "resource"), [("", "/mcp"), ("/mcp", "/mcp"), ("/api", "/api")])
def test_each_protected_resource_describes_itself(base_url, suffix, resource):
    # RFC 9728 §3: the metadata at a resource's well-known path names that resource and no other.
    metadata = requests.get(f"{base_url}/.well-known/oauth-protected-resource{suffix}").json()
    assert metadata["resource"] == base_url + resource and metadata["authorization_servers"] == [base_url]
    assert metadata["bearer_methods_supported"] == ["header"]
    assert metadata["scopes_supported"] == ["todos:read", "todos:write"]
    # RFC 9728 §5.1: a request without a token is pointed at that same document.
    unauthorized = (
        requests.post(f"{base_url}/mcp", json={}) if resource == "/mcp" else requests.get(f"{base_url}/api/me")
    )
    expected = f'resource_metadata="{base_url}/.well-known/oauth-protected-resource{resource}"'
    assert expected in unauthorized.headers["WWW-Authenticate"]
