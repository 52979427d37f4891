"""RFC 9068 §4 and RFC 8725: the resource server checks every access token's signature, algorithm,
type, key, issuer, audience and times, and refuses anything else with 401 invalid_token."""

import time

import pytest
import requests
from conftest import b64
from conftest import bearer
from conftest import good_claims
from conftest import me_status
from conftest import mint
from joserfc import jwt
from joserfc.jwk import OctKey

from app import ACCESS_TOKEN_TTL


def test_a_token_minted_with_the_real_key_and_claims_is_accepted(app, base_url, tokens):
    # The control for the cases below: the minting itself is sound.
    assert me_status(base_url, mint(app, good_claims(base_url, tokens))) == 200


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"iss": "https://evil.test"}, "wrong issuer"),
        ({"aud": "https://evil.test/api"}, "wrong audience"),
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"sub": "999999"}, "another subject than the grant's"),
        ({"client_id": "someone-else"}, "another client than the grant's"),
        ({"org_id": 999999}, "another organization"),
        ({"jti": "unknown"}, "no such token record"),
    ],
)
def test_tokens_with_wrong_claims_are_refused(app, base_url, tokens, change, why):
    assert me_status(base_url, mint(app, {**good_claims(base_url, tokens), **change})) == 401, why


def test_alg_none_is_refused(base_url, tokens):
    claims = good_claims(base_url, tokens)
    token = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims)}."
    assert me_status(base_url, token) == 401


def test_hs256_signed_with_the_public_key_is_refused(app, base_url, tokens):
    public = requests.get(f"{base_url}/.well-known/jwks.json").text.encode()
    key = OctKey.import_key(public)
    token = jwt.encode({"alg": "HS256", "typ": "at+jwt"}, good_claims(base_url, tokens), key)
    assert me_status(base_url, token) == 401


@pytest.mark.parametrize(
    "header",
    [
        {"jku": "https://evil.test/jwks"},
        {"x5u": "https://evil.test/cert"},
        {"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}},
        {"typ": "JWT"},
        {"kid": "unknown-kid"},
    ],
)
def test_headers_that_point_elsewhere_or_mistype_are_refused(app, base_url, tokens, header):
    assert me_status(base_url, mint(app, good_claims(base_url, tokens), header)) == 401


def test_a_token_over_8kb_is_refused_unparsed(app, base_url, tokens):
    claims = {**good_claims(base_url, tokens), "padding": "x" * 9000}
    assert me_status(base_url, mint(app, claims)) == 401


def test_a_tampered_token_gets_invalid_token(base_url, tokens):
    header, payload, signature = tokens["access_token"].split(".")
    tampered = f"{header}.{payload[:-2]}AA.{signature}"
    assert requests.get(f"{base_url}/api/me", headers=bearer(tampered)).status_code == 401


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 9000])
def test_an_invalid_token_gets_invalid_token(base_url, token):
    response = requests.get(f"{base_url}/api/todos", headers=bearer(token))
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_an_access_token_expires_after_an_hour(base_url, tokens, clock):
    assert me_status(base_url, tokens["access_token"]) == 200
    clock.shift(ACCESS_TOKEN_TTL - 5)
    assert me_status(base_url, tokens["access_token"]) == 200
    clock.shift(10)
    assert me_status(base_url, tokens["access_token"]) == 401
