"""private_key_jwt client authentication (RFC 7523 §2.2 and §3, OIDC Core §9), as ChatGPT's
metadata document declares it: keys at a jwks_uri, or inline in the document."""

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
from conftest import Person
from conftest import b64
from conftest import callback_params
from conftest import pkce_pair
from conftest import rpc
from joserfc import jwt
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet
from joserfc.jwk import RSAKey

from connected_todos.models import ClientMetadataDocument
from connected_todos.models import db
from connected_todos.models import utcnow

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CALLBACK = "https://agent.example/oauth/callback"


class Agent:
    """An app that signs its own assertions, as ChatGPT does, with its document on the test host."""

    def __init__(self, base_url: str, documents, inline: bool = False) -> None:
        self.base_url, self.documents = base_url, documents
        self.key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4), "use": "sig"})
        name = secrets.token_hex(6)
        self.client_id = documents.url(f"/agents/{name}.json")
        self.jwks_path = f"/agents/{name}-jwks.json"
        document = {
            "client_id": self.client_id,
            "client_name": "Signing Agent",
            "redirect_uris": [CALLBACK],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "private_key_jwt",
        }
        if inline:
            document["jwks"] = self.public_keys()
        else:
            document["jwks_uri"] = documents.url(self.jwks_path)
            self.publish_keys()
        documents.put(urlsplit(self.client_id).path, document, Cache_Control="max-age=300")

    def public_keys(self, *extra) -> dict:
        return KeySet([self.key, *extra]).as_dict(private=False)

    def publish_keys(self, *extra) -> None:
        self.documents.put(self.jwks_path, self.public_keys(*extra), Cache_Control="max-age=300")

    def assertion(self, key=None, header: dict | None = None, **claims) -> str:
        now = int(time.time())
        key = key or self.key
        body = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.base_url,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        return jwt.encode({"alg": "RS256", "kid": key.kid, **(header or {})}, body, key)

    def authenticated(self, assertion: str | None = None, **data) -> dict:
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion or self.assertion(), **data}

    def code(self, org) -> tuple[str, str]:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": CALLBACK,
            "scope": "todos:read todos:write",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return callback_params(Person(self.base_url, org.admin_email).authorize(params))["code"], verifier

    def token(self, data: dict) -> requests.Response:
        return requests.post(f"{self.base_url}/oauth/token", data=data)

    def exchange(self, org, **overrides) -> requests.Response:
        code, verifier = self.code(org)
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier}
        return self.token({**self.authenticated(), **data, **overrides})


def assert_invalid_client(response: requests.Response, words: str = "") -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client" and words in response.json().get("error_description", "")


@pytest.mark.parametrize("inline", [False, True], ids=["jwks_uri", "inline jwks"])
def test_an_app_that_signs_its_assertions_gets_refreshes_revokes_and_introspects(base_url, org, documents, inline):
    agent = Agent(base_url, documents, inline)
    response = agent.exchange(org)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert "tools" in rpc(base_url, tokens["access_token"], "tools/list").json()["result"]
    # A confidential client: its refresh token is kept, with a sliding lifetime (not rotated).
    renewed = agent.token(agent.authenticated(grant_type="refresh_token", refresh_token=tokens["refresh_token"]))
    assert renewed.status_code == 200 and "refresh_token" not in renewed.json()
    described = requests.post(f"{base_url}/oauth/introspect", data=agent.authenticated(token=tokens["access_token"]))
    assert described.json()["active"] is True and described.json()["client_id"] == agent.client_id
    revoked = requests.post(f"{base_url}/oauth/revoke", data=agent.authenticated(token=tokens["refresh_token"]))
    assert revoked.status_code == 200
    assert rpc(base_url, tokens["access_token"], "tools/list").status_code == 401


def test_the_audience_may_be_the_issuer_or_the_token_endpoint_rfc7523_3(base_url, org, documents):
    agent = Agent(base_url, documents)
    for audience in (base_url, f"{base_url}/oauth/token", [base_url]):
        assert agent.exchange(org, client_assertion=agent.assertion(aud=audience)).status_code == 200


@pytest.mark.parametrize(
    "audience",
    ["https://elsewhere.example", ["http://127.0.0.1:1", "x"], None],
    ids=["another server", "two audiences", "none"],
)
def test_a_wrong_audience_is_refused_rfc7523_3_item_3(base_url, org, documents, audience):
    agent = Agent(base_url, documents)
    claims = {"aud": audience} if audience is not None else {"aud": None}
    assert_invalid_client(agent.exchange(org, client_assertion=agent.assertion(**claims)), "aud")


