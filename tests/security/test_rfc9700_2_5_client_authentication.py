"""RFC 9700 §2.5 and RFC 6749 §2.3: a confidential client proves itself with its secret on every
call; any failure is 401 invalid_client (§5.2); secrets are stored hashed; guessing is throttled."""

import base64

import pytest
import requests
from conftest import Client
from conftest import exchange
from conftest import introspect
from conftest import new_code
from conftest import register
from conftest import setting
from conftest import token_request


@pytest.mark.parametrize("secret", ["wrong", ""])
@pytest.mark.parametrize("style", ["post", "basic"])
def test_a_wrong_or_missing_secret_gets_invalid_client_401(base_url, org, gpt, secret, style):
    code = new_code(base_url, org, gpt)
    response = exchange(base_url, gpt.__class__(gpt.client_id, secret, gpt.redirect_uri), code, style)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_an_unknown_client_is_401_invalid_client(base_url, gpt):
    for auth in [{"data": {"client_id": "nope", "client_secret": "x"}}, {"auth": ("nope", "x")}]:
        data = {"grant_type": "authorization_code", "code": "c", **auth.get("data", {})}
        response = requests.post(f"{base_url}/oauth/token", data=data, auth=auth.get("auth"))
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_confidential_client_cannot_use_auth_method_none(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    response = exchange(base_url, gpt, code, style="none")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_the_secret_is_stored_hashed(base_url, world):
    import sqlalchemy as sa

    body = register(base_url).json()
    stored = world.sql(
        sa.text("SELECT client_secret_hash FROM client WHERE client_id = :c"), c=body["client_id"]
    ).scalar()
    assert stored != body["client_secret"] and len(stored) == 64


def test_repeated_failed_client_authentications_are_throttled(app, base_url, org, gpt, world):
    """RFC 6749 §2.3.1: guessing a secret is throttled per client and address, across the token,
    revocation and introspection endpoints; from another address the client still gets in."""
    wrong = Client(gpt.client_id, "wrong secret", gpt.redirect_uri)
    other = world.client(name="Other")
    elsewhere = {"X-Forwarded-For": "203.0.113.7"}  # ProxyFix trusts one proxy hop
    with setting(app, "CLIENT_AUTH_RATE_LIMIT", "3 per minute"):
        guesses = [
            token_request(base_url, wrong, {"grant_type": "authorization_code", "code": "x"}),
            requests.post(f"{base_url}/oauth/revoke", data={"token": "x"}, auth=(gpt.client_id, "wrong secret")),
            introspect(base_url, wrong, "x"),
        ]
        throttled = [
            token_request(base_url, wrong, {"grant_type": "authorization_code", "code": "x"}),
            requests.post(f"{base_url}/oauth/revoke", data={"token": "x"}, auth=(gpt.client_id, "wrong secret")),
            introspect(base_url, wrong, "x"),
        ]
        with_the_right_secret = exchange(base_url, gpt, new_code(base_url, org, gpt))
        from_elsewhere = requests.post(
            f"{base_url}/oauth/introspect",
            data={"token": "x"},
            auth=(gpt.client_id, gpt.client_secret),
            headers=elsewhere,
        )
        another_client = introspect(base_url, Client(other.client_id, "wrong secret", ""), "x")
    assert [r.status_code for r in guesses] == [401, 401, 401]
    assert [r.status_code for r in throttled] == [429, 429, 429]
    assert all(r.json()["error"] == "invalid_request" and int(r.headers["Retry-After"]) > 0 for r in throttled)
    assert with_the_right_secret.status_code == 429  # from this address, until the minute passes
    assert from_elsewhere.status_code == 200 and another_client.status_code == 401


def test_successful_client_authentications_are_not_counted(app, base_url, gpt, tokens):
    with setting(app, "CLIENT_AUTH_RATE_LIMIT", "2 per minute"):
        responses = [introspect(base_url, gpt, tokens["access_token"]) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5


def test_credentials_sent_two_ways_at_once_are_refused(app, base_url, org, gpt):
    """RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request. Were
    both accepted, a throwaway client_id in the header could carry guesses past the throttle."""
    decoy = base64.b64encode(b"no-such-client:x").decode()
    with setting(app, "CLIENT_AUTH_RATE_LIMIT", "3 per minute"):
        statuses = [
            requests.post(
                f"{base_url}/oauth/introspect",
                data={"token": "x", "client_id": gpt.client_id, "client_secret": secret},
                headers={"Authorization": f"Basic {decoy}"},
            ).status_code
            for secret in ("guess 1", "guess 2", gpt.client_secret)
        ]
    assert statuses == [401, 401, 401]  # even the right secret, sent beside another credential
    code = new_code(base_url, org, gpt)
    both = requests.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": gpt.redirect_uri,
            "client_id": gpt.client_id,
            "client_secret": gpt.client_secret,
        },
        auth=(gpt.client_id, gpt.client_secret),
    )
    assert both.status_code == 401 and both.json()["error"] == "invalid_client"


def test_a_public_client_with_a_stray_basic_header_is_refused(base_url, org, world):
    # RFC 6749 §2.3: credentials that are sent must authenticate; a decoy header is not ignored.
    from conftest import Person
    from conftest import callback_params
    from conftest import gpt_params
    from conftest import mcp_client
    from conftest import pkce_pair

    client = mcp_client(world)
    verifier, challenge = pkce_pair()
    params = gpt_params(client, scope="todos:read", code_challenge=challenge, code_challenge_method="S256")
    code = callback_params(Person(base_url, org.admin_email).authorize(params))["code"]
    decoy = base64.b64encode(b"no-such-client:guess").decode()
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri}
    data.update(client_id=client.client_id, code_verifier=verifier)
    response = requests.post(f"{base_url}/oauth/token", headers={"Authorization": f"Basic {decoy}"}, data=data)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_only_failed_authentications_count_towards_the_throttle(app, base_url, gpt):
    # An authenticated client whose grants are bad is not guessing secrets: invalid_grant, never 429.
    with setting(app, "CLIENT_AUTH_RATE_LIMIT", "2 per minute"):
        bad_code = {"grant_type": "authorization_code", "code": "nope", "redirect_uri": gpt.redirect_uri}
        statuses = [token_request(base_url, gpt, bad_code).status_code for _ in range(4)]
    assert statuses == [400] * 4
