"""Inputs that must never reach a 500, JWT validation (RFC 9068 §4, RFC 8725), and the rules a
first review found untested."""

import base64
import json
import time
from urllib.parse import urlencode

import pytest
import requests
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import token_request
from joserfc import jwt
from joserfc.jwk import OctKey

import app as todo_app

# JWT validation: each of these is 401 invalid_token.


def mint(app, claims: dict, header: dict | None = None, key=None) -> str:
    with app.app_context():
        signing_key = key or todo_app.current_signing_key()
        header = {"alg": "RS256", "typ": "at+jwt", "kid": signing_key.kid, **(header or {})}
        return jwt.encode(header, claims, signing_key)


def good_claims(base_url, tokens) -> dict:
    segment = tokens["access_token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def me_status(base_url, token) -> int:
    response = requests.get(f"{base_url}/api/me", headers=bearer(token))
    if response.status_code == 401:
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    return response.status_code


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


# Inputs that are not text a database can store, or are out of range: 400s, never 500s.


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        (
            "POST",
            "/oauth/token",
            {"data": "[" * 100000 + "]" * 100000, "headers": {"Content-Type": "application/json"}},
        ),
        (
            "POST",
            "/oauth/token",
            {
                "data": '{"grant_type":"authorization_code","client_id":"\\ud800","client_secret":"x","code":"c"}',
                "headers": {"Content-Type": "application/json"},
            },
        ),
        (
            "POST",
            "/oauth/token",
            {"data": {"grant_type": "authorization_code", "client_id": "\x00", "client_secret": "x", "code": "c"}},
        ),
        (
            "POST",
            "/oauth/token",
            {
                "data": {"grant_type": "authorization_code", "code": "c"},
                "headers": {"Authorization": "Basic " + base64.b64encode(b"\xff:\xff").decode()},
            },
        ),
        (
            "POST",
            "/oauth/token",
            {
                "data": {"grant_type": "authorization_code", "code": "c"},
                "headers": {"Authorization": "Basic !!!not-base64"},
            },
        ),
        ("POST", "/oauth/revoke", {"data": {"token": "\x00", "client_id": "\x00"}}),
        ("POST", "/oauth/introspect", {"data": {"token": "x" * 10000}}),
        (
            "POST",
            "/oauth/register",
            {"data": "[" * 100000 + "]" * 100000, "headers": {"Content-Type": "application/json"}},
        ),
        ("GET", "/idp?client_id=%00&redirect_uri=x", {}),
        ("GET", "/idp?client_id=" + "a" * 9000, {}),
        ("GET", "/login?returnTo=%00", {}),
    ],
)
def test_malformed_input_gets_a_4xx_in_the_protocols_format(base_url, method, path, kwargs):
    response = requests.request(method, base_url + path, **kwargs)
    assert 400 <= response.status_code < 500, response.text[:200]
    if path.startswith("/oauth/"):
        assert response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/todos/2147483648", None),
        ("GET", "/api/todos/99999999999999999999", None),
        ("GET", "/api/todos?cursor=" + base64.urlsafe_b64encode(b"id:2147483648").decode(), None),
        ("GET", "/api/todos?limit=%C2%B2", None),
        ("GET", "/api/todos?limit=%D9%A3", None),
        ("POST", "/api/todos", '{"title": "\\ud800"}'),
        ("POST", "/api/todos", '{"title": "a\\u0000b"}'),
        ("POST", "/api/todos", "[" * 100000 + "]" * 100000),
    ],
)
def test_malformed_api_input_is_a_4xx_json_error(base_url, tokens, method, path, body):
    headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
    response = requests.request(method, base_url + path, data=body, headers=headers)
    assert response.status_code in (400, 404) and response.json()["message"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/nothing"), ("PUT", "/api/todos"), ("GET", "/oauth/token")])
def test_unknown_paths_and_methods_answer_in_the_protocols_format(base_url, method, path):
    response = requests.request(method, base_url + path)
    assert response.status_code in (404, 405)
    body = response.json()
    assert body.get("error") and ("message" in body or "error_description" in body)
    if response.status_code == 405:
        assert response.headers["Allow"]


def test_an_unknown_page_is_a_friendly_page(base_url):
    response = requests.get(f"{base_url}/no-such-page")
    assert response.status_code == 404 and "Page not found" in response.text and "Traceback" not in response.text


# Rules the first review found untested.


def test_a_narrow_request_never_becomes_the_registered_scope(base_url, org, world):
    """A client registered for openid todos:* asks only for scopes it is not registered for."""
    client = world.client(scope="openid todos:read todos:write")
    person = Person(base_url, org.admin_email)
    callback_params(person.authorize(gpt_params(client, scope="openid")))  # consent for openid only
    response = person.get("/idp?" + urlencode(gpt_params(client, scope="email")))
    assert callback_params(response)["error"] == "invalid_scope"


def test_duplicate_scopes_are_granted_once(base_url, org, gpt):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="openid " * 150)))
    assert exchange(base_url, gpt, cb["code"]).json()["scope"] == "openid"


