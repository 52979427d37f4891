"""Connected Todos: a B2B todo app that is its own OAuth 2.0 / OpenID Connect provider.

AI agents (a ChatGPT custom GPT through a GPT Action, or any OAuth client) act on a member's
todos with that member's permission. The module reads from top to bottom the way a request
travels:

 1. Settings and the app factory
 2. Models
 3. Helpers: time, secrets and safe redirects
 4. Members: sign-up, login, organization choice, logout, adding members
 5. Todos: the rules, shared by the web pages and the REST API
 6. Signing keys (kept in the database, shared by every worker and host)
 7. Authorization server: clients, grants and token storage (Authlib)
 8. The authorization endpoint /idp and the consent page
 9. Token, revocation, introspection and dynamic registration endpoints
10. Discovery: /.well-known metadata, the JWKS and protected resource metadata
11. Resource server: bearer tokens, UserInfo and the todo REST API
12. The MCP endpoint /mcp, whose tools share the REST API's rules
13. Pages for operators (/setup), members (connected apps) and visitors (the playground)
14. openapi.yaml, generated from the views with apispec
15. CLI commands
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from functools import wraps
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import unquote
from urllib.parse import urlencode
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
import yaml
from apispec import APISpec
from apispec.yaml_utils import load_operations_from_docstring
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749 import OAuth2Payload
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oidc.core.errors import ConsentRequiredError
from authlib.oidc.core.errors import LoginRequiredError
from authlib.oidc.core.grants import OpenIDCode
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import g
from flask import has_request_context
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.cli import AppGroup
from flask.sessions import SecureCookieSessionInterface
from flask_cors import CORS
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_login import UserMixin
from flask_login import current_user
from flask_login import login_required
from flask_login import login_user
from flask_login import logout_user
from flask_migrate import Migrate
from flask_migrate import upgrade as upgrade_database
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFError
from flask_wtf.csrf import CSRFProtect
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwk import RSAKey
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

# ---------------------------------------------------------------------------------------------
# 1. Settings and the app factory
# ---------------------------------------------------------------------------------------------

#: Every scope the server knows, with the words the consent page shows for it.
SCOPES = {
    "openid": "Confirm who you are",
    "profile": "See your name",
    "email": "See your email address",
    "offline_access": "Stay connected when you are away",
    "todos:read": "See your organization's todos",
    "todos:write": "Create, change and delete your organization's todos",
}
DEFAULT_CLIENT_SCOPE = " ".join(SCOPES)

APP_VERSION = "1.1.0"  # of the API and the MCP server; 1.1 made cursors plain todo ids
ACCESS_TOKEN_TTL = 3600  # RFC 9068 access tokens: one hour
CODE_TTL = 300  # RFC 6749 §4.1.2 recommends at most ten minutes; we allow five
REFRESH_TOKEN_TTL = timedelta(days=90)  # sliding, renewed on every use
ID_TOKEN_TTL = 3600

# Browser origins allowed to call /mcp (MCP_ALLOWED_ORIGINS overrides; "*" allows any).
DEFAULT_MCP_ORIGINS = (
    "https://chatgpt.com",
    "https://chat.openai.com",
    "https://claude.ai",
    "https://claude.com",
    "http://localhost:6274",  # the MCP Inspector
    "http://127.0.0.1:6274",
)

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
URI_MAX = 500
SECRET_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

log = logging.getLogger("connected_todos")


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(get_remote_address)
migrate = Migrate(render_as_batch=True)  # batch mode lets SQLite alter tables too
bp = Blueprint("main", __name__)


class SessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure whenever the request arrived over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create and configure the app: settings, extensions, routes and the database."""
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        SQLALCHEMY_DATABASE_URI=database_url(app),
        PUBLIC_URL=os.environ.get("PUBLIC_URL", "").rstrip("/"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # sent on the top-level GET from chatgpt.com to /idp
        SESSION_COOKIE_SECURE=False,
        SEED_DEMO=os.environ.get("SEED_DEMO", "0" if is_production() else "1") == "1",
        TRUSTED_PROXIES=trusted_proxies(),
        MAX_CONTENT_LENGTH=1024 * 1024,
        RATELIMIT_STORAGE_URI=os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_ENABLED=os.environ.get("RATELIMIT_ENABLED", "1") == "1",
        # Each limit may be overridden from the environment, e.g. RATE_LIMIT_API="100 per second".
        LOGIN_RATE_LIMIT=os.environ.get("RATE_LIMIT_LOGIN", "20 per minute"),  # per IP address
        LOGIN_ACCOUNT_RATE_LIMIT=os.environ.get("RATE_LIMIT_LOGIN_ACCOUNT", "5 per minute; 30 per hour"),
        TOKEN_RATE_LIMIT=os.environ.get("RATE_LIMIT_TOKEN", "120 per minute"),
        # Failed client authentications per client_id and address, at the token, revocation and
        # introspection endpoints together; one short window, so a locked-out client recovers soon.
        CLIENT_AUTH_RATE_LIMIT=os.environ.get("RATE_LIMIT_CLIENT_AUTH", "10 per minute"),
        REGISTRATION_RATE_LIMIT=os.environ.get("RATE_LIMIT_REGISTRATION", "20 per minute; 200 per day"),
        API_RATE_LIMIT=os.environ.get("RATE_LIMIT_API", "600 per minute"),
        # RFC 7591 §3: when set, dynamic registration is closed to all but holders of this token.
        INITIAL_ACCESS_TOKEN=os.environ.get("INITIAL_ACCESS_TOKEN", "").strip(),  # env files add newlines
        MCP_ALLOWED_ORIGINS=[o.strip() for o in os.environ.get("MCP_ALLOWED_ORIGINS", "").split(",") if o.strip()]
        or list(DEFAULT_MCP_ORIGINS),
    )
    if test_config:
        app.config.update(test_config)
    app.config["SECRET_KEY"] = app.config.get("SECRET_KEY") or secret_key(app)
    if is_production() and not app.config["PUBLIC_URL"]:
        # The issuer must not follow a Host or X-Forwarded-Host header an attacker chose (RFC 9700 §4.13).
        raise SystemExit(
            "PUBLIC_URL is not set. Set it to the app's public https origin, e.g. https://todos.example.com."
        )
    app.session_interface = SessionInterface()
    # Behind a TLS-terminating proxy the request's address, scheme and host come from X-Forwarded-*.
    # Only as many hops as there are proxies are believed: a client can forge the rest, and the
    # per-address rate limits and the audit log rely on the address.
    hops = app.config["TRUSTED_PROXIES"]
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    # Authlib logs issued tokens at DEBUG level; a secret is never logged.
    logging.getLogger("authlib").setLevel(logging.INFO)

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"))
    login_manager.init_app(app)
    login_manager.login_view = "main.login"
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    limiter.init_app(app)
    # Browser-based MCP clients (the MCP Inspector) call these cross-origin, without cookies.
    CORS(
        app,
        resources=[r"/mcp", r"/.well-known/*", r"/oauth/token", r"/oauth/register", r"/oauth/revoke"],
        origins="*",
        send_wildcard=True,  # no cookies cross-origin: bearer tokens only
        allow_headers=["Authorization", "Content-Type", "MCP-Protocol-Version", "Mcp-Session-Id", "Last-Event-ID"],
        expose_headers=["WWW-Authenticate", "Mcp-Session-Id", "Retry-After"],
        max_age=600,
    )
    server.init_app(app, query_client=query_client, save_token=save_token)
    app.register_blueprint(bp)
    app.jinja_env.globals.update(name_max=NAME_MAX, title_max=TITLE_MAX)  # the forms' maxlength
    configure_logging()
    app.before_request(start_request_log)
    app.before_request(reject_unstorable_input)
    app.after_request(security_headers)
    app.after_request(finish_request_log)
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(sa.exc.OperationalError, database_unavailable)
    for command in cli.commands.values():
        app.cli.add_command(command)

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", sqlite_pragmas)
        if not is_production():
            upgrade_database()  # production upgrades in the release phase: flask db upgrade
        if sa.inspect(db.engine).has_table(SigningKey.__tablename__):
            current_signing_key()
            if app.config["SEED_DEMO"]:
                seed_demo()
        db.engine.dispose()  # gunicorn forks after this; workers must not share connections
    return app


class RequestIdFilter(logging.Filter):
    """Stamp every log record with the id of the request it belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def configure_logging() -> None:
    """Our log lines go to stderr with a request id. They carry paths, never query strings,
    bodies or headers, so that no secret, code or token can reach them."""
    if log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(message)s"))
    handler.addFilter(RequestIdFilter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def start_request_log() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", incoming) else secrets.token_hex(8)
    g.request_started = time.perf_counter()


def finish_request_log(response: Response) -> Response:
    if "request_id" in g:
        response.headers["X-Request-Id"] = g.request_id
        elapsed = (time.perf_counter() - g.request_started) * 1000
        log.info("%s %s %s %.1fms", request.method, request.path, response.status_code, elapsed)
    return response


def database_url(app: Flask) -> str:
    """Read DATABASE_URL, defaulting to SQLite in instance/; accept postgres:// as hosts give it."""
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{app.instance_path}/connected-todos.db"
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def is_production() -> bool:
    return os.environ.get("APP_ENV") == "production"


def trusted_proxies() -> int:
    """Read TRUSTED_PROXIES: how many proxies stand in front of the app (platforms have one)."""
    value = os.environ.get("TRUSTED_PROXIES", "1")
    if not value.isdigit():
        raise SystemExit(f"TRUSTED_PROXIES must be a number of proxies, such as 0 or 1, not {value!r}.")
    return int(value)


