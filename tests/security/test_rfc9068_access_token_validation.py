"""RFC 9068 §4 and RFC 8725: the resource server checks every access token's signature, algorithm,
type, key, issuer, audience and times, and refuses anything else with 401 invalid_token."""

import base64
import hmac
import http.server
import json
import threading
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
import requests
from conftest import b64
from conftest import bearer
from conftest import good_claims
from conftest import me_status
from conftest import mint
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID
from joserfc.jwk import RSAKey

from connected_todos.keys import current_signing_key


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


def hs256(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing_input.encode(), "sha256").digest())
    return f"{signing_input}.{signature.rstrip(b'=').decode()}"


@pytest.mark.parametrize("form", ["pem", "jwks"])
def test_hs256_signed_with_the_public_key_is_refused(base_url, tokens, form):
    """Algorithm confusion (RFC 8725 §2.1): a verifier that let the token pick HS256 would take the
    published RSA key, as PEM or as the JWKS document, for the HMAC secret."""
    jwks = requests.get(f"{base_url}/.well-known/jwks.json")
    public = RSAKey.import_key(jwks.json()["keys"][0])
    secret = public.as_pem(private=False) if form == "pem" else jwks.content
    header = {"alg": "HS256", "typ": "at+jwt", "kid": public.kid}
    assert me_status(base_url, hs256(header, good_claims(base_url, tokens), secret)) == 401


@pytest.fixture(scope="module")
def attacker():
    """An attacker's RSA key, a self-signed certificate for it, and a server publishing both."""
    key = RSAKey.generate_key(2048)
    private = serialization.load_pem_private_key(key.as_pem(private=True), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    files = {
        "/jwks.json": json.dumps({"keys": [key.as_dict(private=False)]}).encode(),
        "/cert.pem": certificate.public_bytes(serialization.Encoding.PEM),
    }

    class Files(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    der = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
    yield key, f"http://127.0.0.1:{server.server_port}", der
    server.shutdown()


@pytest.mark.parametrize("source", ["jwk", "jku", "x5u", "x5c"])
def test_a_key_named_by_the_token_itself_is_never_trusted(app, base_url, tokens, attacker, source):
    """RFC 8725 §3.10: the token is signed with the attacker's key and names where to find it, in
    the header or at a URL the attacker serves; it carries the real key's kid and valid claims."""
    key, url, der = attacker
    header = {
        "jwk": {"jwk": key.as_dict(private=False)},
        "jku": {"jku": f"{url}/jwks.json"},
        "x5u": {"x5u": f"{url}/cert.pem"},
        "x5c": {"x5c": [der]},
    }[source]
    with app.app_context():
        real_kid = current_signing_key().kid
    token = mint(app, good_claims(base_url, tokens), {"kid": real_kid, **header}, key=key)
    # The control: the signature is good for whoever trusts the key the token names.
    signing_input, _, signature = token.rpartition(".")
    public = serialization.load_pem_public_key(key.as_pem(private=False))
    public.verify(
        base64.urlsafe_b64decode(signature + "=="), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    assert me_status(base_url, token) == 401


@pytest.mark.parametrize("header", [{"typ": "JWT"}, {"kid": "unknown-kid"}])
def test_a_mistyped_token_or_an_unknown_kid_is_refused(app, base_url, tokens, header):
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
    clock.shift(3600 - 5)  # one hour, written out: a longer lifetime must fail here
    assert me_status(base_url, tokens["access_token"]) == 200
    clock.shift(10)
    assert me_status(base_url, tokens["access_token"]) == 401