def test_a_replayed_jti_is_refused_oidc_core_9(base_url, org, documents):
    agent = Agent(base_url, documents)
    assertion = agent.assertion()
    assert agent.exchange(org, client_assertion=assertion).status_code == 200
    assert_invalid_client(agent.exchange(org, client_assertion=assertion), "JWT ID")


def test_an_assertion_signed_by_another_key_is_refused(base_url, org, documents):
    agent = Agent(base_url, documents)
    stranger = RSAKey.generate_key(2048, parameters={"kid": agent.key.kid})  # the same kid, another key
    assert_invalid_client(agent.exchange(org, client_assertion=agent.assertion(key=stranger)))


def test_an_hmac_assertion_keyed_with_the_public_key_is_refused_rfc8725_3_1(base_url, org, documents):
    # The old algorithm-confusion forgery: HS256, with the published public key as the secret.
    agent = Agent(base_url, documents)
    header = b64({"alg": "HS256", "kid": agent.key.kid})
    payload = b64({"iss": agent.client_id, "sub": agent.client_id, "aud": base_url, "exp": int(time.time()) + 60})
    signed = f"{header}.{payload}".encode()
    signature = hmac.new(agent.key.as_pem(private=False), signed, hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert_invalid_client(agent.exchange(org, client_assertion=forged))


def test_a_missing_assertion_is_refused(base_url, org, documents):
    agent = Agent(base_url, documents)
    code, verifier = agent.code(org)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier}
    assert_invalid_client(agent.token({**data, "client_id": agent.client_id}))  # as if public
    assert_invalid_client(agent.token({**data, "client_assertion_type": ASSERTION_TYPE, "client_id": agent.client_id}))


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"exp": None}, "exp"),
        ({"exp": int(time.time()) + 3600}, "exp must be at most"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"jti": None}, "JWT ID"),
        ({"iss": "https://someone.example/client.json"}, ""),
        ({"nbf": int(time.time()) + 600}, ""),
    ],
    ids=["no exp", "exp an hour away", "expired", "no jti", "iss differs from sub", "not yet valid"],
)
def test_the_claims_rules_rfc7523_3(base_url, org, documents, claims, words):
    agent = Agent(base_url, documents)
    assertion = agent.assertion(**claims)
    if None in claims.values():
        body = {"iss": agent.client_id, "sub": agent.client_id, "aud": base_url, "exp": int(time.time()) + 60}
        body.update({"jti": str(uuid.uuid4())})
        body = {k: v for k, v in {**body, **claims}.items() if v is not None}
        assertion = jwt.encode({"alg": "RS256", "kid": agent.key.kid}, body, agent.key)
    assert_invalid_client(agent.exchange(org, client_assertion=assertion), words)


def test_a_client_id_beside_the_assertion_must_be_its_sub_rfc7521_4_2(base_url, org, documents):
    agent = Agent(base_url, documents)
    other = Agent(base_url, documents)
    assert_invalid_client(agent.exchange(org, client_id=other.client_id))


def test_a_key_rotated_in_at_the_jwks_uri_is_found(app, base_url, org, documents):
    agent = Agent(base_url, documents)
    assert agent.exchange(org).status_code == 200
    newer = ECKey.generate_key("P-256", parameters={"kid": "rotated", "use": "sig"})
    agent.publish_keys(newer)  # the kept set is fresh for five minutes, but this kid is new
    with app.app_context():  # an unknown kid fetches the set again, at most once a minute
        a_minute_ago = utcnow() - timedelta(seconds=61)
        db.session.execute(sa.update(ClientMetadataDocument).values(jwks_attempted_at=a_minute_ago))
        db.session.commit()
    assertion = jwt.encode(
        {"alg": "ES256", "kid": "rotated"},
        {
            "iss": agent.client_id,
            "sub": agent.client_id,
            "aud": base_url,
            "exp": int(time.time()) + 60,
            "jti": str(uuid.uuid4()),
        },
        newer,
    )
    assert agent.exchange(org, client_assertion=assertion).status_code == 200


def test_keys_that_cannot_be_fetched_refuse_the_assertion(base_url, org, documents):
    agent = Agent(base_url, documents)
    documents.put(agent.jwks_path, b"", status=404)
    assert_invalid_client(agent.exchange(org), "keys could not be read")


def test_a_private_key_in_the_key_set_refuses_it_cimd_4_1(base_url, org, documents):
    agent = Agent(base_url, documents)
    documents.put(agent.jwks_path, KeySet([agent.key]).as_dict(private=True))
    assert_invalid_client(agent.exchange(org), "private key material")


def test_an_assertion_with_a_secret_too_is_refused_rfc6749_2_3(base_url, org, documents):
    agent = Agent(base_url, documents)
    assert_invalid_client(agent.exchange(org, client_secret="x"), "one way")
