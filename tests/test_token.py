"""The token endpoint: client authentication, codes, PKCE at exchange, token contents."""

import base64
import json
import threading
import time

import pytest
import requests
import sqlalchemy as sa
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import pkce_pair
from conftest import token_request
from joserfc import jwt
from joserfc.jwk import KeySet


def new_code(base_url, org, client, **extra) -> str:
    return callback_params(Person(base_url, org.admin_email).authorize(gpt_params(client, **extra)))["code"]


def jwt_part(token: str, index: int) -> dict:
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


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
    assert info == {"sub": jwt_part(body["access_token"], 1)["sub"], "name": "Ada Admin", "email": org.admin_email}
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


# Client authentication (RFC 6749 §2.3, §5.2).


@pytest.mark.parametrize("secret", ["wrong", ""])
@pytest.mark.parametrize("style", ["post", "basic"])
def test_a_wrong_or_missing_secret_gets_invalid_client_401(base_url, org, gpt, secret, style):
    code = new_code(base_url, org, gpt)
    response = exchange(base_url, gpt.__class__(gpt.client_id, secret, gpt.redirect_uri), code, style)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_confidential_client_cannot_use_auth_method_none(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    response = exchange(base_url, gpt, code, style="none")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_an_unknown_grant_type_is_unsupported(base_url, gpt):
    response = token_request(base_url, gpt, {"grant_type": "password", "username": "a", "password": "b"})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


# Authorization codes (RFC 6749 §4.1.2, §10.5; RFC 9700 §4.5).


def test_a_code_has_at_least_128_bits_and_is_stored_hashed(base_url, org, gpt, world):
    code = new_code(base_url, org, gpt)
    assert len(code) >= 43 and code.isalnum()
    stored = world.sql(sa.text("SELECT code_hash FROM authorization_code")).scalars().all()
    assert code not in stored and all(len(h) == 64 for h in stored)


def test_a_code_redeemed_twice_fails_and_revokes_the_first_tokens(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    first = exchange(base_url, gpt, code).json()
    assert requests.get(f"{base_url}/api/me", headers=bearer(first["access_token"])).status_code == 200
    second = exchange(base_url, gpt, code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert requests.get(f"{base_url}/api/me", headers=bearer(first["access_token"])).status_code == 401
    refresh = token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"


def test_an_expired_code_is_invalid_grant(base_url, org, gpt, world):
    code = new_code(base_url, org, gpt)
    world.sql(sa.text("UPDATE authorization_code SET expires_at = :past"), past="2000-01-01 00:00:00")
    response = exchange(base_url, gpt, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_code_lives_at_most_five_minutes(base_url, org, gpt, world):
    new_code(base_url, org, gpt)
    row = world.sql(sa.text("SELECT expires_at FROM authorization_code ORDER BY id DESC LIMIT 1")).scalar()
    from app import utcnow

    expires_at = row if not isinstance(row, str) else __import__("datetime").datetime.fromisoformat(row)
    assert 0 < (expires_at - utcnow()).total_seconds() <= 300


def test_a_code_is_bound_to_its_client(base_url, org, gpt, world):
    other = world.client(name="Other")
    code = new_code(base_url, org, gpt)
    response = exchange(base_url, other.__class__(other.client_id, other.client_secret, gpt.redirect_uri), code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert exchange(base_url, gpt, code).status_code == 200  # the rightful client still can


def test_a_code_is_bound_to_its_redirect_uri(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    response = token_request(
        base_url,
        gpt,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://chatgpt.com/aip/g-other/oauth/callback",
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_of_concurrent_redemptions_exactly_one_succeeds(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    responses: list[requests.Response] = []
    barrier = threading.Barrier(20)

    def redeem() -> None:
        barrier.wait()
        responses.append(exchange(base_url, gpt, code))

    threads = [threading.Thread(target=redeem) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in responses) == [200] + [400] * 19
    # The replays are an attack on the code (RFC 9700 §4.5): the one token issued is revoked.
    token = next(r.json()["access_token"] for r in responses if r.status_code == 200)
    assert requests.get(f"{base_url}/api/me", headers=bearer(token)).status_code == 401


# PKCE at the token endpoint (RFC 7636 §4.6, RFC 9700 §4.8).


def public_code(base_url, org, world, challenge):
    client = world.client(redirect_uris=("http://127.0.0.1/cb",), public=True, name="CLI")
    extra = {"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}
    return client, new_code(base_url, org, client, **extra)


def test_public_client_flow_with_pkce(base_url, org, world):
    verifier, challenge = pkce_pair()
    client, code = public_code(base_url, org, world, challenge)
    response = exchange(base_url, client, code, style="none", code_verifier=verifier)
    assert response.status_code == 200, response.text
    assert requests.get(f"{base_url}/api/todos", headers=bearer(response.json()["access_token"])).status_code == 200


def test_a_wrong_code_verifier_is_invalid_grant(base_url, org, world):
    _, challenge = pkce_pair()
    client, code = public_code(base_url, org, world, challenge)
    response = exchange(base_url, client, code, style="none", code_verifier=pkce_pair()[0])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_missing_code_verifier_is_rejected_when_a_challenge_was_sent(base_url, org, gpt):
    _, challenge = pkce_pair()
    code = new_code(base_url, org, gpt, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(base_url, gpt, code)  # a confidential client too
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_code_verifier_without_a_challenge_is_rejected(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    response = exchange(base_url, gpt, code, code_verifier=pkce_pair()[0])
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_confidential_clients_may_skip_pkce(base_url, org, gpt):
    assert exchange(base_url, gpt, new_code(base_url, org, gpt)).status_code == 200
