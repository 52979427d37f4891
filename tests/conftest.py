"""Fixtures: the real app, served on a loopback port, against a throwaway database.

TEST_DATABASE_URL selects PostgreSQL; the default is a fresh SQLite file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
import time_machine
from document_host import DocumentHost
from joserfc import jwt
from werkzeug.serving import make_server

from connected_todos import create_app
from connected_todos import settings
from connected_todos.keys import current_signing_key
from connected_todos.keys import forget_keys
from connected_todos.models import db
from connected_todos.registry import create_member
from connected_todos.registry import create_organization
from connected_todos.registry import register_client
from connected_todos.rules import DEFAULT_CLIENT_SCOPE
from connected_todos.web import limiter

# The key-encryption key of the apps the tests start in other processes (production needs one).
KEY_ENCRYPTION_KEY = "EQbMhR1OxR4Ld4Bn3sLyIJjz0mHp9_dOM8SlK8UT0Zc="
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
MCP_VERSION = {"MCP-Protocol-Version": "2025-11-25"}
MCP_TOOLS = {"whoami", "list_todos", "add_todo", "update_todo", "complete_todo", "delete_todo", "search", "fetch"}
GPT_CALLBACK = "https://chat.openai.com/aip/g-0635bc4d3822cb8e34e6970c89332f8fe4fbd28b/oauth/callback"


def empty_database(url: str) -> None:
    """Drop every table a previous run left, so that the app builds its schema the way
    deployments do: with the migrations, when it starts."""
    engine = sa.create_engine(url)
    tables = sa.MetaData()
    tables.reflect(engine)
    tables.drop_all(engine)
    engine.dispose()


def app_config(database_url: str) -> dict:
    """The settings of an app under test, whatever the environment of the test run says."""
    return {
        "APP_ENV": "development",
        "SQLALCHEMY_DATABASE_URI": settings.database_url(database_url, ""),
        "SEED_DEMO": False,
        "PUBLIC_URL": "",
        "TRUSTED_PROXIES": 1,
        "INITIAL_ACCESS_TOKEN": "",
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        # The suite logs in and calls the API far more often than a person; rate-limit tests set their own.
        **{name: "100000 per minute" for name in settings.RATE_LIMITS},
    }


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    database_url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db')}/test.db"
    config = app_config(database_url)
    empty_database(config["SQLALCHEMY_DATABASE_URI"])
    return create_app(config)


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
            org = create_organization(f"Org {suffix}")
            admin = create_member(org, f"admin-{suffix}@example.com", "Ada Admin", PASSWORD, "admin")
            member = create_member(org, f"member-{suffix}@example.com", "Max Member", PASSWORD, "member")
            db.session.commit()
            return Org(org.id, org.slug, admin.email, member.email)

    def client(
        self,
        redirect_uris=(GPT_CALLBACK,),
        public=False,
        first_party=False,
        scope=DEFAULT_CLIENT_SCOPE,
        name="ChatGPT",
    ) -> Client:
        with self.app.app_context():
            client, secret = register_client(
                name, list(redirect_uris), public=public, first_party=first_party, scope=scope
            )
            return Client(client.client_id, secret, redirect_uris[0])

    def sql(self, statement, **params):
        with self.app.app_context():
            result = db.session.execute(statement, params)
            db.session.commit()
            return result


@pytest.fixture(scope="session")
def document_host(tmp_path_factory) -> DocumentHost:
    """A loopback https host for client metadata documents and key sets, with its own test CA."""
    host = DocumentHost(tmp_path_factory.mktemp("document-host"))
    yield host
    host.close()


@pytest.fixture
def documents(app, document_host, monkeypatch) -> DocumentHost:
    """The document host, as the app trusts it within one test: its CA, and loopback allowed."""
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):  # the app reads either
        monkeypatch.setenv(variable, str(document_host.ca))
    with setting(app, "CIMD_ALLOW_LOOPBACK", True):
        yield document_host


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


# The real browser: Debian's chromium, driven by Playwright.
CHROMIUM = "/usr/bin/chromium"
# SCREENSHOT_DIR lets a second run at the same time (CI's PostgreSQL pass) keep its pictures apart.
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or Path(__file__).parent.parent / "docs" / "screenshots")


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


def shot(page, name: str) -> None:
    """A screenshot for the README, of the page as the test left it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


@pytest.fixture
def org(world) -> Org:
    return world.org()


@pytest.fixture
def operator(app, base_url, org) -> Person:
    """The org's admin, made an operator of this deployment, signed in."""
    result = app.test_cli_runner().invoke(args=["make-operator", "--org", org.slug, org.admin_email])
    assert result.exit_code == 0, result.output
    person = Person(base_url, org.admin_email)
    person.login()
    return person


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


@pytest.fixture
def clock(app):
    """The process's clock, the served app's included, under the test's control: ``clock.shift(s)``
    moves every reading of the time (codes, tokens, JWT checks) ``s`` seconds on, and it keeps ticking."""
    with time_machine.travel(datetime.now(UTC), tick=True) as traveller:
        yield traveller
    # What was cached or counted in the future must not outlive the journey.
    with app.app_context():
        forget_keys()
    limiter.reset()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def tokens_for_fuzz(world) -> str:
    """An MCP access token with every todo scope, for fuzzing /mcp."""
    from test_mcp import mcp_client
    from test_mcp import mcp_token

    return mcp_token(world.base_url, world.org().admin_email, mcp_client(world))["access_token"]


# Helpers shared by the topic tests and the security suite.


def idp(base_url: str, params: dict) -> requests.Response:
    return requests.get(f"{base_url}/idp?" + urlencode(params), allow_redirects=False)


