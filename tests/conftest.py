"""Fixtures: the real app, served on a loopback port, against a throwaway database.

TEST_DATABASE_URL selects PostgreSQL; the default is a fresh SQLite file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import tempfile
import threading
import uuid
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import flask_migrate
import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

_tmp = tempfile.mkdtemp(prefix="connected-todos-")
os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{_tmp}/test.db"
os.environ["SEED_DEMO"] = "0"
os.environ.pop("PUBLIC_URL", None)

import app as todo_app  # noqa: E402  (the environment above configures it)
from app import db  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
GPT_CALLBACK = "https://chat.openai.com/aip/g-0635bc4d3822cb8e34e6970c89332f8fe4fbd28b/oauth/callback"


def reset_database() -> None:
    """Drop every table, then build the schema the way deployments do: with the migrations."""
    db.drop_all()
    with db.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    flask_migrate.upgrade()


@pytest.fixture(scope="session")
def app():
    flask_app = todo_app.app
    # The suite logs in and calls the API far more often than a person; rate-limit tests set their own.
    for name in (
        "LOGIN_RATE_LIMIT",
        "LOGIN_ACCOUNT_RATE_LIMIT",
        "TOKEN_RATE_LIMIT",
        "REGISTRATION_RATE_LIMIT",
        "API_RATE_LIMIT",
    ):
        flask_app.config[name] = "100000 per minute"
    with flask_app.app_context():
        reset_database()
        todo_app.KEY_CACHES.clear()  # the keys parsed at import belong to the dropped tables
        todo_app.current_signing_key()
    return flask_app


@pytest.fixture(scope="session")
def base_url(app):
    """The app on a real loopback port, served by Werkzeug in a thread."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@dataclass
class Org:
    id: int
    slug: str
    admin_email: str
    member_email: str


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    redirect_uri: str
    extra: dict = field(default_factory=dict)


class World:
    """Makes organizations, members and clients directly in the database."""

    def __init__(self, app, base_url: str) -> None:
        self.app, self.base_url = app, base_url

    def org(self) -> Org:
        with self.app.app_context():
            suffix = secrets.token_hex(4)
            org = todo_app.create_organization(f"Org {suffix}")
            admin = todo_app.create_member(org, f"admin-{suffix}@example.com", "Ada Admin", PASSWORD, "admin")
            member = todo_app.create_member(org, f"member-{suffix}@example.com", "Max Member", PASSWORD, "member")
            db.session.commit()
            return Org(org.id, org.slug, admin.email, member.email)

    def client(
        self,
        redirect_uris=(GPT_CALLBACK,),
        public=False,
        first_party=False,
        scope=todo_app.DEFAULT_CLIENT_SCOPE,
        name="ChatGPT",
    ) -> Client:
        with self.app.app_context():
            client, secret = todo_app.register_client(name, list(redirect_uris), public, first_party, scope)
            return Client(client.client_id, secret, redirect_uris[0])

    def sql(self, statement, **params):
        with self.app.app_context():
            result = db.session.execute(statement, params)
            db.session.commit()
            return result


@pytest.fixture(scope="session")
def world(app, base_url) -> World:
    return World(app, base_url)


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Person:
    """A browser-like session of one person: cookies, CSRF tokens, redirects followed by hand."""

    def __init__(self, base_url: str, email: str, password: str = PASSWORD) -> None:
        self.base_url, self.email, self.password = base_url, email, password
        self.http = requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.url(path), allow_redirects=False, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        return self.http.post(self.url(path), data=data, allow_redirects=False, **kwargs)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def login(self, return_to: str | None = None) -> requests.Response:
        page = self.get("/login")
        data = {"csrf_token": csrf_of(page.text), "email": self.email, "password": self.password}
        if return_to is not None:
            data["returnTo"] = return_to
        return self.post("/login", data)

    def authorize(self, params: dict, decision: str | None = "allow") -> requests.Response:
        """Go to /idp as a client sends the person there; log in and decide when asked."""
        response = self.get("/idp?" + urlencode(params))
        if response.status_code == 302 and response.headers["Location"].startswith("/login"):
            return_to = parse_qs(urlsplit(response.headers["Location"]).query)["returnTo"][0]
            response = self.login(return_to)
            assert response.status_code == 302, response.text
            response = self.get(response.headers["Location"])
        if response.status_code == 200 and 'name="decision"' in response.text and decision:
            response = self.post(response.url, {"csrf_token": csrf_of(response.text), "decision": decision})
        return response


def gpt_params(client: Client, **extra) -> dict:
    """An authorization request exactly as a GPT Action sends it: no PKCE, a UUID state."""
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": "openid,profile,email,todos:read,todos:write",
        "state": str(uuid.uuid4()),
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def callback_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text[:500]
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def token_request(base_url: str, client: Client, data: dict, style: str = "post") -> requests.Response:
    """POST /oauth/token, authenticating with client_secret_post, client_secret_basic or none."""
    data = dict(data)
    auth = None
    if style == "post" and client.client_secret:
        data.update(client_id=client.client_id, client_secret=client.client_secret)
    elif style == "basic":
        auth = (client.client_id, client.client_secret)
    else:
        data["client_id"] = client.client_id
    return requests.post(f"{base_url}/oauth/token", data=data, auth=auth)


def exchange(base_url: str, client: Client, code: str, style: str = "post", **extra) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri, **extra}
    return token_request(base_url, client, data, style)


@pytest.fixture
def org(world) -> Org:
    return world.org()


@pytest.fixture
def gpt(world) -> Client:
    return world.client()


@pytest.fixture
def tokens(base_url, org, gpt) -> dict:
    """A token response for the org's admin, as a GPT Action gets it."""
    person = Person(base_url, org.admin_email)
    code = callback_params(person.authorize(gpt_params(gpt)))["code"]
    response = exchange(base_url, gpt, code)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def tokens_for_fuzz(world) -> str:
    """An MCP access token with every todo scope, for fuzzing /mcp."""
    from test_mcp import mcp_client
    from test_mcp import mcp_token

    return mcp_token(world.base_url, world.org().admin_email, mcp_client(world))["access_token"]