def secret_key(app: Flask) -> str:
    """Read SECRET_KEY; in development, generate one and keep it in instance/."""
    if key := os.environ.get("SECRET_KEY"):
        return key
    if is_production():
        raise SystemExit(
            "SECRET_KEY is not set. Set it to a long random value, for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )
    path = os.path.join(app.instance_path, "secret_key")
    if not os.path.exists(path):
        # Written aside (mode 0600) and linked into place, so that another process starting at the
        # same moment finds either no key or a whole one, and the first key stays.
        fd, draft = tempfile.mkstemp(dir=app.instance_path)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    with open(path) as f:
        return f.read().strip()


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Turn on WAL and foreign keys, and wait for a lock instead of failing at once."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    # With WAL, NORMAL never corrupts the database and halves the cost of each commit (an fsync
    # per WAL checkpoint instead of per transaction); a power cut may lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def issuer() -> str:
    """The issuer: PUBLIC_URL, or the request's own origin. No path, no trailing slash."""
    return current_app.config["PUBLIC_URL"] or request.host_url.rstrip("/")


def api_resource() -> str:
    """The REST API's resource identifier (RFC 8707): an access token audience."""
    return f"{issuer()}/api"


def mcp_resource() -> str:
    """The MCP endpoint's resource identifier, exactly the URL a person pastes into a client."""
    return f"{issuer()}/mcp"


def resources() -> list[str]:
    """Every resource an access token may be issued for."""
    return [api_resource(), mcp_resource()]


# ---------------------------------------------------------------------------------------------
# 2. Models
# ---------------------------------------------------------------------------------------------


def utcnow() -> datetime:
    """The current time in UTC, naive, as every column stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


class Organization(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(60), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Member(UserMixin, db.Model):
    __table_args__ = (sa.UniqueConstraint("organization_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    email: Mapped[str] = mapped_column(sa.String(254), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(20), default="member")
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    # An operator runs the deployment: registers connected apps at /setup.
    is_operator: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Loaded when a page needs it; the API's hot path reads only the member's own columns.
    organization: Mapped[Organization] = relationship()

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)  # Werkzeug's default: scrypt

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def get_user_id(self) -> int:
        return self.id


class Todo(db.Model):
    __table_args__ = (sa.Index("ix_todo_org_id", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"))
    title: Mapped[str] = mapped_column(sa.String(200))
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    completed: Mapped[bool] = mapped_column(default=False)
    due_date: Mapped[date | None]
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("member.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    created_by: Mapped[Member | None] = relationship(lazy="joined")


class Client(ClientMixin, db.Model):
    """A connected app: an OAuth client registered with this server."""

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    client_secret_hash: Mapped[str | None] = mapped_column(sa.String(64))
    # During a rotation both secrets work, until the operator completes or cancels it.
    pending_secret_hash: Mapped[str | None] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    first_party: Mapped[bool] = mapped_column(default=False)
    redirect_uris: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    scope: Mapped[str] = mapped_column(sa.String(500), default=DEFAULT_CLIENT_SCOPE)
    grant_types: Mapped[list[str]] = mapped_column(sa.JSON, default=lambda: ["authorization_code", "refresh_token"])
    # Registered by the app itself through /oauth/register (RFC 7591), not by an operator.
    self_registered: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    client_uri: Mapped[str | None] = mapped_column(sa.String(500))
    logo_uri: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    @property
    def default_resource(self) -> str:
        """The audience when a request names no resource: self-registered clients are MCP
        clients, and operator-registered ones (a GPT Action) call the REST API."""
        return mcp_resource() if self.self_registered else api_resource()

    @property
    def is_public(self) -> bool:
        return self.client_secret_hash is None

    @property
    def client_type(self) -> str:
        party = "first-party" if self.first_party else "third-party"
        return f"{party} {'public' if self.is_public else 'confidential'}"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # With several registered URIs the request must name one (RFC 6749 §3.1.2.3).
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str | None:
        """An absent scope means the registered one (RFC 6749 §3.3); otherwise the overlap, and
        None (invalid_scope) when nothing asked for is allowed, so a narrow request can never
        turn into the registered scope behind the consent page's back."""
        if not scope:
            return self.scope
        allowed = scope_to_list(self.scope)
        granted = [s for s in dict.fromkeys(scope_to_list(scope)) if s in allowed]
        return " ".join(granted) or None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(redirect_uri_matches(uri, redirect_uri) for uri in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret_hash is None:
            return False
        presented = sha256(client_secret)
        current = secrets.compare_digest(self.client_secret_hash, presented)
        pending = secrets.compare_digest(self.pending_secret_hash or "", presented)
        return current or pending

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # Both secret styles work for confidential clients: they are the GPT builder's two
        # "token exchange methods". Public clients authenticate with "none" only.
        if self.is_public:
            return method == "none"
        return method in SECRET_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class RejectedRedirect(db.Model):
    """A redirect URI /idp refused for a client: a GPT's callback URL changes with its settings."""

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("client.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(sa.Text)
    count: Mapped[int] = mapped_column(default=1)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consent(db.Model):
    """What a member allowed a client, remembered so that the consent page is shown once."""

    __table_args__ = (sa.UniqueConstraint("member_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id", ondelete="CASCADE"))
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("client.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(sa.String(500))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthorizationCode(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("client.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str | None] = mapped_column(sa.Text)
    scope: Mapped[str] = mapped_column(sa.String(500))
    resource: Mapped[str | None] = mapped_column(sa.String(500))
    nonce: Mapped[str | None] = mapped_column(sa.Text)
    auth_time: Mapped[int]
    code_challenge: Mapped[str | None] = mapped_column(sa.String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(sa.String(10))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    replayed_at: Mapped[datetime | None]  # someone presented it again after it was used

    # The interface Authlib's grants and OpenIDCode read.
    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class Grant(db.Model):
    """One authorization: the family of tokens that one authorization code started."""

    __tablename__ = "oauth_grant"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("client.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id", ondelete="CASCADE"))
    authorization_code_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("authorization_code.id", ondelete="SET NULL"), index=True
    )
    scope: Mapped[str] = mapped_column(sa.String(500))
    resource: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    client: Mapped[Client] = relationship(lazy="joined")
    member: Mapped[Member] = relationship(lazy="joined")


class RefreshToken(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(sa.ForeignKey("oauth_grant.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]  # set when a public client's token was exchanged

    grant: Mapped[Grant] = relationship(lazy="joined")

    # The interface Authlib's grants, revocation and introspection endpoints read.
    def check_client(self, client: Client) -> bool:
        return self.grant.client_id == client.id

    def get_scope(self) -> str:
        return self.grant.scope

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return bool(self.rotated_at or self.grant.revoked_at)


class AccessToken(db.Model):
    """The record of an issued JWT access token, looked up by its jti for revocation."""

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(sa.ForeignKey("oauth_grant.id", ondelete="CASCADE"))
    jti: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scope: Mapped[str] = mapped_column(sa.String(500))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    grant: Mapped[Grant] = relationship(lazy="joined")

    def check_client(self, client: Client) -> bool:
        return self.grant.client_id == client.id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return bool(self.revoked_at or self.grant.revoked_at)


class AuditEvent(db.Model):
    """Who did what to which app, from where and when. Never a secret, code or token."""

    # The audit page filters by address or actor and pages back by id: one index for each walk.
    __table_args__ = (
        sa.Index("ix_audit_event_at", "at"),
        sa.Index("ix_audit_event_ip_address_id", "ip_address", "id"),
        sa.Index("ix_audit_event_actor_id", "actor", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(sa.String(40), index=True)
    actor: Mapped[str | None] = mapped_column(sa.String(254))  # a member's email, or the client
    member_id: Mapped[int | None]  # kept after the member is gone: the trail outlives them
    client_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    ip_address: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[str] = mapped_column(sa.String(500), default="")


class SigningKey(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    private_jwk: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------------------------------------
# 3. Helpers: time, secrets and safe redirects
# ---------------------------------------------------------------------------------------------


def sha256(value: str) -> str:
    """Hash a 256-bit random secret for storage; a password hash would add nothing but cost."""
    return hashlib.sha256(value.encode()).hexdigest()


AUDIT_EVENTS = (
    "login_succeeded",
    "login_failed",
    "consent_given",
    "consent_denied",
    "token_issued",
    "code_reuse_detected",
    "refresh_reuse_detected",
    "token_revoked",
    "app_disconnected",
    "client_created",
    "client_registered",
    "client_secret_rotated",
    "client_deleted",
    "redirect_uri_added",
    "redirect_uri_removed",
    "password_changed",
    "role_changed",
    "member_removed",
    "member_added",
    "operator_granted",
)


def audit(
    event: str, member: Any = None, client_id: str | None = None, detail: str = "", actor: str | None = None
) -> None:
    """Add an audit record to the current transaction; the caller's commit keeps it."""
    assert event in AUDIT_EVENTS, event
    db.session.add(
        AuditEvent(
            event=event,
            actor=actor or (member.email if member is not None else None),
            member_id=member.id if member is not None else None,
            client_id=client_id,
            ip_address=request.remote_addr if has_request_context() else None,
            detail=detail[:500],
        )
    )


def is_safe_return_path(target: str | None) -> bool:
    """Accept only a same-origin relative path: no //host, /\\host, scheme or encoded variant."""
    if not target:
        return False
    decoded = target
    for _ in range(3):  # undo layered percent-encoding such as %252F
        decoded = unquote(decoded)
    for value in (target, decoded):
        path = re.split(r"[?#]", value, maxsplit=1)[0]
        if not path.startswith("/") or path.startswith("//") or "\\" in path:
            return False
        if any(ord(c) < 32 or ord(c) == 127 for c in path):
            return False  # browsers drop tabs and newlines, turning "/\t/host" into "//host"
        parts = urlsplit(value)
        if parts.scheme or parts.netloc:
            return False
    return True


def is_loopback_host(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host or "").is_loopback
    except ValueError:
        return False


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """Exact match, except that a loopback http URI matches on any port (RFC 8252 §7.3)."""
    if registered == requested:
        return True
    reg, req = urlsplit(registered), urlsplit(requested)
    if reg.scheme != "http" or req.scheme != "http" or not is_loopback_host(reg.hostname):
        return False
    if req.username is not None or req.password is not None or req.fragment:
        return False
    try:
        req.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    return (reg.hostname, reg.path, reg.query) == (req.hostname, req.path, req.query)


# Schemes a browser or the OS would treat as something other than "open this app".
UNSAFE_SCHEMES = {"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp", "ws", "wss"}


def check_uri(uri: str) -> str | None:
    """Say what is wrong with a redirect URI a client registers, or None."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "is not a valid URI"
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        pass
    elif scheme == "http" and is_loopback_host(parts.hostname):
        pass  # RFC 8252 §7.3 loopback redirect for native apps
    elif re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) and scheme not in UNSAFE_SCHEMES | {"http", "https"}:
        pass  # RFC 8252 §7.1 private-use scheme of a native app, such as cursor://
    else:
        return "must be https, http on a loopback address, or a native app's own scheme"
    if parts.fragment or "#" in uri:
        return "must not have a fragment (RFC 6749 §3.1.2)"
    if parts.username is not None or parts.password is not None:
        return "must not carry user information"
    if len(uri) > URI_MAX:
        return f"must be at most {URI_MAX} characters"
    return None


MAX_PARAMETER_LENGTH = 8192


def storable(value: Any) -> bool:
    """Whether every string in ``value`` is text a database can store: UTF-8, no NUL."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate, such as JSON's "\ud800"
            return False
        return "\x00" not in value
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(v) for v in value)
    return True


def parse_json() -> Any:
    """The request body as JSON; ValueError when it is not JSON."""
    try:
        return json.loads(request.get_data(cache=True) or b"")
    except (ValueError, RecursionError):
        raise ValueError("The body is not valid JSON.") from None


def read_json() -> Any:
    """The request body as JSON; ValueError when it is not JSON or not storable text."""
    data = parse_json()
    if not storable(data):
        raise ValueError("The body contains text that is not valid UTF-8, or a NUL character.")
    return data


def reject_unstorable_input() -> Response | None:
    """Refuse query and form values that no column could store, before any view reads them."""
    sources = [request.args] if request.is_json else [request.args, request.form]
    for values in sources:
        for key, value in values.items(multi=True):
            if not storable(key) or not storable(value) or len(value) > MAX_PARAMETER_LENGTH:
                return protocol_error(400, f"The parameter {key[:40]!r} is too long or is not valid text.")
    return None


def allow_form_redirect(uri: str) -> None:
    """Let this page's form lead, through redirects, to ``uri`` (CSP form-action)."""
    parts = urlsplit(uri)
    source = f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else f"{parts.scheme}:"
    g.setdefault("form_redirects", set()).add(source)


def security_headers(response: Response) -> Response:
    """No page may be framed (RFC 9700 §4.16), and no URL with a code or token leaks as a Referer."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        # form-action also governs the redirects after a form is sent: a page whose form leads
        # on to a client's redirect URI (consent, login) names that origin (allow_form_redirect).
        form_action = " ".join(["'self'", *sorted(g.get("form_redirects", ()))])
        policy = f"default-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        response.headers.setdefault("Content-Security-Policy", policy + "; object-src 'none'")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


# ---------------------------------------------------------------------------------------------
# 4. Members: sign-up, login, organization choice, logout, adding members
# ---------------------------------------------------------------------------------------------

# Checked against when the email is unknown, so that a miss costs as much as a hit.
DUMMY_PASSWORD_HASH = generate_password_hash(secrets.token_urlsafe(16))


@login_manager.user_loader
def load_member(member_id: str) -> Member | None:
    return db.session.get(Member, int(member_id)) if member_id.isdigit() else None


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """View decorator that lets only an organization's admins through."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50] or "org"


def create_organization(name: str, slug: str | None = None) -> Organization:
    base = slug or slugify(name)
    slug, n = base, 1
    while db.session.scalar(sa.select(Organization.id).where(Organization.slug == slug)):
        n += 1
        slug = f"{base}-{n}"
    org = Organization(name=name, slug=slug)
    db.session.add(org)
    db.session.flush()
    return org


def create_member(org: Organization, email: str, name: str, password: str, role: str, how: str = "") -> Member:
    """Add a member; ``how`` tells the audit log who added them."""
    member = Member(organization_id=org.id, email=email.strip().lower(), name=name, role=role)
    member.set_password(password)
    db.session.add(member)
    db.session.flush()
    audit("member_added", member, detail=f"as {role}{', ' + how if how else ''}")
    return member


NAME_MAX = 100
# Control and format characters (right-to-left overrides, zero-width spaces, invisible tags),
# separators that break lines, and private code points: in a name they can make one app or
# person pass for another on the consent screen and the members page.
HIDDEN_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}
# Except the joiners that Persian and Indic scripts, and emoji such as 👩‍💻, need.
JOINERS = {"\u200c", "\u200d"}


def name_problem(name: str) -> str | None:
    """Why a name of a member, organization or app cannot be shown to people, or None."""
    if not name.strip():
        return "must not be empty"
    if len(name) > NAME_MAX:
        return f"must be at most {NAME_MAX} characters"
    if any(unicodedata.category(c) in HIDDEN_CATEGORIES and c not in JOINERS for c in name):
        return "must not contain control or formatting characters, such as right-to-left marks"
    return None


def member_form_error(email: str, name: str, password: str) -> str | None:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        return "Enter a valid email address."
    if problem := name_problem(name):
        return f"The name {problem}."
    if len(password) < 8:
        return "Choose a password of at least 8 characters."
    return None


def start_session(member: Member) -> None:
    """Log the member in with a fresh session, so that no pre-login session survives."""
    db.session.commit()  # the audit record of the login
    session.clear()  # the session cookie is the session: clearing it renews it
    login_user(member)
    session["sid"] = secrets.token_urlsafe(16)  # no two logins share a cookie, even within a second
    session["auth_time"] = int(time.time())


def return_to() -> str:
    """The returnTo (or next) target of /login when it is a safe same-origin path."""
    target = request.values.get("returnTo") or request.values.get("next")
    return target if is_safe_return_path(target) else url_for("main.todos")


@bp.route("/livez")
def livez() -> Response:
    """Liveness: the process answers. Touches nothing, so it is also the benchmark's floor."""
    return jsonify({"status": "ok"})


@bp.route("/healthz")
def healthz() -> Response:
    """Readiness: the database answers (a 503 comes from the outage handler otherwise)."""
    db.session.execute(sa.text("SELECT 1"))
    return jsonify({"status": "ok", "database": "ok"})


@bp.route("/")
def index() -> str:
    """Explain what the app is."""
    return render_template("index.html")


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> Any:
    """Create an organization and its first admin."""
    if request.method == "POST":
        form = request.form
        org_name = form.get("organization", "").strip()
        email = form.get("email", "").strip().lower()
        error = member_form_error(email, form.get("name", ""), form.get("password", ""))
        if problem := name_problem(org_name):
            error = f"The organization name {problem}."
        if error is None:
            org = create_organization(org_name)
            member = create_member(org, email, form["name"].strip(), form["password"], "admin", "at sign-up")
            db.session.commit()
            start_session(member)
            flash(f"Welcome! {org.name} is ready.")
            return redirect(url_for("main.todos"))
        flash(error, "error")
    return render_template("signup.html")


def configured_limit(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


def failed_login(response: Response) -> bool:
    return response.status_code == 200  # a failed attempt shows the form again


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(configured_limit("LOGIN_RATE_LIMIT"), methods=["POST"])
@limiter.limit(
    configured_limit("LOGIN_ACCOUNT_RATE_LIMIT"),
    methods=["POST"],
    key_func=lambda: "account:" + request.form.get("email", "").strip().lower(),
    deduct_when=failed_login,
)
def login() -> Any:
    """Log a member in with email and password."""
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")
        candidates = db.session.scalars(sa.select(Member).where(Member.email == email)).all()
        if not candidates:
            check_password_hash(DUMMY_PASSWORD_HASH, password)
        matches = [m for m in candidates if m.check_password(password)]
        if len(matches) == 1:
            audit("login_succeeded", matches[0])
            start_session(matches[0])
            return redirect(return_to())
        if matches:
            # The email belongs to several organizations: choose after the password check.
            target = return_to()
            session.clear()
            session["org_choice"] = {"ids": [m.id for m in matches], "at": int(time.time())}
            return redirect(url_for("main.choose_organization", returnTo=target))
        audit("login_failed", actor=email[:254])
        db.session.commit()
        flash("That email and password do not match a member.", "error")
    allow_authorization_redirect(return_to())
    return render_template("login.html", return_to=request.values.get("returnTo", ""))


@bp.route("/login/organization", methods=["GET", "POST"])
def choose_organization() -> Any:
    """Let a person whose email is in several organizations choose one."""
    choice = session.get("org_choice")
    if not choice or time.time() - choice["at"] > 300:
        return redirect(url_for("main.login"))
    members = db.session.scalars(
        sa.select(Member).where(Member.id.in_(choice["ids"])).order_by(Member.organization_id)
    ).all()
    if request.method == "POST":
        chosen = next((m for m in members if str(m.id) == request.form.get("member_id")), None)
        if chosen:
            audit("login_succeeded", chosen, detail="after choosing the organization")
            start_session(chosen)
            return redirect(return_to())
        flash("Choose one of the organizations.", "error")
    allow_authorization_redirect(return_to())
    return render_template("choose_org.html", members=members, return_to=return_to())


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    """Log the member out."""
    logout_user()
    session.clear()
    return redirect(url_for("main.index"))


@bp.route("/members", methods=["GET", "POST"])
@admin_required
def members() -> Any:
    """List the organization's members and let an admin add one."""
    org = current_user.organization
    if request.method == "POST":
        form = request.form
        email = form.get("email", "").strip().lower()
        error = member_form_error(email, form.get("name", ""), form.get("password", ""))
        role = form.get("role", "member")
        if role not in ("admin", "member"):
            error = "Choose the role admin or member."
        exists = sa.select(Member.id).where(Member.organization_id == org.id, Member.email == email)
        if error is None and db.session.scalar(exists):
            error = "That email is already a member of this organization."
        if error is None:
            create_member(org, email, form["name"].strip(), form["password"], role, f"by {current_user.email}")
            db.session.commit()
            flash(f"{email} can now log in to {org.name}.")
            return redirect(url_for("main.members"))
        flash(error, "error")
    people = db.session.scalars(sa.select(Member).where(Member.organization_id == org.id).order_by(Member.email)).all()
    return render_template("members.html", members=people)


def revoke_member_grants(member: Member, client: Any = None) -> None:
    """End every grant the member gave (to one client, or to all) and forget the consent: the
    API answers 401 at once, a refresh gets invalid_grant, and consent is asked again."""
    grants = sa.update(Grant).where(Grant.member_id == member.id, Grant.revoked_at.is_(None))
    consents = sa.delete(Consent).where(Consent.member_id == member.id)
    if client is not None:
        grants, consents = grants.where(Grant.client_id == client.id), consents.where(Consent.client_id == client.id)
    db.session.execute(grants.values(revoked_at=utcnow()))
    db.session.execute(consents)


def end_member_access(member: Member, event: str, detail: str = "") -> None:
    """A new password, a new role or a removal cuts every app the member connected off."""
    revoke_member_grants(member)
    audit(event, member, detail=detail or f"by {current_user.email}")


def colleague_or_404(member_id: int) -> Member:
    member = db.session.get(Member, member_id) if 0 < member_id < ID_LIMIT else None
    if member is None or member.organization_id != current_user.organization_id:
        abort(404)
    return member


@bp.route("/members/<int:member_id>/role", methods=["POST"])
@admin_required
def change_role(member_id: int) -> Any:
    """Make a member an admin, or an admin a member."""
    member, role = colleague_or_404(member_id), request.form.get("role")
    if role not in ("admin", "member"):
        abort(400, "Choose the role admin or member.")
    if member.id == current_user.id:
        abort(400, "Ask another admin to change your own role.")
    if member.role != role:
        member.role = role
        end_member_access(member, "role_changed", f"to {role} by {current_user.email}")
        db.session.commit()
        flash(f"{member.email} is now {'an admin' if role == 'admin' else 'a member'}; their apps must ask again.")
    return redirect(url_for("main.members"))


@bp.route("/members/<int:member_id>/remove", methods=["POST"])
@admin_required
def remove_member(member_id: int) -> Any:
    """Remove a member from the organization; their apps are cut off at once."""
    member = colleague_or_404(member_id)
    if member.id == current_user.id:
        abort(400, "You cannot remove yourself.")
    end_member_access(member, "member_removed")
    db.session.delete(member)  # their todos stay, without a creator
    db.session.commit()
    flash(f"{member.email} was removed from {member.organization.name}.")
    return redirect(url_for("main.members"))


@bp.route("/settings/password", methods=["GET", "POST"])
@login_required
def change_password() -> Any:
    """Change the password; every app the member connected must be allowed again."""
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if not current_user.check_password(request.form.get("current_password", "")):
            flash("The current password is not right.", "error")
        elif len(new) < 8:
            flash("Choose a password of at least 8 characters.", "error")
        else:
            member = current_user._get_current_object()
            member.set_password(new)
            end_member_access(member, "password_changed", "by the member")
            db.session.commit()
            start_session(member)  # a new session id, too
            flash("Password changed. Apps you had connected must be allowed again.")
            return redirect(url_for("main.connected_apps"))
    return render_template("password.html")


# The error code each protocol uses for an HTTP status, for errors raised outside the protocols'
# own handlers (an unknown path, a wrong method, a body too large, a rate limit, an outage).
OAUTH_ERRORS = {429: "temporarily_unavailable", 500: "server_error", 503: "temporarily_unavailable"}
PAGE_TITLES = {
    400: "That request was not understood",
    403: "You cannot open this page",
    404: "Page not found",
    405: "That is not allowed here",
    413: "That request is too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "The service is briefly unavailable",
}


def protocol_error(status: int, message: str) -> Response:
    """An error in the format of the protocol the path speaks: OAuth JSON (RFC 6749 §5.2),
    JSON-RPC for /mcp, the API's JSON, or a readable page for a person."""
    path = request.path
    if path.startswith(("/oauth/", "/.well-known/")):
        response = jsonify({"error": OAUTH_ERRORS.get(status, "invalid_request"), "error_description": message})
    elif path == "/mcp":
        response = jsonify(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32600 if status < 500 else -32603, "message": message}}
        )
    elif path.startswith("/api/"):
        code = {404: "not_found", 429: "rate_limited", 503: "unavailable"}.get(status, "invalid_request")
        response = jsonify({"error": code, "message": message})
    else:
        title = PAGE_TITLES.get(status, "Something went wrong")
        response = Response(render_template("error.html", title=title, message=message))
    response.status_code = status
    return response


def http_error(error: HTTPException) -> Response:
    """Every HTTP error in its protocol's format, never with a stack trace."""
    status = error.code or 500
    message = error.description or ""
    if status == 429:
        message = f"Too many requests ({message}). Try again later."
    elif status >= 500:
        message = "The server could not finish this request."
    response = protocol_error(status, message)
    if valid_methods := getattr(error, "valid_methods", None):  # 405 names what is allowed
        response.headers["Allow"] = ", ".join(valid_methods)
    return response


def database_unavailable(error: sa.exc.OperationalError) -> Response:
    """A database outage answers 503 in the protocol's format; nothing half-written stays."""
    db.session.rollback()
    log.error("database unavailable: %s", error.__class__.__name__)
    response = protocol_error(503, "The database is unavailable. Try again shortly.")
    response.headers["Retry-After"] = "5"
    return response


def csrf_error(error: CSRFError) -> tuple[str, int]:
    return render_template("error.html", title="The form expired", message=error.description), 400


# ---------------------------------------------------------------------------------------------
# 5. Todos: the rules, shared by the web pages and the REST API
# ---------------------------------------------------------------------------------------------

TITLE_MAX = 200
NOTES_MAX = 5000
ID_LIMIT = 2**31  # ids are 32-bit integers on every database
# What a title is trimmed of: every character str.isspace() knows, and the byte-order mark. It is
# written out once, so that the pattern in openapi.yaml says exactly what the server accepts.
BLANK = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
PAGE_DEFAULT = 20
PAGE_MAX = 100


class TodoError(Exception):
    """A todo request that breaks a rule; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


def clean_todo(data: dict[str, Any], partial: bool) -> dict[str, Any]:
    """Validate todo fields from JSON or a form; ``partial`` allows any subset (PATCH)."""
    if not isinstance(data, dict):
        raise TodoError("The body must be a JSON object.", status=400)
    unknown = set(data) - {"title", "notes", "completed", "due_date"}
    if unknown:
        raise TodoError(f"Unknown field '{sorted(unknown)[0]}'.", sorted(unknown)[0])
    values: dict[str, Any] = {}
    if "title" in data or not partial:
        title = data.get("title")
        if not isinstance(title, str) or not title.strip(BLANK):
            raise TodoError("title is required and must be a non-empty string.", "title")
        if len(title) > TITLE_MAX:
            raise TodoError(f"title must be at most {TITLE_MAX} characters.", "title")
        values["title"] = title.strip(BLANK)
    if "notes" in data:
        notes = data["notes"] if data["notes"] is not None else ""
        if not isinstance(notes, str):
            raise TodoError("notes must be a string.", "notes")
        if len(notes) > NOTES_MAX:
            raise TodoError(f"notes must be at most {NOTES_MAX} characters.", "notes")
        values["notes"] = notes
    if "completed" in data:
        if not isinstance(data["completed"], bool):
            raise TodoError("completed must be true or false.", "completed")
        values["completed"] = data["completed"]
    if "due_date" in data:
        values["due_date"] = parse_due_date(data["due_date"])
    return values


def parse_due_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise TodoError("due_date must be a date like 2026-12-31, or null.", "due_date")


def todo_query(member: Member) -> sa.Select[tuple[Todo]]:
    """Every todo query starts here: only the member's own organization."""
    return sa.select(Todo).where(Todo.organization_id == member.organization_id)


# A cursor is the id of the last row on the previous page: the next page holds the older ones.
# An empty cursor is the first page, as is any id above every id a row can have.
CURSOR_PATTERN = "^([1-9][0-9]{0,9})?$"
CURSOR_SCHEMA = {"type": "string", "pattern": CURSOR_PATTERN, "description": "next_cursor from the previous page."}


def decode_cursor(cursor: str) -> int | None:
    """The id the page starts below, or None for the first page."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError("cursor must be the next_cursor of the previous page.")
    return int(cursor) if cursor and int(cursor) < ID_LIMIT else None


def keyset_page(
    query: sa.Select, model: type[Todo | AuditEvent], limit: int, cursor: str | None
) -> tuple[list, str | None]:
    """One page of ``query``'s rows, newest first, and the cursor of the next page (keyset pagination)."""
    if cursor is not None and (before := decode_cursor(cursor)) is not None:
        query = query.where(model.id < before)
    rows = db.session.scalars(query.order_by(model.id.desc()).limit(limit + 1)).all()
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return list(rows[:limit]), next_cursor


def list_todos(
    member: Member, completed: bool | None = None, limit: int = PAGE_DEFAULT, cursor: str | None = None
) -> tuple[list[Todo], str | None]:
    """One page of todos, newest first, with the cursor of the next page."""
    if not 1 <= limit <= PAGE_MAX:
        raise TodoError(f"limit must be between 1 and {PAGE_MAX}.", "limit", 400)
    query = todo_query(member)
    if completed is not None:
        query = query.where(Todo.completed == completed)
    try:
        return keyset_page(query, Todo, limit, cursor)
    except ValueError as error:
        raise TodoError(str(error), "cursor", 400) from None


def get_todo(member: Member, todo_id: int) -> Todo:
    """A todo of the member's organization; another organization's todo does not exist."""
    todo = db.session.scalar(todo_query(member).where(Todo.id == todo_id)) if 0 < todo_id < ID_LIMIT else None
    if todo is None:
        raise TodoError("There is no todo with that id.", "id", 404)
    return todo


def create_todo(member: Member, data: dict[str, Any]) -> Todo:
    todo = Todo(organization_id=member.organization_id, created_by_id=member.id)
    for key, value in clean_todo(data, partial=False).items():
        setattr(todo, key, value)
    db.session.add(todo)
    db.session.commit()
    return todo


def update_todo(member: Member, todo_id: int, data: dict[str, Any]) -> Todo:
    values = clean_todo(data, partial=True)
    todo = get_todo(member, todo_id)
    for key, value in values.items():
        setattr(todo, key, value)
    db.session.commit()
    return todo


def delete_todo(member: Member, todo_id: int) -> None:
    db.session.delete(get_todo(member, todo_id))
    db.session.commit()


def regex_class(chars: str) -> str:
    """``chars`` as the body of an ECMA-262 character class (JSON Schema's regex dialect)."""
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in chars)


# Text is stored as given, except that no database keeps a NUL; a title needs a visible character.
TITLE_PATTERN = f"^[^\\x00]*[^\\x00{regex_class(BLANK)}][^\\x00]*$"
NOTES_PATTERN = "^[^\\x00]*$"

# The shapes of a todo and a member, shared by openapi.yaml and the MCP tools' schemas.
TODO_PROPERTIES = {
    "title": {
        "type": "string",
        "minLength": 1,
        "maxLength": TITLE_MAX,
        "pattern": TITLE_PATTERN,
        "description": "What to do.",
    },
    "notes": {
        "type": ["string", "null"],
        "maxLength": NOTES_MAX,
        "pattern": NOTES_PATTERN,
        "description": "Details; empty or null for none.",
    },
    "completed": {"type": "boolean", "description": "Whether it is done."},
    "due_date": {"type": ["string", "null"], "format": "date", "description": "Due date, YYYY-MM-DD."},
}
TODO_SCHEMA = {
    "type": "object",
    "required": ["id", "title", "notes", "completed", "due_date", "created_at", "updated_at", "created_by"],
    "properties": {
        "id": {"type": "integer"},
        **TODO_PROPERTIES,
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "created_by": {
            "type": ["object", "null"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        },
    },
}
ME_SCHEMA = {
    "type": "object",
    "required": ["id", "name", "email", "role", "organization"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "email": {"type": "string"},
        "role": {"type": "string", "enum": ["admin", "member"]},
        "organization": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "slug": {"type": "string"}},
        },
    },
}


def todo_page_schema(todo_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["todos", "next_cursor"],
        "properties": {
            "todos": {"type": "array", "items": todo_schema},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as cursor for the next page; null at the end.",
            },
        },
    }


def me_json(member: Member) -> dict[str, Any]:
    org = member.organization
    return {
        "id": member.id,
        "name": member.name,
        "email": member.email,
        "role": member.role,
        "organization": {"id": org.id, "name": org.name, "slug": org.slug},
    }


def todo_json(todo: Todo) -> dict[str, Any]:
    creator = todo.created_by
    return {
        "id": todo.id,
        "title": todo.title,
        "notes": todo.notes,
        "completed": todo.completed,
        "due_date": todo.due_date.isoformat() if todo.due_date else None,
        "created_at": todo.created_at.isoformat() + "Z",
        "updated_at": todo.updated_at.isoformat() + "Z",
        "created_by": {"id": creator.id, "name": creator.name} if creator else None,
    }


@bp.route("/todos", methods=["GET", "POST"])
@login_required
def todos() -> Any:
    """List the organization's todos and add one."""
    if request.method == "POST":
        try:
            form = request.form
            create_todo(
                current_user,
                {
                    "title": form.get("title", ""),
                    "notes": form.get("notes", ""),
                    "due_date": form.get("due_date") or None,  # an empty date field means none
                },
            )
            flash("Todo added.")
        except TodoError as error:
            flash(error.message, "error")
        return redirect(url_for("main.todos"))
    completed = {"open": False, "done": True}.get(request.args.get("show", ""))
    try:
        page, next_cursor = list_todos(current_user, completed, PAGE_MAX, request.args.get("cursor"))
    except TodoError:
        return redirect(url_for("main.todos"))
    return render_template("todos.html", todos=page, next_cursor=next_cursor)


@bp.route("/todos/<int:todo_id>/edit", methods=["GET", "POST"])
@login_required
def edit_todo(todo_id: int) -> Any:
    """Edit a todo's title, notes and due date."""
    try:
        todo = get_todo(current_user, todo_id)
        if request.method == "POST":
            form = request.form
            update_todo(
                current_user,
                todo_id,
                {
                    "title": form.get("title", ""),
                    "notes": form.get("notes", ""),
                    "due_date": form.get("due_date") or None,  # an empty date field means none
                    "completed": form.get("completed") == "on",
                },
            )
            flash("Todo saved.")
            return redirect(url_for("main.todos"))
    except TodoError as error:
        if error.status == 404:
            abort(404)
        flash(error.message, "error")
    return render_template("todo_edit.html", todo=todo)


@bp.route("/todos/<int:todo_id>/toggle", methods=["POST"])
@login_required
def toggle_todo(todo_id: int) -> Any:
    """Mark a todo completed, or open again."""
    try:
        todo = get_todo(current_user, todo_id)
        update_todo(current_user, todo_id, {"completed": not todo.completed})
    except TodoError:
        abort(404)
    return redirect(url_for("main.todos"))


@bp.route("/todos/<int:todo_id>/delete", methods=["POST"])
@login_required
def remove_todo(todo_id: int) -> Any:
    """Delete a todo."""
    try:
        delete_todo(current_user, todo_id)
    except TodoError:
        abort(404)
    flash("Todo deleted.")
    return redirect(url_for("main.todos"))


# ---------------------------------------------------------------------------------------------
# 6. Signing keys (kept in the database, shared by every worker and host)
# ---------------------------------------------------------------------------------------------


@dataclass
class KeyCache:
    """Parsed keys for this process. Parsing an RSA key costs ~60 ms, so it happens once per
    key set; the database stays the source of truth and is re-read when it may have changed."""

    kids: tuple[str, ...] = ()
    private: KeySet | None = None
    public: KeySet | None = None
    checked_at: float = 0.0


KEY_CACHES: dict[str, KeyCache] = {}  # one per database URL
KEY_RECHECK_SECONDS = 60


def create_signing_key() -> SigningKey:
    kid = secrets.token_urlsafe(12)
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
    row = SigningKey(kid=kid, private_jwk=key.as_dict(private=True))
    db.session.add(row)
    db.session.commit()
    return row


def load_keys(force: bool = False) -> KeyCache:
    """Return the parsed key set, reloading it when another process may have rotated it."""
    cache = KEY_CACHES.setdefault(str(db.engine.url), KeyCache())
    if not force and cache.private and time.time() - cache.checked_at < KEY_RECHECK_SECONDS:
        return cache
    rows = db.session.scalars(sa.select(SigningKey).order_by(SigningKey.id.desc())).all()
    kids = tuple(row.kid for row in rows)
    if rows and (kids != cache.kids or cache.private is None):
        keys = [RSAKey.import_key(row.private_jwk) for row in rows]
        cache.private = KeySet(keys)
        cache.public = KeySet.import_key_set(KeySet(keys).as_dict(private=False))
        cache.kids = kids
    cache.checked_at = time.time()
    return cache


def current_signing_key() -> RSAKey:
    """The newest key signs; older ones stay published until they are retired."""
    cache = load_keys()
    if not cache.kids:
        try:
            create_signing_key()
        except sa.exc.IntegrityError:  # another worker created it first
            db.session.rollback()
        cache = load_keys(force=True)
    return cache.private.get_by_kid(cache.kids[0])


def rotate_signing_key(keep: int = 2) -> SigningKey:
    """Add a new signing key and retire all but the newest ``keep`` keys."""
    row = create_signing_key()
    old = db.session.scalars(sa.select(SigningKey.id).order_by(SigningKey.id.desc()).offset(keep)).all()
    if old:
        db.session.execute(sa.delete(SigningKey).where(SigningKey.id.in_(old)))
        db.session.commit()
    load_keys(force=True)
    return row


# ---------------------------------------------------------------------------------------------
# 7. Authorization server: clients, grants and token storage (Authlib)
# ---------------------------------------------------------------------------------------------


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested resource is not one this server issues tokens for."""

    error = "invalid_target"


class Payload(OAuth2Payload):
    """Request parameters, with a comma-separated scope read as space-separated.

    The GPT builder passes its Scope field as typed, so "openid,profile" must work too.
    """

    def __init__(self, values: MultiDict[str, str]) -> None:
        self._values = values

    @property
    def data(self) -> MultiDict[str, str]:
        return self._values

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {key: self._values.getlist(key) for key in self._values}


class OAuth2Request(FlaskOAuth2Request):
    """A Flask request whose body may be form-encoded (RFC 6749) or JSON."""

    def __init__(self, flask_request: Any) -> None:
        super().__init__(flask_request)
        self._body = request_body(flask_request)
        # The authorization endpoint takes its parameters from the query (RFC 6749 §3.1), even on
        # the consent form's POST; the other endpoints from the body only (§3.2).
        values = MultiDict(flask_request.args) if flask_request.endpoint == "main.authorize" else self._body
        self.payload = Payload(normalized(values))

    @property
    def form(self) -> MultiDict[str, str]:
        return self._body


def normalize_scope(scope: str) -> str:
    return " ".join(scope.replace(",", " ").split())


def request_body(flask_request: Any) -> MultiDict[str, str]:
    """Read a form or JSON body into one MultiDict of strings, with the scope normalized."""
    if flask_request.is_json:
        try:
            data = read_json()
        except ValueError:
            data = None  # answered as a request without the needed parameters
        items = data.items() if isinstance(data, dict) else []
        body = MultiDict([(k, v if isinstance(v, str) else json.dumps(v)) for k, v in items if v is not None])
    else:
        body = MultiDict(flask_request.form)
    return normalized(body)


def normalized(values: MultiDict[str, str]) -> MultiDict[str, str]:
    if "scope" in values:
        values.setlist("scope", [normalize_scope(s) for s in values.getlist("scope")])
    return values


class AuthorizationServer(_AuthorizationServer):
    def create_oauth2_request(self, _request: Any) -> OAuth2Request:
        return OAuth2Request(request)

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        """Add ``iss`` to every authorization response, success or error (RFC 9207 §2)."""
        headers = [(k, add_params_to_uri(v, [("iss", issuer())]) if k == "Location" else v) for k, v in headers]
        response = super().handle_response(status_code, payload, headers)
        if status_code != 302:
            response.headers["Cache-Control"] = "no-store"  # RFC 6749 §5.1
            response.headers["Pragma"] = "no-cache"
        return response

    def create_bearer_token_generator(self, config: Any) -> JWTBearerTokenGenerator:
        return AccessTokenGenerator()

    def validate_requested_scope(self, scope: str) -> None:
        """An unknown scope is an error (RFC 6749 §4.1.2.1 invalid_scope)."""
        if scope and not set(scope_to_list(scope)) <= set(SCOPES):
            raise InvalidScopeError(f"Unknown scope. This server supports: {' '.join(SCOPES)}.")


server = AuthorizationServer()


# Client authentication (RFC 6749 §2.3.1). Any failure, an unknown client_id included, is one
# 401 invalid_client with a WWW-Authenticate challenge (§5.2). A request that carries credentials
# both ways fails too: a client MUST NOT use more than one method (§2.3), and the throttle below
# counts each request against one client only.
def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """The client_id and secret of an HTTP Basic ``Authorization`` header, if it is one."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except ValueError:  # bad base64 or not UTF-8
        return None
    return unquote(client_id), unquote(secret)  # RFC 6749 §2.3.1 form-encodes both


def two_ways(oauth_request: OAuth2Request) -> bool:
    """Whether a request carries credentials both in the header and in the body."""
    return "Authorization" in oauth_request.headers and "client_secret" in oauth_request.form


def authenticate_secret_basic(query: Callable[[str], Client | None], oauth_request: OAuth2Request) -> Client | None:
    credentials = basic_credentials(oauth_request.headers.get("Authorization", ""))
    if not credentials or two_ways(oauth_request):
        return None
    client = query(credentials[0])
    return client if client and client.check_client_secret(credentials[1]) else None


def authenticate_secret_post(query: Callable[[str], Client | None], oauth_request: OAuth2Request) -> Client | None:
    client_id, secret = oauth_request.form.get("client_id"), oauth_request.form.get("client_secret")
    if not client_id or not secret or two_ways(oauth_request):
        return None
    client = query(client_id)
    return client if client and client.check_client_secret(secret) else None


def authenticate_public(query: Callable[[str], Client | None], oauth_request: OAuth2Request) -> Client | None:
    client_id = oauth_request.form.get("client_id")
    if client_id and "client_secret" not in oauth_request.form and "Authorization" not in oauth_request.headers:
        return query(client_id)
    return None


server.register_client_auth_method("client_secret_basic", authenticate_secret_basic)
server.register_client_auth_method("client_secret_post", authenticate_secret_post)
server.register_client_auth_method("none", authenticate_public)


def client_auth_key() -> str:
    """Who is trying to authenticate as whom: the client_id a request presents, and its address.

    RFC 6749 §2.3.1: an endpoint that checks a client's password MUST be protected against brute
    force. Failures are counted per client and address, so a stranger's guesses from elsewhere do
    not lock the client out; from an address it shares (ChatGPT's own), for a minute at most.
    """
    credentials = basic_credentials(request.headers.get("Authorization", ""))
    client_id = credentials[0] if credentials else request_body(request).get("client_id", "")
    return f"client-auth:{client_id[:100]}:{get_remote_address()}"


def failed_client_auth(response: Response) -> bool:
    return response.status_code == 401  # invalid_client, and only that, answers 401 (RFC 6749 §5.2)


# Token, revocation and introspection all check a client's secret, so they share one count.
client_auth_limit = limiter.shared_limit(
    configured_limit("CLIENT_AUTH_RATE_LIMIT"),
    scope="client-auth",
    key_func=client_auth_key,
    deduct_when=failed_client_auth,
)


def new_client_id() -> str:
    """A client_id of letters and digits: safe to paste anywhere, a shell argument included."""
    return generate_token(24)


def query_client(client_id: str) -> Client | None:
    return db.session.scalar(sa.select(Client).where(Client.client_id == client_id))


def b64url_json(segment: str) -> Any:
    """Decode one base64url segment of a JWT into JSON."""
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def save_token(token: dict[str, Any], oauth_request: OAuth2Request) -> None:
    """Store what a token response issued: a grant (first time), the access token's jti and the
    refresh token's hash. Nothing is stored in a form that could be replayed."""
    if oauth_request.payload.grant_type == "authorization_code":
        code: AuthorizationCode = oauth_request.authorization_code
        grant = Grant(
            client_id=oauth_request.client.id,
            member_id=oauth_request.user.id,
            authorization_code_id=code.id,
            scope=code.scope,
            resource=g.token_resource,
        )
        db.session.add(grant)
        db.session.flush()
    else:
        grant = oauth_request.refresh_token.grant
    now = utcnow()
    claims = b64url_json(token["access_token"].split(".")[1])  # our own, just signed
    db.session.add(
        AccessToken(
            grant_id=grant.id,
            jti=claims["jti"],
            scope=claims["scope"],
            expires_at=datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None),
        )
    )
    if "refresh_token" in token:
        db.session.add(
            RefreshToken(
                grant_id=grant.id,
                token_hash=sha256(token["refresh_token"]),
                expires_at=now + REFRESH_TOKEN_TTL,
            )
        )
    grant.last_used_at = now
    oauth_request.client.last_used_at = now
    audit("token_issued", grant.member, oauth_request.client.client_id, oauth_request.payload.grant_type)
    db.session.commit()
    if oauth_request.payload.grant_type == "authorization_code" and db.session.scalar(
        sa.select(AuthorizationCode.replayed_at).where(AuthorizationCode.id == grant.authorization_code_id)
    ):
        # The response still goes out, as the one answer to the code, but its tokens are dead.
        revoke_grant(grant, "authorization code replayed during its redemption")
        db.session.commit()


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """RFC 9068 JWT access tokens, signed with the current database key."""

    def __init__(self) -> None:
        super().__init__(
            issuer="",
            alg="RS256",
            refresh_token_generator=lambda **_: generate_token(48),
            expires_generator=lambda client, grant_type: ACCESS_TOKEN_TTL,
        )

    def get_jwks(self) -> KeySet:
        return KeySet([current_signing_key()])

    @property
    def issuer(self) -> str:
        return issuer()  # PUBLIC_URL, or the request's origin

    @issuer.setter
    def issuer(self, _value: str) -> None:
        pass

    def get_audiences(self, client: Client, user: Member, scope: str) -> str:
        return g.token_resource

    def get_extra_claims(self, client: Client, grant_type: str, user: Member, scope: str) -> dict[str, Any]:
        return {"org_id": user.organization_id}

    def get_jti(self, client: Client, grant_type: str, user: Member, scope: str) -> str:
        return secrets.token_urlsafe(24)


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only (RFC 7636 §4.2, RFC 9700 §2.1.1): "plain" and absent are rejected."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        payload = grant.request.payload.data
        if grant.request.client.is_public and not payload.get("code_challenge"):
            raise InvalidRequestError("Public clients must send a PKCE code_challenge (RFC 7636).")
        if payload.get("code_challenge") and payload.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


def requested_resource(oauth_request: OAuth2Request, bound: str | None = None) -> str:
    """The RFC 8707 resource a token is for: the request's, or the grant's, or the client's default."""
    values = oauth_request.payload.datalist.get("resource", [])
    if len(values) > 1:
        raise InvalidTargetError("Ask for one resource at a time.")
    resource = values[0] if values else (bound or oauth_request.client.default_resource)
    if resource not in resources():
        raise InvalidTargetError(f"Unknown resource. Use one of: {' '.join(resources())}.")
    if bound and resource != bound:
        raise InvalidTargetError("The resource differs from the one that was authorized.")
    return resource


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        try:
            requested_resource(self.request)
        except InvalidTargetError as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code: str, oauth_request: OAuth2Request) -> None:
        payload = oauth_request.payload
        db.session.add(
            AuthorizationCode(
                code_hash=sha256(code),
                client_id=oauth_request.client.id,
                member_id=oauth_request.user.id,
                redirect_uri=payload.redirect_uri,  # as sent, compared at the token endpoint
                scope=oauth_request.scope,
                resource=requested_resource(oauth_request),
                nonce=payload.data.get("nonce"),
                auth_time=session.get("auth_time") or int(time.time()),
                code_challenge=payload.data.get("code_challenge"),
                code_challenge_method=payload.data.get("code_challenge_method"),
                expires_at=utcnow() + timedelta(seconds=CODE_TTL),
            )
        )
        db.session.commit()

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """Redeem a code at most once, atomically, even when requests race (RFC 6749 §4.1.2)."""
        code_hash, now = sha256(code), utcnow()
        redeemed = db.session.execute(
            sa.update(AuthorizationCode)
            .where(
                AuthorizationCode.code_hash == code_hash,
                AuthorizationCode.client_id == client.id,
                AuthorizationCode.used_at.is_(None),
                AuthorizationCode.expires_at > now,
            )
            .values(used_at=now)
        ).rowcount
        item = db.session.scalar(
            sa.select(AuthorizationCode).where(
                AuthorizationCode.code_hash == code_hash, AuthorizationCode.client_id == client.id
            )
        )
        if not redeemed and item is not None and item.used_at is not None:
            # A second redemption: revoke what the first one issued (RFC 9700 §4.5). The mark
            # on the code catches a first redemption that has not stored its grant yet.
            db.session.execute(
                sa.update(AuthorizationCode).where(AuthorizationCode.id == item.id).values(replayed_at=now)
            )
            db.session.execute(
                sa.update(Grant)
                .where(Grant.authorization_code_id == item.id, Grant.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            log.warning("authorization code reused by client %s; grant revoked", client.client_id)
            audit("code_reuse_detected", db.session.get(Member, item.member_id), client.client_id)
        db.session.commit()
        if not redeemed:
            return None
        g.token_resource = requested_resource(self.request, item.resource)
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        pass  # kept, marked used, so that a replay is recognised and answered

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Member | None:
        return db.session.get(Member, authorization_code.member_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        client: Client = self.request.client
        now = utcnow()
        item = db.session.scalar(sa.select(RefreshToken).where(RefreshToken.token_hash == sha256(refresh_token)))
        if item is None or item.grant.client_id != client.id:
            return None
        if item.grant.revoked_at or item.expires_at <= now:
            return None
        # Check the scope and resource first, so that a rejected request rotates nothing.
        self._validate_token_scope(item)
        g.token_resource = requested_resource(self.request, item.grant.resource)
        if client.is_public:
            # Rotate (RFC 9700 §4.14.2): of racing uses exactly one wins; any replay of a
            # rotated token revokes the whole grant.
            rotated = db.session.execute(
                sa.update(RefreshToken)
                .where(RefreshToken.id == item.id, RefreshToken.rotated_at.is_(None))
                .values(rotated_at=now)
            ).rowcount
            if not rotated:
                revoke_grant(item.grant, "refresh token reused")
                audit("refresh_reuse_detected", item.grant.member, client.client_id)
                db.session.commit()
                return None
            db.session.commit()
        return item

    def authenticate_user(self, refresh_token: RefreshToken) -> Member | None:
        return refresh_token.grant.member

    def issue_token(self, user: Member, refresh_token: RefreshToken) -> dict[str, Any]:
        scope = self.request.payload.scope or refresh_token.get_scope()
        if not self.request.client.is_public:
            # Confidential clients keep their token, with a sliding lifetime; save_token commits it.
            db.session.execute(
                sa.update(RefreshToken)
                .where(RefreshToken.id == refresh_token.id)
                .values(expires_at=utcnow() + REFRESH_TOKEN_TTL)
            )
        # Public clients get a new refresh token each time (it was rotated when authenticated).
        return self.generate_token(user=user, scope=scope, include_refresh_token=self.request.client.is_public)

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        pass  # rotation happened atomically in authenticate_refresh_token


class OpenIDConnect(OpenIDCode):
    """ID tokens (OpenID Connect Core §2), signed with the current database key."""

    def exists_nonce(self, nonce: str, oauth_request: OAuth2Request) -> bool:
        return False  # a nonce is the client's replay check; codes are single-use here

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return current_signing_key()

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": current_signing_key().kid, "typ": "JWT"}

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": issuer(), "aud": [client.client_id], "iat": now, "exp": now + ID_TOKEN_TTL}

    def generate_user_info(self, user: Member, scope: str) -> dict[str, Any]:
        return user_info(user, scope)


def user_info(member: Member, scope: str) -> dict[str, Any]:
    """The claims the granted scope allows (OpenID Connect Core §5.4)."""
    scopes = scope_to_list(scope) or []
    claims: dict[str, Any] = {"sub": str(member.id)}
    if "profile" in scopes:
        claims["name"] = member.name
    if "email" in scopes:
        claims["email"] = member.email
    return claims


def revoke_grant(grant: Grant, reason: str) -> None:
    """Revoke a grant: every access and refresh token it issued stops working at once."""
    db.session.execute(
        sa.update(Grant).where(Grant.id == grant.id, Grant.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    log.warning("grant %s of client %s revoked: %s", grant.id, grant.client.client_id, reason)


# The registry of connected apps, shared by the CLI and /setup. Each change is audited here, so
# that it is recorded whichever way it was made: ``by`` is the operator, or None at the command line.

CLI_ACTOR = "command line"


def audit_change(event: str, client: Client, by: Member | None, detail: str = "") -> None:
    audit(event, by, client.client_id, detail, actor=None if by is not None else CLI_ACTOR)


CHATGPT_CALLBACK = re.compile(r"https://(chatgpt\.com|chat\.openai\.com)/aip/g-[A-Za-z0-9]+/oauth/callback")


def register_client(
    name: str,
    redirect_uris: list[str],
    public: bool,
    first_party: bool,
    scope: str = DEFAULT_CLIENT_SCOPE,
    by: Member | None = None,
) -> tuple[Client, str | None]:
    """Create a client; return it and its secret, which is stored only as a hash."""
    for uri in redirect_uris:
        if problem := check_uri(uri):
            raise ValueError(f"The redirect URI {uri} {problem}.")
    scope = normalize_scope(scope)
    if not scope or not set(scope.split()) <= set(SCOPES):
        raise ValueError(f"Use scopes from: {' '.join(SCOPES)}.")
    if problem := name_problem(name):
        raise ValueError(f"The name {problem}.")
    secret = None if public else secrets.token_urlsafe(32)
    client = Client(
        client_id=new_client_id(),
        client_secret_hash=sha256(secret) if secret else None,
        name=name.strip(),
        first_party=first_party,
        redirect_uris=redirect_uris,
        scope=scope,
    )
    db.session.add(client)
    db.session.flush()
    audit_change("client_created", client, by, client.client_type)
    db.session.commit()
    return client, secret


def add_redirect_uri(client: Client, uri: str, by: Member | None = None) -> None:
    if problem := check_uri(uri):
        raise ValueError(f"The redirect URI {uri} {problem}.")
    audit_change("redirect_uri_added", client, by, uri)
    if uri not in client.redirect_uris:
        client.redirect_uris = [*client.redirect_uris, uri]
    db.session.execute(
        sa.delete(RejectedRedirect).where(RejectedRedirect.client_id == client.id, RejectedRedirect.redirect_uri == uri)
    )
    db.session.commit()


def start_secret_rotation(client: Client, by: Member | None = None) -> str:
    """Issue a second secret; the old one keeps working until the rotation completes."""
    secret = secrets.token_urlsafe(32)
    client.pending_secret_hash = sha256(secret)
    audit_change("client_secret_rotated", client, by, "started")
    db.session.commit()
    return secret


def finish_secret_rotation(client: Client, complete: bool, by: Member | None = None) -> None:
    """Complete (the new secret replaces the old) or cancel (the new one stops working)."""
    if complete and client.pending_secret_hash:
        client.client_secret_hash = client.pending_secret_hash
    client.pending_secret_hash = None
    audit_change("client_secret_rotated", client, by, "completed" if complete else "cancelled")
    db.session.commit()


def replace_client_secret(client: Client, by: Member | None = None) -> str:
    """Give a client a new secret at once; the old one, and any rotation under way, stop working."""
    secret = secrets.token_urlsafe(32)
    client.client_secret_hash, client.pending_secret_hash = sha256(secret), None
    audit_change("client_secret_rotated", client, by, "replaced at once")
    db.session.commit()
    return secret


def delete_client(client: Client, by: Member | None = None, detail: str = "") -> None:
    """Delete a client; its grants, and with them every token it holds, go too."""
    audit_change("client_deleted", client, by, detail or client.name)
    db.session.delete(client)
    db.session.commit()


def record_rejected_redirect(client: Client, uri: str) -> None:
    row = db.session.scalar(
        sa.select(RejectedRedirect).where(RejectedRedirect.client_id == client.id, RejectedRedirect.redirect_uri == uri)
    )
    if row is None:
        db.session.add(RejectedRedirect(client_id=client.id, redirect_uri=uri))
    else:
        row.count, row.last_seen_at = row.count + 1, utcnow()
    db.session.commit()


server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), OpenIDConnect()])
server.register_grant(RefreshTokenGrant)


# ---------------------------------------------------------------------------------------------
# 8. The authorization endpoint /idp and the consent page
# ---------------------------------------------------------------------------------------------


def authorization_request_problem(args: MultiDict[str, str]) -> str | None:
    """Check client_id and redirect_uri before anything else; they decide whether an error may
    be sent back to the client at all (RFC 6749 §4.1.2.1). Return what is wrong, or None."""
    for name in ("client_id", "redirect_uri"):
        if len(args.getlist(name)) > 1:
            return f"The request has more than one {name}."
    client_id = args.get("client_id")
    if not client_id:
        return "The request has no client_id, so we cannot tell which app is asking."
    client = query_client(client_id)
    if client is None:
        return f"No app with the client_id “{client_id}” is registered here."
    redirect_uri = args.get("redirect_uri")
    if redirect_uri is None:
        if client.get_default_redirect_uri() is None:
            return f"{client.name} has several redirect URIs and the request names none."
        return None
    if not client.check_redirect_uri(redirect_uri):
        record_rejected_redirect(client, redirect_uri)
        g.rejected = (client, redirect_uri)  # an operator may add it from the error page
        return f"The redirect URI “{redirect_uri}” is not registered for {client.name}."
    return None


def allow_authorization_redirect(target: str) -> None:
    """After login, /idp may send the browser straight on to the client (consent remembered):
    let the login form's CSP allow that client's registered redirect URI."""
    path, _, query = target.partition("?")
    if path != url_for("main.authorize"):
        return
    args = MultiDict(parse_qsl(query))
    client = query_client(args.get("client_id", ""))
    uri = args.get("redirect_uri") or (client.get_default_redirect_uri() if client else None)
    if client and uri and client.check_redirect_uri(uri):
        allow_form_redirect(uri)


def consent_needed(client: Client, member: Member, scope: str) -> bool:
    """First-party apps and scopes already consented to skip the consent page."""
    if request.args.get("prompt") and "consent" in request.args["prompt"].split():
        return True
    if client.first_party:
        return False
    consent = db.session.scalar(
        sa.select(Consent).where(Consent.member_id == member.id, Consent.client_id == client.id)
    )
    return consent is None or not set(scope_to_list(scope) or []) <= set(consent.scope.split())


def remember_consent(client: Client, member: Member, scope: str) -> None:
    consent = db.session.scalar(
        sa.select(Consent).where(Consent.member_id == member.id, Consent.client_id == client.id)
    )
    if consent is None:
        consent = Consent(member_id=member.id, client_id=client.id, scope="")
        db.session.add(consent)
    consent.scope = " ".join(sorted(set(consent.scope.split()) | set(scope.split())))
    consent.granted_at = utcnow()
    db.session.commit()


def needs_fresh_login(prompts: list[str]) -> bool:
    """prompt=login, or a max_age older than the member's login (OIDC Core §3.1.2.1)."""
    max_age = request.args.get("max_age", "")
    too_old = max_age.isascii() and max_age.isdigit() and time.time() - session.get("auth_time", 0) > int(max_age)
    return "login" in prompts or too_old


def redirect_to_login() -> Response:
    """Log in, then come back to this request, minus what asked for the login (no loop)."""
    logout_user()
    query = [(k, v) for k, v in request.args.items(multi=True) if k != "max_age"]
    query = [(k, " ".join(p for p in v.split() if p != "login")) if k == "prompt" else (k, v) for k, v in query]
    return redirect(url_for("main.login", returnTo=f"{request.path}?{urlencode([(k, v) for k, v in query if v])}"))


def authorization_request_by_post() -> Response:
    """OIDC Core §3.1.2.1: an authorization request may arrive by POST, form-encoded. It is the
    same request as by GET, so it continues as one; the consent form then posts back to that URL."""
    params = list(request.form.items(multi=True)) or list(request.args.items(multi=True))
    return redirect(f"{url_for('main.authorize')}?{urlencode(params)}", 303)


@bp.route("/idp", methods=["GET", "POST"])
@csrf.exempt  # the consent decision checks its token below; a request by POST changes nothing
def authorize() -> Any:
    """The authorization endpoint: check the request, log the member in, ask for consent."""
    if request.method == "POST" and "decision" not in request.form:
        return authorization_request_by_post()
    if request.method == "POST":
        csrf.protect()
    problem = authorization_request_problem(request.args)
    if problem:
        rejected = g.get("rejected") if current_user.is_authenticated and current_user.is_operator else None
        page = render_template("error.html", title="This sign-in link is not valid", message=problem, rejected=rejected)
        return page, 400
    member = current_user if current_user.is_authenticated else None
    try:
        grant = server.get_consent_grant(end_user=member)
    except OAuth2Error as error:
        if error.redirect_uri:
            return server.handle_error_response(None, error)
        return render_template(
            "error.html", title="This sign-in link is not valid", message=error.get_error_description()
        ), 400
    prompts = request.args.get("prompt", "").split()
    if member is None and "none" in prompts:  # OIDC Core §3.1.2.1: no page may be shown
        return server.handle_error_response(
            None, LoginRequiredError(redirect_uri=grant.redirect_uri, state=request.args.get("state"))
        )
    if member is None or needs_fresh_login(prompts):
        return redirect_to_login()
    client, scope = grant.client, grant.request.scope
    if request.method == "POST":
        if request.form.get("decision") != "allow":
            audit("consent_denied", member, client.client_id, scope)
            db.session.commit()
            return server.create_authorization_response(grant=grant, grant_user=None)
        audit("consent_given", member, client.client_id, scope)
        remember_consent(client, member, scope)
    elif consent_needed(client, member, scope):
        if request.args.get("prompt") == "none":
            error = ConsentRequiredError(redirect_uri=grant.redirect_uri, state=request.args.get("state"))
            return server.handle_error_response(None, error)
        allow_form_redirect(grant.redirect_uri)
        return render_template(
            "consent.html",
            client=client,
            redirect_host=urlsplit(grant.redirect_uri).netloc,
            scopes=[(s, SCOPES[s]) for s in scope_to_list(scope) or []],
            organization=member.organization,
        )
    return server.create_authorization_response(grant=grant, grant_user=member)


# ---------------------------------------------------------------------------------------------
# 9. Token, revocation, introspection and dynamic registration endpoints
# ---------------------------------------------------------------------------------------------


def find_token(token_string: str, hint: str | None) -> AccessToken | RefreshToken | None:
    """Find a token by its value whatever the hint says (RFC 7009 §2.1: the hint is a hint)."""
    lookups = [find_refresh_token, find_access_token]
    if hint == "access_token":
        lookups.reverse()
    for lookup in lookups:
        if found := lookup(token_string):
            return found
    return None


def find_refresh_token(token_string: str) -> RefreshToken | None:
    return db.session.scalar(sa.select(RefreshToken).where(RefreshToken.token_hash == sha256(token_string)))


def find_access_token(token_string: str) -> AccessToken | None:
    claims = verify_jwt(token_string)
    if claims is None:
        return None
    return db.session.scalar(sa.select(AccessToken).where(AccessToken.jti == claims.get("jti")))


class Revocation(RevocationEndpoint):
    """RFC 7009. Revoking a refresh token revokes its whole grant (§2.1)."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def check_params(self, oauth_request: OAuth2Request, client: Client) -> None:
        if not oauth_request.form.get("token"):
            raise InvalidRequestError("Send the token to revoke.")  # any hint is only a hint (§2.1)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: AccessToken | RefreshToken, oauth_request: OAuth2Request) -> None:
        if isinstance(token, RefreshToken):
            revoke_grant(token.grant, "refresh token revoked by the client")
        else:
            token.revoked_at = utcnow()
        kind = "refresh token" if isinstance(token, RefreshToken) else "access token"
        audit("token_revoked", token.grant.member, token.grant.client.client_id, f"{kind}, by the client")
        db.session.commit()


class Introspection(IntrospectionEndpoint):
    """RFC 7662, for confidential clients, about their own tokens only."""

    CLIENT_AUTH_METHODS = SECRET_AUTH_METHODS

    def check_params(self, oauth_request: OAuth2Request, client: Client) -> None:
        if not oauth_request.form.get("token"):
            raise InvalidRequestError("Send the token to introspect.")  # the hint is optional (§2.1)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: Any, client: Client, oauth_request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: AccessToken | RefreshToken) -> dict[str, Any]:
        grant = token.grant
        claims = {
            "client_id": grant.client.client_id,
            "scope": token.get_scope(),
            "sub": str(grant.member_id),
            "exp": int(token.expires_at.replace(tzinfo=UTC).timestamp()),
            "iss": issuer(),
        }
        if isinstance(token, AccessToken):
            claims.update(token_type="Bearer", aud=grant.resource)
        return claims


server.register_endpoint(Revocation)
server.register_endpoint(Introspection)


@bp.route("/oauth/token", methods=["POST"])
@csrf.exempt
@client_auth_limit
@limiter.limit(configured_limit("TOKEN_RATE_LIMIT"))
def issue_token() -> Response:
    """The token endpoint (RFC 6749 §3.2): authorization_code and refresh_token grants."""
    return repeated_parameter_error() or server.create_token_response()


def repeated_parameter_error() -> Response | None:
    """RFC 6749 §3.2: request parameters MUST NOT be included more than once."""
    body = request_body(request)
    if repeated := [key for key in body if len(body.getlist(key)) > 1]:
        # RFC 6749 §5.2 allows only printable ASCII, without " and \, in error_description.
        name = re.sub(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]", "?", repeated[0])[:40]
        return server.handle_error_response(None, InvalidRequestError(f"The parameter {name} is repeated."))
    return None


@bp.route("/oauth/revoke", methods=["POST"])
@csrf.exempt
@client_auth_limit
@limiter.limit(configured_limit("TOKEN_RATE_LIMIT"))
def revoke_token() -> Response:
    """Revoke an access or refresh token (RFC 7009)."""
    return repeated_parameter_error() or server.create_endpoint_response(Revocation.ENDPOINT_NAME)


@bp.route("/oauth/introspect", methods=["POST"])
@csrf.exempt
@client_auth_limit
@limiter.limit(configured_limit("TOKEN_RATE_LIMIT"))
def introspect_token() -> Response:
    """Describe a token to the client it was issued to (RFC 7662)."""
    return repeated_parameter_error() or server.create_endpoint_response(Introspection.ENDPOINT_NAME)


REGISTRATION_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]


class RegistrationError(Exception):
    """An RFC 7591 §3.2.2 error: ``error`` is invalid_redirect_uri or invalid_client_metadata."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def registration_metadata() -> dict[str, Any]:
    """Validate the RFC 7591 §2 client metadata in the body; unknown fields are ignored (§2)."""
    try:
        data = read_json()
    except ValueError as error:
        raise RegistrationError("invalid_client_metadata", str(error)) from None
    if not isinstance(data, dict):
        raise RegistrationError("invalid_client_metadata", "The body must be a JSON object.")
    uris = data.get("redirect_uris")
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris) or len(uris) > 10:
        raise RegistrationError("invalid_redirect_uri", "redirect_uris must be a list of one to ten URIs.")
    for uri in uris:
        if problem := check_uri(uri):
            raise RegistrationError("invalid_redirect_uri", f"{uri[:URI_MAX]} {problem}.")
    method = data.get("token_endpoint_auth_method", "client_secret_basic")  # §2's default
    if method not in REGISTRATION_AUTH_METHODS:
        raise RegistrationError(
            "invalid_client_metadata",
            f"token_endpoint_auth_method must be one of {', '.join(REGISTRATION_AUTH_METHODS)}.",
        )
    grant_types = data.get("grant_types", ["authorization_code"])
    if (
        not isinstance(grant_types, list)
        or not set(grant_types) <= {"authorization_code", "refresh_token"}
        or "authorization_code" not in grant_types
    ):
        raise RegistrationError("invalid_client_metadata", "grant_types may be authorization_code and refresh_token.")
    if data.get("response_types", ["code"]) != ["code"]:
        raise RegistrationError("invalid_client_metadata", 'response_types must be ["code"].')
    scope = normalize_scope(data["scope"]) if isinstance(data.get("scope"), str) else DEFAULT_CLIENT_SCOPE
    if not scope or not set(scope.split()) <= set(SCOPES):
        raise RegistrationError("invalid_client_metadata", f"scope may use: {' '.join(SCOPES)}.")
    name = data.get("client_name", "An unnamed app")
    if not isinstance(name, str):
        raise RegistrationError("invalid_client_metadata", "client_name must be text.")
    if problem := name_problem(name):
        raise RegistrationError("invalid_client_metadata", f"client_name {problem}.")
    links = {}
    for key in ("client_uri", "logo_uri"):
        value = data.get(key)
        if value is None:
            continue
        if (
            not isinstance(value, str)
            or len(value) > URI_MAX
            or urlsplit(value).scheme != "https"
            or not urlsplit(value).hostname
        ):
            raise RegistrationError(
                "invalid_client_metadata", f"{key} must be an https URL of at most {URI_MAX} characters."
            )
        links[key] = value
    return {
        "redirect_uris": uris,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
        "response_types": ["code"],
        "scope": scope,
        "client_name": name.strip(),
        **links,
    }


def initial_access_token_error() -> Response | None:
    """RFC 7591 §3: with INITIAL_ACCESS_TOKEN set, registration needs it as an RFC 6750 bearer token."""
    expected = current_app.config["INITIAL_ACCESS_TOKEN"]
    if not expected:
        return None  # open registration, which ChatGPT, Claude and other MCP clients rely on
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if token and secrets.compare_digest(sha256(token), sha256(expected)):
        return None
    if token:
        error = BearerError("invalid_token", "The initial access token is not valid.")
    else:
        error = BearerError(None, "Registration needs an initial access token from the operator.")
    response = bearer_error_response(error, None, {"error": "invalid_token", "error_description": error.description})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/oauth/register", methods=["POST"])
@csrf.exempt
@limiter.limit(configured_limit("REGISTRATION_RATE_LIMIT"))
def register_client_dynamically() -> tuple[Response, int]:
    """Dynamic client registration (RFC 7591): MCP clients register themselves."""
    if refused := initial_access_token_error():
        return refused, refused.status_code
    try:
        metadata = registration_metadata()
    except RegistrationError as error:
        response = jsonify({"error": error.error, "error_description": error.description})
        response.headers["Cache-Control"] = "no-store"
        return response, 400
    secret = None if metadata["token_endpoint_auth_method"] == "none" else secrets.token_urlsafe(32)
    client = Client(
        client_id=new_client_id(),
        client_secret_hash=sha256(secret) if secret else None,
        name=metadata["client_name"],
        redirect_uris=metadata["redirect_uris"],
        scope=metadata["scope"],
        grant_types=metadata["grant_types"],
        self_registered=True,
        client_uri=metadata.get("client_uri"),
        logo_uri=metadata.get("logo_uri"),
    )
    db.session.add(client)
    db.session.flush()
    audit("client_registered", client_id=client.client_id, actor=client.name, detail=" ".join(client.redirect_uris))
    db.session.commit()
    body = {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.created_at.replace(tzinfo=UTC).timestamp()),
        **metadata,
    }
    if secret:
        body.update(client_secret=secret, client_secret_expires_at=0)
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 201


