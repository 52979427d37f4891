"""The token endpoint at work: the GPT journey, JSON bodies, the tokens' contents and PKCE.

Its defences (client authentication, code injection, PKCE downgrade) are in tests/security/."""

import time

import pytest
import requests
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import jwt_part
from conftest import new_code
from conftest import pkce_pair
from conftest import public_code
from conftest import token_request
from joserfc import jwt
from joserfc.jwk import KeySet

# The GPT Action journey end to end: no PKCE, a UUID state, commas in the scope.


@pytest.mark.parametrize("style", ["post", "basic"])
def test_gpt_action_journey(base_url, org, gpt, style):
    nonce = "n-0S6_WzA2Mj"
    params = gpt_params(gpt, scope="openid,profile,email,offline_access,todos:read,todos:write", nonce=nonce)
    person = Person(base_url, org.admin_email)
    cb = callback_params(person.authorize(params))
    assert cb["state"] == params["state"] and cb["iss"] == base_url

    response = exchange(base_url, gpt, cb["code"], style)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope", "id_token"}

    headers = bearer(body["access_token"])
    created = requests.post(f"{base_url}/api/todos", json={"title": "From the GPT"}, headers=headers)
    assert created.status_code == 201
    listed = requests.get(f"{base_url}/api/todos", headers=headers).json()
    assert created.json()["id"] in [t["id"] for t in listed["todos"]]

    refreshed = token_request(
        base_url, gpt, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, style
    )
    assert refreshed.status_code == 200, refreshed.text
    assert requests.get(f"{base_url}/api/me", headers=bearer(refreshed.json()["access_token"])).status_code == 200

    info = requests.get(f"{base_url}/oauth/userinfo", headers=headers).json()
    sub = jwt_part(body["access_token"], 1)["sub"]
    # OIDC Core §5.1: the app never proves a member owns their email, and says so.
    assert info == {"sub": sub, "name": "Ada Admin", "email": org.admin_email, "email_verified": False}
    assert requests.post(f"{base_url}/oauth/userinfo", headers=headers).json() == info

    # The ID token verifies against the published JWKS (OpenID Connect Core §3.1.3.7).
    keys = KeySet.import_key_set(requests.get(f"{base_url}/.well-known/jwks.json").json())
    id_token = jwt.decode(body["id_token"], keys, algorithms=["RS256"])
    claims = id_token.claims
    assert id_token.header["kid"] in [k.kid for k in keys.keys]
    assert claims["iss"] == base_url and gpt.client_id in claims["aud"] and claims["nonce"] == nonce
    assert claims["sub"] == info["sub"] and claims["email"] == org.admin_email and claims["name"] == "Ada Admin"
    assert claims["exp"] > time.time() and claims["iat"] <= time.time() + 1 and claims["auth_time"] <= claims["iat"]


def test_a_json_token_request_body_is_accepted(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": gpt.redirect_uri,
        "client_id": gpt.client_id,
        "client_secret": gpt.client_secret,
    }
    response = requests.post(f"{base_url}/oauth/token", json=data)
    assert response.status_code == 200, response.text


def test_the_access_token_is_an_rfc9068_jwt(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    token = exchange(base_url, gpt, code).json()["access_token"]
    header, claims = jwt_part(token, 0), jwt_part(token, 1)
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256" and header["kid"]
    assert set(claims) >= {"iss", "sub", "aud", "client_id", "scope", "org_id", "iat", "exp", "jti"}
    assert claims["iss"] == base_url and claims["aud"] == f"{base_url}/api" and claims["client_id"] == gpt.client_id
    assert claims["exp"] - claims["iat"] == 3600 and claims["org_id"] == org.id


def test_an_id_token_is_only_issued_with_openid(base_url, org, gpt):
    body = exchange(base_url, gpt, new_code(base_url, org, gpt, scope="todos:read")).json()
    assert "id_token" not in body and body["scope"] == "todos:read"


def test_a_refresh_token_is_issued_without_offline_access(base_url, org, gpt):
    body = exchange(base_url, gpt, new_code(base_url, org, gpt, scope="openid profile email")).json()
    assert body["refresh_token"]


def test_an_unknown_grant_type_is_unsupported(base_url, gpt):
    response = token_request(base_url, gpt, {"grant_type": "password", "username": "a", "password": "b"})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


# PKCE at the token endpoint (RFC 7636 §4.6); its attacks are in security/.


def test_public_client_flow_with_pkce(base_url, org, world):
    verifier, challenge = pkce_pair()
    client, code = public_code(base_url, org, world, challenge)
    response = exchange(base_url, client, code, style="none", code_verifier=verifier)
    assert response.status_code == 200, response.text
    assert requests.get(f"{base_url}/api/todos", headers=bearer(response.json()["access_token"])).status_code == 200


def test_confidential_clients_may_skip_pkce(base_url, org, gpt):
    assert exchange(base_url, gpt, new_code(base_url, org, gpt)).status_code == 200