def new_code(base_url, org, client, **extra) -> str:
    return callback_params(Person(base_url, org.admin_email).authorize(gpt_params(client, **extra)))["code"]


def jwt_part(token: str, index: int) -> dict:
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def public_code(base_url, org, world, challenge):
    client = world.client(redirect_uris=("http://127.0.0.1/cb",), public=True, name="CLI")
    extra = {"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}
    return client, new_code(base_url, org, client, **extra)


def mint(app, claims: dict, header: dict | None = None, key=None) -> str:
    with app.app_context():
        signing_key = key or current_signing_key()
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


@contextmanager
def setting(app, name: str, value):
    """The app's setting ``name`` is ``value`` inside the with block."""
    old = app.config[name]
    app.config[name] = value
    try:
        yield
    finally:
        app.config[name] = old


def in_parallel(count: int, work: Callable[[], requests.Response]) -> list[requests.Response]:
    barrier, results = threading.Barrier(count), []

    def run() -> None:
        barrier.wait()
        results.append(work())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def failed_login(base_url, email, password="wrong password") -> requests.Response:
    person = Person(base_url, email, password)
    return person.login()


def refresh(base_url, client, refresh_token, style="post", **extra):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return token_request(base_url, client, data, style)


def public_tokens(base_url, org, world):
    """A public client's tokens, a refresh token included: it asks for offline_access (OIDC Core §11)."""
    client = world.client(redirect_uris=("http://127.0.0.1/cb",), public=True, name="CLI")
    verifier, challenge = pkce_pair()
    scope = "openid offline_access todos:read todos:write"
    params = gpt_params(client, scope=scope, code_challenge=challenge, code_challenge_method="S256")
    code = callback_params(Person(base_url, org.admin_email).authorize(params))["code"]
    return client, exchange(base_url, client, code, style="none", code_verifier=verifier).json()


def introspect(base_url, client, token, **extra):
    return requests.post(
        f"{base_url}/oauth/introspect", data={"token": token, **extra}, auth=(client.client_id, client.client_secret)
    )


def token_for(base_url, email, client, scope="openid todos:read todos:write") -> str:
    return connected(base_url, email, client, scope=scope)["access_token"]


def api(base_url, method, path, token, **kwargs) -> requests.Response:
    return requests.request(method, f"{base_url}/api{path}", headers=bearer(token), **kwargs)


def register(base_url, **metadata) -> requests.Response:
    body = {"redirect_uris": ["https://claude.ai/api/mcp/auth_callback"], **metadata}
    return requests.post(f"{base_url}/oauth/register", json=body)


def connected(base_url, email, client, **params) -> dict:
    """The token response a client gets once ``email`` allows it."""
    code = callback_params(Person(base_url, email).authorize(gpt_params(client, **params)))["code"]
    return exchange(base_url, client, code).json()


def assert_cut_off(base_url, gpt, tokens) -> None:
    assert requests.get(f"{base_url}/api/me", headers=bearer(tokens["access_token"])).status_code == 401
    refresh = token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"


def member_id(page_html: str, email: str) -> str:
    row = page_html.split(email)[1]
    return row.split("/members/")[1].split("/")[0]


def mcp_client(world):
    """A client as an MCP client registers itself (RFC 7591), public with PKCE."""
    response = requests.post(
        f"{world.base_url}/oauth/register",
        json={
            "client_name": "Raw MCP client",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        },
    )
    assert response.status_code == 201, response.text
    from conftest import Client

    return Client(response.json()["client_id"], None, "http://127.0.0.1/callback")


def mcp_token(base_url, email, client, scope="todos:read todos:write", **extra) -> dict:
    verifier, challenge = pkce_pair()
    params = gpt_params(client, scope=scope, code_challenge=challenge, code_challenge_method="S256", **extra)
    code = callback_params(Person(base_url, email).authorize(params))["code"]
    resource = {"resource": extra["resource"]} if "resource" in extra else {}
    response = exchange(base_url, client, code, style="none", code_verifier=verifier, **resource)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def mcp_access(base_url, org, world) -> str:
    return mcp_token(base_url, org.admin_email, mcp_client(world), resource=f"{base_url}/mcp")["access_token"]


def rpc(base_url, token, method, params=None, message_id=1, headers=None) -> requests.Response:
    body = {"jsonrpc": "2.0", "method": method}
    if message_id is not None:
        body["id"] = message_id
    if params is not None:
        body["params"] = params
    return requests.post(f"{base_url}/mcp", json=body, headers={**bearer(token), **MCP_VERSION, **(headers or {})})


def call(base_url, token, name, arguments):
    return rpc(base_url, token, "tools/call", {"name": name, "arguments": arguments})


def logged_in(base_url, email) -> Person:
    person = Person(base_url, email)
    person.login()
    return person


def add_todo(person: Person, title: str, **fields) -> None:
    page = person.get("/todos")
    response = person.post("/todos", {"csrf_token": csrf_of(page.text), "title": title, **fields})
    assert response.status_code == 302


def todo_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r"/todos/(\d+)/edit", html)]


def free_ports(count: int) -> list[int]:
    """Distinct free ports: every socket stays bound until all are chosen, or the kernel may repeat one."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_gunicorn(port: int, env: dict[str, str], log_path: Path, workers: int = 1, threads: int = 1):
    """Serve the app as the Procfile does, with gunicorn.conf.py, and wait until this instance
    listens on ``port``: a healthy answer alone could come from another process."""
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--threads", str(threads), "app:app"]
    root = Path(__file__).parent.parent
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if f"Listening at: {url}" in log_path.read_text() and requests.get(f"{url}/livez", timeout=2).ok:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    server.terminate()
    pytest.fail(f"{url} did not start:\n{log_path.read_text()}")
