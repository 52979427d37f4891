"""Refresh tokens, revocation (RFC 7009) and introspection (RFC 7662)."""

from datetime import datetime
from datetime import timedelta

import requests
import sqlalchemy as sa
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import pkce_pair
from conftest import token_request


def refresh(base_url, client, refresh_token, style="post", **extra):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return token_request(base_url, client, data, style)


def public_tokens(base_url, org, world):
    client = world.client(redirect_uris=("http://127.0.0.1/cb",), public=True, name="CLI")
    verifier, challenge = pkce_pair()
    params = gpt_params(client, code_challenge=challenge, code_challenge_method="S256")
    code = callback_params(Person(base_url, org.admin_email).authorize(params))["code"]
    return client, exchange(base_url, client, code, style="none", code_verifier=verifier).json()


def api_status(base_url, access_token) -> int:
    return requests.get(f"{base_url}/api/me", headers=bearer(access_token)).status_code


def test_refresh_tokens_are_stored_hashed(base_url, tokens, world):
    stored = world.sql(sa.text("SELECT token_hash FROM refresh_token")).scalars().all()
    assert tokens["refresh_token"] not in stored and len(tokens["refresh_token"]) >= 43


def test_confidential_refresh_tokens_are_not_rotated(base_url, gpt, tokens):
    for _ in range(3):
        response = refresh(base_url, gpt, tokens["refresh_token"])
        assert response.status_code == 200 and "refresh_token" not in response.json()
        assert response.headers["Cache-Control"] == "no-store"
    assert api_status(base_url, tokens["access_token"]) == 200  # earlier access tokens stay valid


def test_confidential_refresh_slides_the_lifetime(base_url, gpt, tokens, world):
    from app import sha256
    from app import utcnow

    soon = utcnow() + timedelta(days=1)
    world.sql(sa.text("UPDATE refresh_token SET expires_at = :soon"), soon=soon)
    assert refresh(base_url, gpt, tokens["refresh_token"]).status_code == 200
    row = world.sql(
        sa.text("SELECT expires_at FROM refresh_token WHERE token_hash = :h"), h=sha256(tokens["refresh_token"])
    ).scalar()
    expires_at = row if isinstance(row, datetime) else datetime.fromisoformat(row)
    assert expires_at > utcnow() + timedelta(days=89)


def test_a_refresh_can_narrow_but_never_widen_the_scope(base_url, org, gpt):
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="openid todos:read")))[
        "code"
    ]
    body = exchange(base_url, gpt, code).json()
    wider = refresh(base_url, gpt, body["refresh_token"], scope="openid todos:read todos:write")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrower = refresh(base_url, gpt, body["refresh_token"], scope="todos:read")
    assert narrower.status_code == 200 and narrower.json()["scope"] == "todos:read"