# ---------------------------------------------------------------------------------------------
# 10. Discovery: /.well-known metadata and the JWKS
# ---------------------------------------------------------------------------------------------


def server_metadata() -> dict[str, Any]:
    """RFC 8414 and OpenID Connect Discovery metadata; both documents are this one."""
    base = issuer()
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/idp",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "registration_endpoint": f"{base}/oauth/register",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": SECRET_AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "email"],
        "prompt_values_supported": ["none", "login", "consent"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,  # Discovery §3 defaults it to true
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": f"{base}/",
    }


@bp.route("/.well-known/openid-configuration")
@bp.route("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    """Authorization server metadata (RFC 8414 §3, OpenID Connect Discovery §4)."""
    return jsonify(server_metadata())


@bp.route("/.well-known/jwks.json")
def jwks() -> Response:
    """The public signing keys, the retired one included until it is removed."""
    response = jsonify(load_keys().public.as_dict())
    response.cache_control.max_age = 60  # a rotated-in key shows up within a minute
    response.cache_control.public = True
    return response


@bp.route("/.well-known/oauth-protected-resource")
@bp.route("/.well-known/oauth-protected-resource/mcp")
@bp.route("/.well-known/oauth-protected-resource/api")
def protected_resource_metadata() -> Response:
    """Protected resource metadata (RFC 9728 §3): the MCP endpoint's at the root and at /mcp."""
    resource = api_resource() if request.path.endswith("/api") else mcp_resource()
    return jsonify(
        {
            "resource": resource,
            "authorization_servers": [issuer()],
            "scopes_supported": ["todos:read", "todos:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Connected Todos MCP server" if resource == mcp_resource() else "Connected Todos API",
            "resource_documentation": f"{issuer()}/",
        }
    )


# ---------------------------------------------------------------------------------------------
# 11. Resource server: bearer tokens, UserInfo and the todo REST API
# ---------------------------------------------------------------------------------------------

MAX_TOKEN_BYTES = 8192


class BearerError(Exception):
    """An RFC 6750 §3.1 error: ``error`` None means the request carried no token at all."""

    def __init__(self, error: str | None, description: str = "", status: int = 401, scope: str = "") -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.scope = error, description, status, scope


@dataclass
class Bearer:
    """An access token that passed every check, and who it acts for."""

    member: Member
    client_id: str
    scope: list[str]
    claims: dict[str, Any]


def verify_jwt(token: str, audiences: list[str] | None = None) -> dict[str, Any] | None:
    """Verify one of our RFC 9068 access tokens: signature, typ, iss, exp, nbf and aud."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    try:
        header = b64url_json(token.split(".")[0])
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return None
        if header.get("typ") not in ("at+jwt", "application/at+jwt"):  # RFC 9068 §4
            return None
        if header.keys() & {"jwk", "jku", "x5u", "x5c", "crit"}:
            return None  # never take keys from the token itself
        keys = load_keys()
        if header.get("kid") not in keys.kids:
            keys = load_keys(force=True)  # another host may have rotated the key
        if header.get("kid") not in keys.kids:
            return None
        decoded = jwt.decode(token, keys.public, algorithms=["RS256"])
        claims = dict(decoded.claims)
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer()},
            exp={"essential": True},
            jti={"essential": True},
            sub={"essential": True},
        )
        registry.validate(claims)
    except (JoseError, ValueError, TypeError, UnicodeDecodeError):
        return None
    if audiences is not None and not set(audiences) & set(as_list(claims.get("aud"))):
        return None  # RFC 8707: a token for another resource is not for us
    return claims


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def member_id_of(claims: dict[str, Any]) -> int:
    """The member id in ``sub``, or 0 (no member) when it is not one."""
    sub = str(claims["sub"])
    return int(sub) if sub.isascii() and sub.isdigit() and int(sub) < ID_LIMIT else 0


def authenticate_bearer(audiences: list[str], required_scope: str | None) -> Bearer:
    """Check the Authorization header's bearer token for one of ``audiences`` and ``required_scope``.

    The token must verify, its record and grant must not be revoked, and the member must still
    belong to the token's organization. The token is never read from the query string.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BearerError(None, scope=required_scope or "")
    claims = verify_jwt(token.strip(), audiences)
    if claims is None:
        raise BearerError("invalid_token", "The access token is invalid or expired.", scope=required_scope or "")
    row = db.session.execute(
        sa.select(Member, Client.client_id)
        .join(Grant, Grant.member_id == Member.id)
        .join(AccessToken, AccessToken.grant_id == Grant.id)
        .join(Client, Client.id == Grant.client_id)
        .where(
            AccessToken.jti == claims["jti"],
            AccessToken.revoked_at.is_(None),
            Grant.revoked_at.is_(None),
            Member.id == member_id_of(claims),
            Member.organization_id == claims.get("org_id"),
            Client.client_id == claims.get("client_id"),
        )
    ).first()
    if row is None:
        raise BearerError("invalid_token", "The access token was revoked.", scope=required_scope or "")
    scopes = scope_to_list(claims.get("scope", "")) or []
    if required_scope and required_scope not in scopes:
        raise BearerError("insufficient_scope", f"This needs the {required_scope} scope.", 403, required_scope)
    return Bearer(member=row[0], client_id=row[1], scope=scopes, claims=claims)


def resource_metadata_url(resource: str) -> str:
    """Where RFC 9728 metadata for ``resource`` lives: the well-known path, then its path."""
    return f"{issuer()}/.well-known/oauth-protected-resource{urlsplit(resource).path}"


def bearer_challenge(error: BearerError, resource: str | None) -> str:
    """The RFC 6750 §3 WWW-Authenticate value, with RFC 9728 §5.1's resource_metadata."""
    params = [f'realm="{issuer()}"']
    if error.error:  # RFC 6750 §3.1: no error code when the request had no token at all
        params.append(f'error="{error.error}"')
        if error.description:
            params.append(f'error_description="{error.description}"')
    if error.scope:
        params.append(f'scope="{error.scope}"')
    if resource:
        params.append(f'resource_metadata="{resource_metadata_url(resource)}"')
    return "Bearer " + ", ".join(params)


def bearer_error_response(error: BearerError, resource: str | None, body: Any = None) -> Response:
    if body is None:
        body = {"error": error.error or "invalid_token", "message": error.description or "Send an access token."}
    response = jsonify(body)
    response.status_code = error.status
    response.headers["WWW-Authenticate"] = bearer_challenge(error, resource)
    return response


def require_token(
    scope: str | None, audiences: Callable[[], list[str]] = lambda: [api_resource()]
) -> Callable[..., Any]:
    """View decorator: the request needs a bearer token for one of ``audiences`` with ``scope``."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            allowed = audiences()
            try:
                g.bearer = authenticate_bearer(allowed, scope)
            except BearerError as error:
                return bearer_error_response(error, allowed[0] if len(allowed) == 1 else None)
            try:
                return view(*args, **kwargs)
            except TodoError as error:
                body = {"error": "not_found" if error.status == 404 else "invalid_request", "message": error.message}
                if error.field:
                    body["field"] = error.field
                return jsonify(body), error.status

        return csrf.exempt(limiter.limit(configured_limit("API_RATE_LIMIT"))(wrapped))

    return decorator


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@require_token("openid", audiences=resources)
def userinfo() -> Response:
    """OpenID Connect UserInfo (Core §5.3): the claims the token's scope allows."""
    bearer: Bearer = g.bearer
    return jsonify(user_info(bearer.member, " ".join(bearer.scope)))


def json_body() -> dict[str, Any]:
    try:
        data = read_json()
    except ValueError as error:
        raise TodoError(str(error), status=400) from None
    if not isinstance(data, dict):
        raise TodoError("The body must be a JSON object.", status=400)
    return data


def parse_completed(value: str | None) -> bool | None:
    if value is None:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise TodoError("completed must be true or false.", "completed", 400)


def parse_limit(value: str | None) -> int:
    if value is None:
        return PAGE_DEFAULT
    if not (value.isascii() and value.isdigit()):
        raise TodoError(f"limit must be a number between 1 and {PAGE_MAX}.", "limit", 400)
    return int(value)


@bp.route("/api/me")
@require_token("todos:read")
def api_me() -> Response:
    """Get the member and organization.
    ---
    get:
      operationId: getMe
      summary: Get the signed-in member and their organization.
      x-openai-isConsequential: false
      responses:
        "200":
          description: The member the token acts for.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Me"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
    """
    return jsonify(me_json(g.bearer.member))


@bp.route("/api/todos", methods=["GET"])
@require_token("todos:read")
def api_list_todos() -> Response:
    """List todos.
    ---
    get:
      operationId: listTodos
      summary: List the organization's todos, newest first, one page at a time.
      description: Pass next_cursor back as cursor to get the next page. Filter with completed.
      x-openai-isConsequential: false
      parameters:
        - name: completed
          in: query
          required: false
          description: Only completed (true) or open (false) todos.
          schema: {type: boolean}
        - name: limit
          in: query
          required: false
          description: How many todos per page, from 1 to 100.
          schema: {type: integer, minimum: 1, maximum: 100, default: 20}
        - Cursor
      responses:
        "200":
          description: A page of todos.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/TodoPage"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
    """
    args = request.args
    page, next_cursor = list_todos(
        g.bearer.member, parse_completed(args.get("completed")), parse_limit(args.get("limit")), args.get("cursor")
    )
    return jsonify({"todos": [todo_json(t) for t in page], "next_cursor": next_cursor})


@bp.route("/api/todos", methods=["POST"])
@require_token("todos:write")
def api_create_todo() -> tuple[Response, int]:
    """Create a todo.
    ---
    post:
      operationId: createTodo
      summary: Create a todo in the organization.
      x-openai-isConsequential: false
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/TodoCreate"}
      responses:
        "201":
          description: The new todo.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Todo"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "422": {$ref: "#/components/responses/Invalid"}
    """
    todo = create_todo(g.bearer.member, json_body())
    return jsonify(todo_json(todo)), 201


@bp.route("/api/todos/<int:todo_id>", methods=["GET"])
@require_token("todos:read")
def api_get_todo(todo_id: int) -> Response:
    """Get a todo.
    ---
    get:
      operationId: getTodo
      summary: Get one todo by id.
      x-openai-isConsequential: false
      parameters:
        - TodoId
      responses:
        "200":
          description: The todo.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Todo"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "404": {$ref: "#/components/responses/NotFound"}
    """
    return jsonify(todo_json(get_todo(g.bearer.member, todo_id)))


@bp.route("/api/todos/<int:todo_id>", methods=["PATCH"])
@require_token("todos:write")
def api_update_todo(todo_id: int) -> Response:
    """Update a todo.
    ---
    patch:
      operationId: updateTodo
      summary: Change a todo's title, notes, due date or completion. Send only what changes.
      x-openai-isConsequential: false
      parameters:
        - TodoId
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/TodoUpdate"}
      responses:
        "200":
          description: The updated todo.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Todo"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "404": {$ref: "#/components/responses/NotFound"}
        "422": {$ref: "#/components/responses/Invalid"}
    """
    return jsonify(todo_json(update_todo(g.bearer.member, todo_id, json_body())))


@bp.route("/api/todos/<int:todo_id>", methods=["DELETE"])
@require_token("todos:write")
def api_delete_todo(todo_id: int) -> tuple[str, int]:
    """Delete a todo.
    ---
    delete:
      operationId: deleteTodo
      summary: Delete a todo for good.
      x-openai-isConsequential: true
      parameters:
        - TodoId
      responses:
        "204": {description: The todo was deleted.}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "404": {$ref: "#/components/responses/NotFound"}
    """
    delete_todo(g.bearer.member, todo_id)
    return "", 204


# ---------------------------------------------------------------------------------------------
# 12. The MCP endpoint /mcp (Streamable HTTP, JSON responses)
# ---------------------------------------------------------------------------------------------

MCP_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")  # newest first
MCP_MAX_BODY = 64 * 1024
MCP_SCOPES = "todos:read todos:write"
ID_SCHEMA = {"type": "integer", "description": "The todo's id, from list_todos."}


@dataclass
class Tool:
    """An MCP tool: its description, schemas and annotations, and the function that runs it."""

    name: str
    title: str
    description: str
    scope: str
    input_properties: dict[str, Any]
    required: list[str]
    output_schema: dict[str, Any]
    annotations: dict[str, bool]
    run: Callable[[Member, dict[str, Any]], dict[str, Any]]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": self.input_properties,
                "required": self.required,
                "additionalProperties": False,
            },
            "outputSchema": self.output_schema,
            "annotations": {"title": self.title, **self.annotations, "openWorldHint": False},
        }