def test_an_unknown_client_is_401_invalid_client(base_url, gpt):
    for auth in [{"data": {"client_id": "nope", "client_secret": "x"}}, {"auth": ("nope", "x")}]:
        data = {"grant_type": "authorization_code", "code": "c", **auth.get("data", {})}
        response = requests.post(f"{base_url}/oauth/token", data=data, auth=auth.get("auth"))
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_token_parameters_come_from_the_body_only_and_only_once(base_url, org, gpt):
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt)))["code"]
    creds = {"client_id": gpt.client_id, "client_secret": gpt.client_secret}
    in_query = requests.post(
        f"{base_url}/oauth/token?grant_type=authorization_code&code={code}",
        data={**creds, "redirect_uri": gpt.redirect_uri},
    )
    assert in_query.status_code == 400 and in_query.json()["error"] in ("unsupported_grant_type", "invalid_request")
    twice = requests.post(
        f"{base_url}/oauth/token",
        data=[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", gpt.redirect_uri),
            ("redirect_uri", "x"),
            *creds.items(),
        ],
    )
    assert twice.status_code == 400 and twice.json()["error"] == "invalid_request"


def test_userinfo_and_the_id_token_hold_only_what_the_scope_allows(base_url, org, gpt):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="openid todos:read")))
    body = exchange(base_url, gpt, cb["code"]).json()
    info = requests.get(f"{base_url}/oauth/userinfo", headers=bearer(body["access_token"])).json()
    assert set(info) == {"sub"}
    claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "=="))
    assert "email" not in claims and "name" not in claims


def test_userinfo_needs_the_openid_scope(base_url, org, gpt):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="todos:read")))
    token = exchange(base_url, gpt, cb["code"]).json()["access_token"]
    response = requests.get(f"{base_url}/oauth/userinfo", headers=bearer(token))
    assert response.status_code == 403 and 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_introspection_accepts_client_secret_post(base_url, gpt, tokens):
    data = {"token": tokens["access_token"], "client_id": gpt.client_id, "client_secret": gpt.client_secret}
    assert requests.post(f"{base_url}/oauth/introspect", data=data).json()["active"] is True


def test_an_unknown_token_type_hint_still_finds_the_token(base_url, gpt, tokens):
    data = {"token": tokens["refresh_token"], "token_type_hint": "something_else"}
    response = requests.post(f"{base_url}/oauth/revoke", data=data, auth=(gpt.client_id, gpt.client_secret))
    assert response.status_code == 200 and me_status(base_url, tokens["access_token"]) == 401


def test_prompt_login_asks_for_the_password_again_without_a_loop(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    person.login()
    params = gpt_params(gpt, prompt="login")
    response = person.authorize(params)
    cb = callback_params(response)
    assert cb["code"] and cb["state"] == params["state"]
    again = person.get("/idp?" + urlencode(params))
    assert again.status_code == 302 and again.headers["Location"].startswith("/login")


def test_max_age_older_than_the_login_asks_again(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    person.login()
    time.sleep(1.1)
    first = person.get("/idp?" + urlencode(gpt_params(gpt, max_age="0")))
    assert first.status_code == 302 and first.headers["Location"].startswith("/login")
    assert callback_params(person.authorize(gpt_params(gpt, max_age="0")))["code"]


def test_prompt_none_without_a_session_is_login_required_even_with_the_default_scope(base_url, gpt):
    params = gpt_params(gpt, scope=None, prompt="none")
    response = requests.get(f"{base_url}/idp", params=params, allow_redirects=False)
    cb = callback_params(response)
    assert cb["error"] == "login_required" and cb["iss"] == base_url


def test_passwords_are_hashed_with_scrypt(world, org):
    import sqlalchemy as sa

    stored = world.sql(sa.text("SELECT password_hash FROM member WHERE email = :e"), e=org.admin_email).scalar()
    assert stored.startswith("scrypt:")


@pytest.mark.parametrize("path", ["/login", "/signup", "/", "/idp?client_id=x"])
def test_pages_cannot_be_framed_and_leak_no_referrer(base_url, path):
    response = requests.get(base_url + path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_gpt_journey_with_an_empty_scope_and_introspection_by_post(base_url, org, gpt):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="")))
    body = exchange(base_url, gpt, cb["code"], "basic").json()
    assert body["scope"] == todo_app.DEFAULT_CLIENT_SCOPE and body["refresh_token"]
    refreshed = token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200
