"""RFC 9700 §4.1 and §4.13: no URI a request names is ever registered, and the issuer never
follows a Host or X-Forwarded-Host header an attacker chose. This closes the chain in which a
forged Host at /playground registered an attacker's callback for the first-party playground client,
whose codes then went, without a consent page, to the attacker."""

import json
import logging

import pytest
import requests
import sqlalchemy as sa
from conftest import KEY_ENCRYPTION_KEY
from conftest import Person
from conftest import idp
from conftest import pkce_pair
from conftest import setting

from connected_todos import create_app
from connected_todos.operators import PLAYGROUND_CLIENT_ID
from connected_todos.operators import ensure_playground_client

FORGED = [{"Host": "evil.example"}, {"X-Forwarded-Host": "evil.example"}]
GET_PATHS = ["/playground", "/playground/callback", "/.well-known/openid-configuration", "/openapi.yaml", "/idp"]


def playground_redirect_uris(world) -> list[str]:
    query = sa.text("SELECT redirect_uris FROM client WHERE client_id = :c")
    stored = world.sql(query, c=PLAYGROUND_CLIENT_ID).scalar()
    return json.loads(stored) if isinstance(stored, str) else stored


def registry_snapshot(world) -> tuple:
    clients = world.sql(sa.text("SELECT client_id, redirect_uris FROM client ORDER BY id")).all()
    audit = world.sql(sa.text("SELECT count(*) FROM audit_event")).scalar()
    return [tuple(map(str, row)) for row in clients], audit


@pytest.mark.parametrize("headers", FORGED)
@pytest.mark.parametrize("path", GET_PATHS)
def test_a_forged_host_is_refused_and_changes_nothing(base_url, world, path, headers):
    before = registry_snapshot(world)
    response = requests.get(base_url + path, headers=headers, allow_redirects=False)
    assert response.status_code == 400 and "evil.example" not in response.text
    assert "Location" not in response.headers
    assert registry_snapshot(world) == before


def test_without_public_url_a_forwarded_scheme_cannot_become_the_issuer(base_url):
    forged = {"X-Forwarded-Proto": "http://evil.example/?"}
    answer = requests.get(f"{base_url}/.well-known/oauth-authorization-server", headers=forged)
    assert answer.status_code == 400 and "evil" not in answer.text


def test_the_bearer_challenge_realm_never_follows_a_forged_host(base_url):
    response = requests.post(f"{base_url}/mcp", json={}, headers={"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 400 and "evil.example" not in response.headers.get("WWW-Authenticate", "")


def test_no_get_changes_the_registry(base_url, world):
    before = registry_snapshot(world)
    for path in [*GET_PATHS, "/", "/login", "/signup"]:
        assert requests.get(base_url + path, allow_redirects=False).status_code < 500
    assert registry_snapshot(world) == before


def test_the_takeover_chain_ends_at_an_error_page(base_url, org, world):
    # The attacker's crafted link names the playground and their own callback; a logged-in member
    # who opens it must see an error page, and no code may leave for the attacker's host.
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": PLAYGROUND_CLIENT_ID,
        "redirect_uri": "http://evil.example/playground/callback",
        "scope": "openid todos:read todos:write",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    for headers in FORGED:
        requests.get(f"{base_url}/playground", headers=headers)
    member = Person(base_url, org.admin_email)
    member.login()
    answer = member.get("/idp", params=params)
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert not any("evil.example" in uri for uri in playground_redirect_uris(world))
    assert idp(base_url, params).status_code == 400


def test_the_playground_callback_is_a_path_on_the_apps_own_origin(app, base_url, org, world):
    # Stored as a path, it is always PUBLIC_URL's, or in development the loopback origin the app
    # answers on: not another loopback port, where any local process could take the code.
    world.sql(
        sa.text("UPDATE client SET redirect_uris = :u WHERE client_id = :c"),
        u=json.dumps(["http://evil.example/playground/callback"]),
        c=PLAYGROUND_CLIENT_ID,
    )
    with app.app_context():
        ensure_playground_client()  # at start-up: a row from before loses its other callbacks
    assert playground_redirect_uris(world) == ["/playground/callback"]
    _, challenge = pkce_pair()
    person = Person(base_url, org.admin_email)
    for callback, allowed in [
        (f"{base_url}/playground/callback", True),
        ("http://127.0.0.1:1/playground/callback", False),
    ]:
        params = {
            "response_type": "code",
            "client_id": PLAYGROUND_CLIENT_ID,
            "redirect_uri": callback,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        answer = person.authorize(params)
        assert answer.headers.get("Location", "").startswith(callback) is allowed, answer.text[:300]


def test_with_public_url_nothing_follows_the_host_header(app, base_url):
    with setting(app, "PUBLIC_URL", "https://todos.example.com"), setting(app, "TRUSTED_HOSTS", None):
        forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
        metadata = requests.get(f"{base_url}/.well-known/oauth-authorization-server", headers=forged).json()
        challenge = requests.get(f"{base_url}/api/me", headers=forged).headers["WWW-Authenticate"]
        playground = requests.get(f"{base_url}/playground", headers=forged).text
    assert metadata["issuer"] == "https://todos.example.com" and "evil" not in str(metadata)
    assert 'realm="https://todos.example.com"' in challenge and "evil" not in challenge
    assert 'data-redirect-uri="https://todos.example.com/playground/callback"' in playground


def test_outside_development_the_app_refuses_to_start_without_public_url(tmp_path):
    # The refusal is in create_app, so it holds under flask run, gunicorn or any other WSGI server.
    config = {
        "APP_ENV": "production",
        "SECRET_KEY": "s" * 40,
        "PUBLIC_URL": "",
        "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY,
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path}/never.db"
    with pytest.raises(SystemExit, match="PUBLIC_URL is not set"):
        create_app(config)


def test_development_without_public_url_says_so_in_the_log(tmp_path, caplog):
    config = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/dev.db", "PUBLIC_URL": "", "SEED_DEMO": False}
    logging.getLogger("connected_todos").addHandler(caplog.handler)  # the app's logger does not propagate
    try:
        create_app(config)
    finally:
        logging.getLogger("connected_todos").removeHandler(caplog.handler)
    warnings = [r for r in caplog.records if "PUBLIC_URL is not set" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