def todo_id_argument(arguments: dict[str, Any]) -> int:
    todo_id = arguments.get("id")
    if not isinstance(todo_id, int) or isinstance(todo_id, bool):
        raise TodoError("id must be the integer id of a todo; call list_todos to find it.", "id")
    return todo_id


def run_list_todos(member: Member, arguments: dict[str, Any]) -> dict[str, Any]:
    completed, limit = arguments.get("completed"), arguments.get("limit", PAGE_DEFAULT)
    if completed is not None and not isinstance(completed, bool):
        raise TodoError("completed must be true, false or left out.", "completed")
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TodoError(f"limit must be an integer from 1 to {PAGE_MAX}.", "limit")
    cursor = arguments.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise TodoError("cursor must be the next_cursor string of the previous page.", "cursor")
    page, next_cursor = list_todos(member, completed, limit, cursor)
    return {"todos": [todo_json(t) for t in page], "next_cursor": next_cursor}


def run_update_todo(member: Member, arguments: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in arguments.items() if k != "id"}
    if not fields:
        raise TodoError("Give at least one of title, notes, completed or due_date to change.")
    return todo_json(update_todo(member, todo_id_argument(arguments), fields))


def run_delete_todo(member: Member, arguments: dict[str, Any]) -> dict[str, Any]:
    todo_id = todo_id_argument(arguments)
    delete_todo(member, todo_id)
    return {"deleted": True, "id": todo_id}