def test_a_refresh_token_is_bound_to_its_client(base_url, world, tokens):
    other = world.client(name="Other")
    response = refresh(base_url, other, tokens["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_an_expired_refresh_token_is_invalid_grant(base_url, gpt, tokens, world):
    world.sql(sa.text("UPDATE refresh_token SET expires_at = '2000-01-01 00:00:00'"))
    assert refresh(base_url, gpt, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_public_refresh_tokens_rotate_and_a_replay_revokes_the_grant(base_url, org, world):
    client, body = public_tokens(base_url, org, world)
    first = refresh(base_url, client, body["refresh_token"], style="none")
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != body["refresh_token"]
    second = refresh(base_url, client, rotated["refresh_token"], style="none")
    assert second.status_code == 200
    # Replaying a rotated token: RFC 9700 §4.14.2 reuse detection revokes the whole grant.
    replay = refresh(base_url, client, body["refresh_token"], style="none")
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert api_status(base_url, second.json()["access_token"]) == 401
    assert refresh(base_url, client, second.json()["refresh_token"], style="none").json()["error"] == "invalid_grant"


def test_revoking_a_refresh_token_cuts_off_the_grant(base_url, gpt, tokens):
    data = {"token": tokens["refresh_token"], "client_id": gpt.client_id, "client_secret": gpt.client_secret}
    response = requests.post(f"{base_url}/oauth/revoke", data=data)
    assert response.status_code == 200
    assert api_status(base_url, tokens["access_token"]) == 401
    assert refresh(base_url, gpt, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_an_access_token_with_basic_auth_and_a_wrong_hint(base_url, gpt, tokens):
    data = {"token": tokens["access_token"], "token_type_hint": "refresh_token"}
    response = requests.post(f"{base_url}/oauth/revoke", data=data, auth=(gpt.client_id, gpt.client_secret))
    assert response.status_code == 200
    assert api_status(base_url, tokens["access_token"]) == 401
    assert refresh(base_url, gpt, tokens["refresh_token"]).status_code == 200  # the refresh token lives on


def test_revoking_an_unknown_token_answers_200(base_url, gpt):
    response = requests.post(
        f"{base_url}/oauth/revoke", data={"token": "not-a-token"}, auth=(gpt.client_id, gpt.client_secret)
    )
    assert response.status_code == 200


def test_a_client_cannot_revoke_another_clients_token(base_url, world, tokens):
    other = world.client(name="Other")
    response = requests.post(
        f"{base_url}/oauth/revoke", data={"token": tokens["refresh_token"]}, auth=(other.client_id, other.client_secret)
    )
    assert response.status_code == 400
    assert api_status(base_url, tokens["access_token"]) == 200


def test_revocation_needs_client_authentication(base_url, tokens):
    response = requests.post(f"{base_url}/oauth/revoke", data={"token": tokens["refresh_token"]})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert api_status(base_url, tokens["access_token"]) == 200


def test_a_public_client_revokes_its_own_refresh_token(base_url, org, world):
    client, body = public_tokens(base_url, org, world)
    response = requests.post(
        f"{base_url}/oauth/revoke", data={"token": body["refresh_token"], "client_id": client.client_id}
    )
    assert response.status_code == 200
    assert api_status(base_url, body["access_token"]) == 401


def introspect(base_url, client, token, **extra):
    return requests.post(
        f"{base_url}/oauth/introspect", data={"token": token, **extra}, auth=(client.client_id, client.client_secret)
    )


def test_introspection_describes_the_clients_own_tokens(base_url, org, gpt, tokens):
    access = introspect(base_url, gpt, tokens["access_token"]).json()
    assert access["active"] is True and access["client_id"] == gpt.client_id and access["aud"] == f"{base_url}/api"
    assert access["scope"] == tokens["scope"] and access["iss"] == base_url
    refresh_info = introspect(base_url, gpt, tokens["refresh_token"], token_type_hint="access_token").json()
    assert refresh_info["active"] is True and refresh_info["sub"] == access["sub"] and "token_type" not in refresh_info


def test_introspection_of_another_clients_or_a_revoked_token_is_inactive(base_url, world, gpt, tokens):
    other = world.client(name="Other")
    assert introspect(base_url, other, tokens["access_token"]).json() == {"active": False}
    assert introspect(base_url, gpt, "garbage").json() == {"active": False}
    requests.post(
        f"{base_url}/oauth/revoke", data={"token": tokens["refresh_token"]}, auth=(gpt.client_id, gpt.client_secret)
    )
    assert introspect(base_url, gpt, tokens["access_token"]).json() == {"active": False}


def test_introspection_needs_client_authentication(base_url, tokens):
    response = requests.post(f"{base_url}/oauth/introspect", data={"token": tokens["access_token"]})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_a_rejected_public_refresh_rotates_nothing(base_url, org, world):
    client, body = public_tokens(base_url, org, world)
    wider = refresh(base_url, client, body["refresh_token"], style="none", scope="openid todos:read admin")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    assert refresh(base_url, client, body["refresh_token"], style="none").status_code == 200
