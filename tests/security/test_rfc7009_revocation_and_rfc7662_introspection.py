"""Revocation (RFC 7009) and introspection (RFC 7662): only for the client's own tokens, after client
authentication; unknown tokens get 200 or inactive, and a wrong hint still finds the token."""

import requests
from conftest import introspect
from conftest import me_status
from conftest import public_tokens
from conftest import refresh


def test_revocation_needs_client_authentication(base_url, tokens):
    response = requests.post(f"{base_url}/oauth/revoke", data={"token": tokens["refresh_token"]})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert me_status(base_url, tokens["access_token"]) == 200


def test_revoking_an_unknown_token_answers_200(base_url, gpt):
    response = requests.post(
        f"{base_url}/oauth/revoke", data={"token": "not-a-token"}, auth=(gpt.client_id, gpt.client_secret)
    )
    assert response.status_code == 200


def test_revoking_an_access_token_with_basic_auth_and_a_wrong_hint(base_url, gpt, tokens):
    data = {"token": tokens["access_token"], "token_type_hint": "refresh_token"}
    response = requests.post(f"{base_url}/oauth/revoke", data=data, auth=(gpt.client_id, gpt.client_secret))
    assert response.status_code == 200
    assert me_status(base_url, tokens["access_token"]) == 401
    assert refresh(base_url, gpt, tokens["refresh_token"]).status_code == 200  # the refresh token lives on


def test_an_unknown_token_type_hint_still_finds_the_token(base_url, gpt, tokens):
    data = {"token": tokens["refresh_token"], "token_type_hint": "something_else"}
    response = requests.post(f"{base_url}/oauth/revoke", data=data, auth=(gpt.client_id, gpt.client_secret))
    assert response.status_code == 200 and me_status(base_url, tokens["access_token"]) == 401


def test_revoking_a_refresh_token_cuts_off_the_grant(base_url, gpt, tokens):
    data = {"token": tokens["refresh_token"], "client_id": gpt.client_id, "client_secret": gpt.client_secret}
    response = requests.post(f"{base_url}/oauth/revoke", data=data)
    assert response.status_code == 200
    assert me_status(base_url, tokens["access_token"]) == 401
    assert refresh(base_url, gpt, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_public_client_revokes_its_own_refresh_token(base_url, org, world):
    client, body = public_tokens(base_url, org, world)
    response = requests.post(
        f"{base_url}/oauth/revoke", data={"token": body["refresh_token"], "client_id": client.client_id}
    )
    assert response.status_code == 200
    assert me_status(base_url, body["access_token"]) == 401


def test_a_client_cannot_revoke_another_clients_token(base_url, world, tokens):
    other = world.client(name="Other")
    response = requests.post(
        f"{base_url}/oauth/revoke", data={"token": tokens["refresh_token"]}, auth=(other.client_id, other.client_secret)
    )
    assert response.status_code == 400
    assert me_status(base_url, tokens["access_token"]) == 200


def test_introspection_needs_client_authentication(base_url, tokens):
    response = requests.post(f"{base_url}/oauth/introspect", data={"token": tokens["access_token"]})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_a_public_client_cannot_introspect_even_its_own_token(base_url, org, world):
    # RFC 7662 §2.1 and §4: a client_id is no authentication, or anyone could probe tokens with one.
    client, body = public_tokens(base_url, org, world)
    for data in ({"client_id": client.client_id}, {"client_id": client.client_id, "client_secret": ""}):
        response = requests.post(f"{base_url}/oauth/introspect", data={"token": body["access_token"], **data})
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        assert "active" not in response.json()


def test_introspection_describes_the_clients_own_tokens(base_url, org, gpt, tokens):
    access = introspect(base_url, gpt, tokens["access_token"]).json()
    assert access["active"] is True and access["client_id"] == gpt.client_id and access["aud"] == f"{base_url}/api"
    assert access["scope"] == tokens["scope"] and access["iss"] == base_url
    refresh_info = introspect(base_url, gpt, tokens["refresh_token"], token_type_hint="access_token").json()
    assert refresh_info["active"] is True and refresh_info["sub"] == access["sub"] and "token_type" not in refresh_info


def test_introspection_accepts_client_secret_post(base_url, gpt, tokens):
    data = {"token": tokens["access_token"], "client_id": gpt.client_id, "client_secret": gpt.client_secret}
    assert requests.post(f"{base_url}/oauth/introspect", data=data).json()["active"] is True


def test_introspection_of_another_clients_or_a_revoked_token_is_inactive(base_url, world, gpt, tokens):
    other = world.client(name="Other")
    assert introspect(base_url, other, tokens["access_token"]).json() == {"active": False}
    assert introspect(base_url, gpt, "garbage").json() == {"active": False}
    requests.post(
        f"{base_url}/oauth/revoke", data={"token": tokens["refresh_token"]}, auth=(gpt.client_id, gpt.client_secret)
    )
    assert introspect(base_url, gpt, tokens["access_token"]).json() == {"active": False}