READ = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True}
TOOLS = {
    tool.name: tool
    for tool in [
        Tool(
            "whoami",
            "Who am I",
            "The member this connection acts for, and their organization.",
            "todos:read",
            {},
            [],
            ME_SCHEMA,
            READ,
            lambda member, _: me_json(member),
        ),
        Tool(
            "list_todos",
            "List todos",
            "List the organization's todos, newest first. Pass next_cursor back as cursor for more.",
            "todos:read",
            {
                "completed": {"type": "boolean", "description": "Only completed (true) or open (false) todos."},
                "limit": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
                "cursor": CURSOR_SCHEMA,
            },
            [],
            todo_page_schema(TODO_SCHEMA),
            READ,
            run_list_todos,
        ),
        Tool(
            "add_todo",
            "Add a todo",
            "Create a todo in the organization.",
            "todos:write",
            TODO_PROPERTIES,
            ["title"],
            TODO_SCHEMA,
            {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False},
            lambda member, arguments: todo_json(create_todo(member, arguments)),
        ),
        Tool(
            "update_todo",
            "Update a todo",
            "Change a todo's title, notes, due date or completion; send only what changes.",
            "todos:write",
            {"id": ID_SCHEMA, **TODO_PROPERTIES},
            ["id"],
            TODO_SCHEMA,
            {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True},
            run_update_todo,
        ),
        Tool(
            "complete_todo",
            "Complete a todo",
            "Mark a todo as done.",
            "todos:write",
            {"id": ID_SCHEMA},
            ["id"],
            TODO_SCHEMA,
            {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True},
            lambda member, arguments: todo_json(update_todo(member, todo_id_argument(arguments), {"completed": True})),
        ),
        Tool(
            "delete_todo",
            "Delete a todo",
            "Delete a todo for good.",
            "todos:write",
            {"id": ID_SCHEMA},
            ["id"],
            {
                "type": "object",
                "required": ["deleted", "id"],
                "properties": {"deleted": {"type": "boolean"}, "id": {"type": "integer"}},
            },
            {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True},
            run_delete_todo,
        ),
    ]
}


class RpcError(Exception):
    """A JSON-RPC 2.0 error, with the HTTP status the transport answers it with."""

    def __init__(self, code: int, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def rpc_response(message_id: Any, result: Any = None, error: RpcError | None = None) -> Response:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": message_id}
    if error:
        body["error"] = {"code": error.code, "message": error.message}
    else:
        body["result"] = result
    response = jsonify(body)
    response.status_code = error.status if error else 200
    return response


def mcp_origin_allowed(origin: str) -> bool:
    """A present Origin must be allowed (MCP transports: DNS-rebinding protection)."""
    allowed = current_app.config["MCP_ALLOWED_ORIGINS"]
    return "*" in allowed or origin in allowed or origin == issuer()


def read_rpc_message() -> dict[str, Any]:
    """Parse one JSON-RPC message; batches were removed from MCP in 2025-06-18."""
    if (request.content_length or 0) > MCP_MAX_BODY:
        raise RpcError(-32600, f"The message is larger than {MCP_MAX_BODY} bytes.", 413)
    try:
        message = parse_json()
    except ValueError as error:
        raise RpcError(-32700, f"Parse error: {error}", 400) from None
    if isinstance(message, list):
        raise RpcError(-32600, "Batches are not supported; send one message per request.", 400)
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(-32600, "Invalid request: expected a JSON-RPC 2.0 object.", 400)
    # MCP: a request id is a string or an integer, never null; JSON-RPC answers a bad one with null.
    if "id" in message and type(message["id"]) not in (str, int):
        raise RpcError(-32600, "Invalid request: id must be a string or an integer.", 400)
    return message


@bp.route("/mcp", methods=["POST", "GET", "DELETE"], strict_slashes=True)
@csrf.exempt
@limiter.limit(configured_limit("API_RATE_LIMIT"))
def mcp() -> Response:
    """The MCP server: one JSON-RPC message per POST, answered with JSON."""
    if request.method != "POST":  # no SSE stream and no sessions to end
        return Response(status=405, headers={"Allow": "POST"})
    origin = request.headers.get("Origin")
    if origin and not mcp_origin_allowed(origin):
        return rpc_response(None, error=RpcError(-32600, f"Origin {origin} is not allowed.", 403))
    version = request.headers.get("MCP-Protocol-Version")
    if version and version not in MCP_PROTOCOL_VERSIONS:
        return rpc_response(None, error=RpcError(-32600, f"Unsupported MCP-Protocol-Version {version}.", 400))
    try:
        bearer = authenticate_bearer([mcp_resource()], None)
    except BearerError as error:
        error.scope = MCP_SCOPES
        return bearer_error_response(error, mcp_resource())
    try:
        message = read_rpc_message()
    except RpcError as error:
        return rpc_response(None, error=error)
    if "id" not in message:  # a notification, or a response to us
        return Response(status=202)
    method, params = message.get("method"), message.get("params", {})
    try:
        if not isinstance(method, str) or not isinstance(params, dict):
            raise RpcError(-32600, "Invalid request: method must be a string and params an object.", 400)
        if not storable(params):  # checked here, not while parsing, so that the error keeps the id
            raise RpcError(-32602, "Invalid params: text must be valid UTF-8, without NUL characters.", 400)
        if method == "tools/call":
            return call_tool(message["id"], params, bearer)
        return rpc_response(message["id"], mcp_result(method, params))
    except RpcError as error:
        return rpc_response(message["id"], error=error)


def mcp_result(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Answer initialize, ping and tools/list; anything else is unknown (-32601)."""
    if method == "initialize":
        requested = params.get("protocolVersion")
        return {
            "protocolVersion": requested if requested in MCP_PROTOCOL_VERSIONS else MCP_PROTOCOL_VERSIONS[0],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "connected-todos", "title": "Connected Todos", "version": APP_VERSION},
            "instructions": "Manage the todos of the member's organization. Call list_todos to find ids.",
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": [tool.describe() for tool in TOOLS.values()]}
    raise RpcError(-32601, f"Method not found: {method}")


def call_tool(message_id: Any, params: dict[str, Any], bearer: Bearer) -> Response:
    """Run a tool with the REST API's rules; a bad argument is a tool error the model can fix."""
    tool = TOOLS.get(params.get("name"))  # type: ignore[arg-type]
    if tool is None:
        raise RpcError(-32602, f"Unknown tool {params.get('name')!r}. Tools: {', '.join(TOOLS)}.")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise RpcError(-32602, "arguments must be an object.")
    if tool.scope not in bearer.scope:
        error = BearerError("insufficient_scope", f"{tool.name} needs the {tool.scope} scope.", 403)
        error.scope = tool.scope
        challenge = bearer_challenge(error, mcp_resource())
        result = tool_error(error.description)
        result["_meta"] = {"mcp/www_authenticate": [challenge]}
        return bearer_error_response(error, mcp_resource(), {"jsonrpc": "2.0", "id": message_id, "result": result})
    if unknown := sorted(set(arguments) - set(tool.input_properties)):
        takes = ", ".join(tool.input_properties) or "no arguments"
        return rpc_response(message_id, tool_error(f"Unknown argument {unknown[0]!r}. {tool.name} takes: {takes}."))
    try:
        structured = tool.run(bearer.member, arguments)
    except TodoError as error:
        return rpc_response(message_id, tool_error(error.message))
    content = [{"type": "text", "text": json.dumps(structured)}]
    return rpc_response(message_id, {"content": content, "structuredContent": structured, "isError": False})


def tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


# ---------------------------------------------------------------------------------------------
# 13. Pages for operators (/setup), members (connected apps) and visitors (the playground)
# ---------------------------------------------------------------------------------------------

PLAYGROUND_CLIENT_ID = "connected-todos-playground"


def operator_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """View decorator that lets only operators through."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_operator:
            abort(403, "Only operators can open this page. Ask one to run: flask --app app make-operator EMAIL")
        return view(*args, **kwargs)

    return wrapped


def no_store(page: str) -> Response:
    """A page that shows a secret must not be kept by any cache (RFC 6749 §5.1's spirit)."""
    response = Response(page)
    response.headers["Cache-Control"] = "no-store"
    return response


def connected_members(client: Client) -> int:
    return db.session.scalar(sa.select(sa.func.count(Consent.id)).where(Consent.client_id == client.id)) or 0


def setup_client_or_404(client_id: str) -> Client:
    client = query_client(client_id)
    if client is None or client.client_id == PLAYGROUND_CLIENT_ID:
        abort(404)
    return client


@bp.route("/setup")
@operator_required
def setup() -> Response:
    """The operator's page: connect a GPT or an MCP client, and see every connected app."""
    clients = db.session.scalars(
        sa.select(Client).where(Client.client_id != PLAYGROUND_CLIENT_ID).order_by(Client.created_at.desc())
    ).all()
    rows = [(client, connected_members(client)) for client in clients]
    return no_store(render_template("setup.html", clients=rows, base=issuer()))


@bp.route("/setup/gpt", methods=["POST"])
@operator_required
def setup_gpt() -> Response:
    """Register a custom GPT: a confidential third-party client; show its secret once."""
    try:
        client, secret = register_client(
            request.form.get("name") or "ChatGPT", [], public=False, first_party=False, by=current_user
        )
    except ValueError as error:
        flash(str(error), "error")
        return redirect(url_for("main.setup"))
    flash(f"{client.name} is registered. Copy the secret now: it is shown only once.")
    return no_store(render_client_page(client, secret=secret))


def render_client_page(client: Client, secret: str | None = None, pending_uri: str | None = None) -> str:
    rejected = db.session.scalars(
        sa.select(RejectedRedirect)
        .where(RejectedRedirect.client_id == client.id)
        .order_by(RejectedRedirect.last_seen_at.desc())
        .limit(10)
    ).all()
    return render_template(
        "setup_client.html",
        client=client,
        secret=secret,
        base=issuer(),
        rejected=rejected,
        pending_uri=pending_uri,
        members=connected_members(client),
    )


@bp.route("/setup/clients/<client_id>")
@operator_required
def setup_client(client_id: str) -> Response:
    """One connected app: the values to paste, its callback URLs and its secret."""
    return no_store(render_client_page(setup_client_or_404(client_id)))


@bp.route("/setup/clients/<client_id>/redirect-uris", methods=["POST"])
@operator_required
def setup_add_redirect_uri(client_id: str) -> Any:
    """Add a callback URL: a GPT's is added at once, any other after an explicit confirmation."""
    client = setup_client_or_404(client_id)
    uri = request.form.get("redirect_uri", "").strip()
    if not CHATGPT_CALLBACK.fullmatch(uri) and request.form.get("confirm") != "yes":
        if problem := check_uri(uri):
            flash(f"{uri} {problem}.", "error")
            return redirect(url_for("main.setup_client", client_id=client.client_id))
        return no_store(render_client_page(client, pending_uri=uri))  # asks to confirm
    try:
        add_redirect_uri(client, uri, by=current_user)
    except ValueError as error:
        flash(str(error), "error")
    else:
        looks_like = "ChatGPT's callback URL" if CHATGPT_CALLBACK.fullmatch(uri) else "The callback URL"
        flash(f"{looks_like} {uri} is registered for {client.name}.")
    return redirect(url_for("main.setup_client", client_id=client.client_id))


@bp.route("/setup/clients/<client_id>/redirect-uris/remove", methods=["POST"])
@operator_required
def setup_remove_redirect_uri(client_id: str) -> Any:
    """Remove a callback URL."""
    client = setup_client_or_404(client_id)
    uri = request.form.get("redirect_uri", "")
    client.redirect_uris = [u for u in client.redirect_uris if u != uri]
    audit("redirect_uri_removed", current_user, client.client_id, uri)
    db.session.commit()
    flash(f"Removed {uri}.")
    return redirect(url_for("main.setup_client", client_id=client.client_id))


@bp.route("/setup/clients/<client_id>/secret", methods=["POST"])
@operator_required
def setup_rotate_secret(client_id: str) -> Any:
    """Rotate a secret in three steps, as Stytch does: start, then complete or cancel."""
    client = setup_client_or_404(client_id)
    action = request.form.get("action")
    if client.is_public:
        abort(400, "A public client has no secret.")
    if action == "start":
        secret = start_secret_rotation(client, by=current_user)
        flash("A new secret is ready; the old one keeps working until you complete the rotation.")
        return no_store(render_client_page(client, secret=secret))
    if action in ("complete", "cancel"):
        finish_secret_rotation(client, complete=action == "complete", by=current_user)
        flash("Rotation completed: only the new secret works now." if action == "complete" else "Rotation cancelled.")
    return redirect(url_for("main.setup_client", client_id=client.client_id))


@bp.route("/setup/clients/<client_id>/delete", methods=["POST"])
@operator_required
def setup_delete_client(client_id: str) -> Any:
    """Delete a connected app; every token it holds stops working."""
    client = setup_client_or_404(client_id)
    delete_client(client, by=current_user)
    flash(f"{client.name} is deleted and all of its tokens are revoked.")
    return redirect(url_for("main.setup"))


AUDIT_PAGE = 100
AUDIT_FILTERS = ("event", "client_id", "actor", "ip_address")


@bp.route("/setup/audit")
@operator_required
def audit_log() -> Response:
    """The audit trail, newest first, a page at a time, filtered by event, client, actor or address."""
    values = (request.args.get(name, "").strip() for name in AUDIT_FILTERS)
    filters = {name: value for name, value in zip(AUDIT_FILTERS, values, strict=True) if value}
    query = sa.select(AuditEvent).filter_by(**filters)
    try:
        events, next_cursor = keyset_page(query, AuditEvent, AUDIT_PAGE, request.args.get("cursor"))
    except ValueError:
        return redirect(url_for("main.audit_log", **filters))  # a cursor that no page gave out
    return no_store(
        render_template("audit.html", events=events, names=AUDIT_EVENTS, filters=filters, next_cursor=next_cursor)
    )


@bp.route("/settings/connected-apps")
@login_required
def connected_apps() -> str:
    """The apps the member has allowed, with what they may do and when they last did it."""
    consents = db.session.scalars(
        sa.select(Consent).where(Consent.member_id == current_user.id).order_by(Consent.granted_at.desc())
    ).all()
    apps = []
    for consent in consents:
        client = db.session.get(Client, consent.client_id)
        last_used = db.session.scalar(
            sa.select(sa.func.max(Grant.last_used_at)).where(
                Grant.member_id == current_user.id, Grant.client_id == client.id
            )
        )
        apps.append(
            {
                "client": client,
                "scopes": [(s, SCOPES.get(s, s)) for s in consent.scope.split()],
                "granted_at": consent.granted_at,
                "last_used_at": last_used,
            }
        )
    return render_template("connected_apps.html", apps=apps)


@bp.route("/settings/connected-apps/<client_id>/revoke", methods=["POST"])
@login_required
def revoke_connected_app(client_id: str) -> Any:
    """Cut an app off: its tokens for this member stop working at once."""
    client = query_client(client_id)
    if client is None:
        abort(404)
    audit("app_disconnected", current_user, client.client_id)
    revoke_member_grants(current_user, client)
    db.session.commit()
    flash(f"{client.name} can no longer act for you.")
    return redirect(url_for("main.connected_apps"))


def playground_client() -> Client:
    """The built-in first-party public client, with this deployment's callback URL."""
    callback = f"{issuer()}/playground/callback"
    client = query_client(PLAYGROUND_CLIENT_ID)
    if client is None:
        client = Client(client_id=PLAYGROUND_CLIENT_ID, name="Playground", first_party=True, redirect_uris=[])
        db.session.add(client)
    if callback not in client.redirect_uris:
        client.redirect_uris = [*client.redirect_uris, callback]
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # another worker created it first
        db.session.rollback()
        return playground_client()
    return client


@bp.route("/playground")
@bp.route("/playground/callback", endpoint="playground_callback")
def playground() -> str:
    """Walk the OAuth flow one step at a time in the browser, without ChatGPT."""
    client = playground_client()
    return render_template(
        "playground.html",
        client_id=client.client_id,
        base=issuer(),
        redirect_uri=f"{issuer()}/playground/callback",
        scope="openid profile email todos:read todos:write",
    )


# ---------------------------------------------------------------------------------------------
# 14. openapi.yaml, generated from the views with apispec
# ---------------------------------------------------------------------------------------------

OPENAPI_BASE_URL = "http://127.0.0.1:5000"  # the committed file's; /openapi.yaml uses the real one
API_VIEWS = [api_me, api_list_todos, api_create_todo, api_get_todo, api_update_todo, api_delete_todo]


def error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_spec(base_url: str) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of the todo API from the views' docstrings."""
    spec = APISpec(
        title="Connected Todos API",
        version=APP_VERSION,
        openapi_version="3.1.0",
        info={"description": "Read and manage the todos of the member's organization."},
        servers=[{"url": base_url}],
    )
    spec.components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": f"{base_url}/idp",
                    "tokenUrl": f"{base_url}/oauth/token",
                    "refreshUrl": f"{base_url}/oauth/token",
                    "scopes": SCOPES,
                }
            },
        },
    )
    spec.components.schema("Todo", TODO_SCHEMA)
    spec.components.schema(
        "TodoCreate",
        {"type": "object", "required": ["title"], "properties": TODO_PROPERTIES, "additionalProperties": False},
    )
    spec.components.schema(
        "TodoUpdate", {"type": "object", "properties": TODO_PROPERTIES, "additionalProperties": False}
    )
    spec.components.schema("TodoPage", todo_page_schema({"$ref": "#/components/schemas/Todo"}))
    spec.components.schema("Me", ME_SCHEMA)
    spec.components.schema(
        "Error",
        {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "The input that was wrong."},
            },
        },
    )
    spec.components.parameter(
        "TodoId",
        "path",
        {"name": "todo_id", "required": True, "schema": {"type": "integer"}, "description": "The todo's id."},
    )
    spec.components.parameter(
        "Cursor",
        "query",
        {
            "name": "cursor",
            "required": False,
            "schema": CURSOR_SCHEMA,
            "description": "The next_cursor of the previous page.",
        },
    )
    for name, text in [
        ("BadRequest", "The request is malformed."),
        ("Unauthorized", "The access token is missing, invalid or revoked."),
        ("Forbidden", "The access token lacks the scope."),
        ("NotFound", "There is no such todo."),
        ("Invalid", "A field is invalid; the body names it."),
    ]:
        spec.components.response(name, error_response(text))
    scope_of = {"todos:read": ["todos:read"], "todos:write": ["todos:write"]}
    for view in API_VIEWS:
        rule = next(r for r in current_app.url_map.iter_rules() if r.endpoint == f"main.{view.__name__}")
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        operations = load_operations_from_docstring(view.__doc__)
        scope = "todos:write" if rule.methods & {"POST", "PATCH", "DELETE"} else "todos:read"
        for operation in operations.values():
            operation["security"] = [{"oauth2": scope_of[scope]}]
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def openapi_yaml(base_url: str) -> str:
    return yaml.safe_dump(openapi_spec(base_url), sort_keys=False, allow_unicode=True)


@bp.route("/openapi.yaml")
def openapi_document() -> Response:
    """The OpenAPI document, with this deployment's own URL, for the GPT builder to import."""
    return Response(openapi_yaml(issuer()), mimetype="application/yaml")


# ---------------------------------------------------------------------------------------------
# 15. CLI commands
# ---------------------------------------------------------------------------------------------

cli = AppGroup("commands", help="Connected Todos commands.")


def get_client_or_fail(client_id: str) -> Client:
    client = query_client(client_id)
    if client is None:
        raise click.ClickException(f"No client with client_id {client_id}.")
    return client


@cli.command("create-client")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--public", is_flag=True, help="A public client: no secret, PKCE required.")
@click.option("--first-party", is_flag=True, help="A first-party client: no consent page.")
@click.option("--scope", default=DEFAULT_CLIENT_SCOPE, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def create_client_command(
    name: str, redirect_uris: tuple[str, ...], public: bool, first_party: bool, scope: str, as_json: bool
) -> None:
    """Register a connected app and print its client_id (and secret, once)."""
    try:
        client, secret = register_client(name, list(redirect_uris), public, first_party, scope)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    result = {"client_id": client.client_id}
    if secret:
        result["client_secret"] = secret
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"client_id:     {client.client_id}")
    if secret:
        click.echo(f"client_secret: {secret}")
        click.echo("The secret is shown only now; it is stored as a hash.")


@cli.command("list-clients")
def list_clients_command() -> None:
    """List the connected apps."""
    for client in db.session.scalars(sa.select(Client).order_by(Client.id)):
        click.echo(f"{client.client_id}  {client.name}  ({client.client_type})  {' '.join(client.redirect_uris)}")


@cli.command("rotate-client-secret")
@click.argument("client_id")
def rotate_client_secret_command(client_id: str) -> None:
    """Give a confidential client a new secret; the old one stops working."""
    client = get_client_or_fail(client_id)
    if client.is_public:
        raise click.ClickException("A public client has no secret.")
    secret = replace_client_secret(client)
    click.echo(f"client_secret: {secret}")


@cli.command("add-redirect-uri")
@click.argument("client_id")
@click.argument("uri")
def add_redirect_uri_command(client_id: str, uri: str) -> None:
    """Register another redirect URI for a client."""
    client = get_client_or_fail(client_id)
    try:
        add_redirect_uri(client, uri)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{client.name} redirect URIs: {' '.join(client.redirect_uris)}")


@cli.command("make-operator")
@click.argument("email")
def make_operator_command(email: str) -> None:
    """Let a member open /setup and manage the connected apps."""
    members = db.session.scalars(sa.select(Member).where(Member.email == email.strip().lower())).all()
    if not members:
        raise click.ClickException(f"No member with the email {email}.")
    for member in members:
        member.is_operator = True
        audit("operator_granted", member, detail=f"by the {CLI_ACTOR}")
    db.session.commit()
    click.echo(f"{email} is an operator.")


@cli.command("create-org")
@click.option("--name", required=True)
@click.option("--slug")
def create_org_command(name: str, slug: str | None) -> None:
    """Create an organization."""
    if problem := name_problem(name):
        raise click.ClickException(f"The name {problem}.")
    org = create_organization(name, slug)
    db.session.commit()
    click.echo(org.slug)


@cli.command("create-member")
@click.option("--org", "slug", required=True)
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name")
@click.option("--role", type=click.Choice(["admin", "member"]), default="member")
def create_member_command(slug: str, email: str, password: str, name: str | None, role: str) -> None:
    """Add a member to an organization."""
    org = db.session.scalar(sa.select(Organization).where(Organization.slug == slug))
    if org is None:
        raise click.ClickException(f"No organization with slug {slug}.")
    name = name or email.split("@")[0]  # the name that is stored is the one checked
    if problem := member_form_error(email.lower(), name, password):
        raise click.ClickException(problem)
    try:
        member = create_member(org, email, name, password, role, f"by the {CLI_ACTOR}")
        db.session.commit()
    except sa.exc.IntegrityError:
        raise click.ClickException(f"{email} is already a member of {slug}.") from None
    click.echo(f"{member.email} is a{'n' if role == 'admin' else ''} {role} of {org.slug}")


@cli.command("prune-clients")
@click.option("--days", default=7, show_default=True, help="Only registrations at least this old.")
@click.option("--delete", is_flag=True, help="Delete them; without it, only list them.")
def prune_clients_command(days: int, delete: bool) -> None:
    """List self-registered clients that were never used, and delete them with --delete."""
    cutoff = utcnow() - timedelta(days=days)
    unused = db.session.scalars(
        sa.select(Client).where(Client.self_registered, Client.last_used_at.is_(None), Client.created_at <= cutoff)
    ).all()
    for client in unused:
        click.echo(f"{client.client_id}  {client.name}  registered {client.created_at:%Y-%m-%d}")
    if delete:
        for client in unused:
            delete_client(client, detail=f"{client.name}, registered and never used")
    click.echo(f"{len(unused)} unused registration(s){' deleted' if delete else ''}.")


@cli.command("rotate-keys")
def rotate_keys_command() -> None:
    """Sign with a new key; the previous one stays published so that its tokens still verify."""
    row = rotate_signing_key()
    click.echo(f"New signing key: {row.kid}")


@cli.command("openapi")
@click.option("--output", default="openapi.yaml", show_default=True)
def openapi_command(output: str) -> None:
    """Write openapi.yaml from the API views."""
    text = openapi_yaml(OPENAPI_BASE_URL)  # built before the file is opened, so an error keeps the old one
    with open(output, "w") as f:
        f.write(text)
    click.echo(f"Wrote {output}")


def seed_demo() -> None:
    """On an empty database, create a demo organization and admin and say how to connect."""
    if db.session.scalar(sa.select(Organization.id).limit(1)):
        return
    password = secrets.token_urlsafe(12)
    try:
        org = create_organization("Demo Organization", "demo")
        admin = create_member(org, "admin@example.com", "Demo Admin", password, "admin")
        admin.is_operator = True
        db.session.add(Todo(organization_id=org.id, title="Connect an AI agent to Connected Todos"))
        db.session.commit()
    except sa.exc.IntegrityError:  # another worker seeded it first
        db.session.rollback()
        return
    click.echo(
        "\n  Demo organization created.\n"
        "  Log in at /login as admin@example.com with the password: " + password + "\n"
        "  Connect a custom GPT or an MCP client at /setup; try the flow at /playground.\n",
        err=True,
    )


app = create_app()
