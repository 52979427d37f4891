"""Settings: the deployment's configuration, read from the environment when an app is made.

Owns every environment variable the app reads and its default, the refusals that keep a production
deployment from starting unsafe (no SECRET_KEY, KEY_ENCRYPTION_KEY or PUBLIC_URL, rate limits
counted apart in each worker, or client metadata fetched from loopback), and the deployment's own
URLs: the issuer (RFC 8414 §2), which never follows a Host header an attacker chose (RFC 9700
§4.13), and the resource identifiers (RFC 8707).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet
from cryptography.fernet import MultiFernet
from flask import current_app
from flask import request
from werkzeug.exceptions import SecurityError

APP_VERSION = "1.1.0"  # of the API and the MCP server; 1.1 made cursors plain todo ids

# Browser origins allowed to call /mcp (MCP_ALLOWED_ORIGINS overrides; "*" allows any).
DEFAULT_MCP_ORIGINS = (
    "https://chatgpt.com",
    "https://chat.openai.com",
    "https://claude.ai",
    "https://claude.com",
    "http://localhost:6274",  # the MCP Inspector
    "http://127.0.0.1:6274",
)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
SECRET_KEY_MIN = 32

# Each limit may be overridden from the environment, e.g. RATE_LIMIT_API="100 per second".
RATE_LIMITS = {
    "LOGIN_RATE_LIMIT": ("RATE_LIMIT_LOGIN", "20 per minute"),  # per IP address
    # Failed logins per account and address: a guesser elsewhere slows down without locking the
    # owner out, as a per-account count alone would.
    "LOGIN_ACCOUNT_RATE_LIMIT": ("RATE_LIMIT_LOGIN_ACCOUNT", "5 per minute; 30 per hour"),
    "SIGNUP_RATE_LIMIT": ("RATE_LIMIT_SIGNUP", "10 per hour"),  # per IP address; each one costs an scrypt
    # Wrong current passwords per member on the password page.
    "PASSWORD_RATE_LIMIT": ("RATE_LIMIT_PASSWORD", "5 per minute; 20 per hour"),
    "TOKEN_RATE_LIMIT": ("RATE_LIMIT_TOKEN", "120 per minute"),
    # Failed client authentications per client_id and address, at the token, revocation and
    # introspection endpoints together; one short window, so a locked-out client recovers soon.
    "CLIENT_AUTH_RATE_LIMIT": ("RATE_LIMIT_CLIENT_AUTH", "10 per minute"),
    "REGISTRATION_RATE_LIMIT": ("RATE_LIMIT_REGISTRATION", "20 per minute; 200 per day"),
    # Authorization requests whose client_id is a metadata document URL, per address: each may
    # make the server fetch from another host.
    "CLIENT_METADATA_RATE_LIMIT": ("RATE_LIMIT_CLIENT_METADATA", "30 per minute"),
    "API_RATE_LIMIT": ("RATE_LIMIT_API", "600 per minute"),
}


def from_environment(instance_path: str) -> dict[str, Any]:
    """The app's configuration as the environment sets it, with the defaults filled in."""
    env = os.environ
    production = env.get("APP_ENV") == "production"
    # Demo data, and its operator, only on a developer's own machine: never where a database or a
    # public URL has been configured, whatever the command (a release phase runs without APP_ENV).
    local = not production and not env.get("DATABASE_URL") and not env.get("PUBLIC_URL")
    return {
        "APP_ENV": "production" if production else "development",
        "SECRET_KEY": env.get("SECRET_KEY", ""),
        # Fernet keys, comma-separated: the first seals the signing keys, any of them opens them.
        "KEY_ENCRYPTION_KEY": env.get("KEY_ENCRYPTION_KEY", "").strip(),
        "SQLALCHEMY_DATABASE_URI": database_url(env.get("DATABASE_URL"), instance_path),
        # A database error's message must not carry the statement's values: a password hash, a token.
        "SQLALCHEMY_ENGINE_OPTIONS": {"hide_parameters": True},
        "PUBLIC_URL": env.get("PUBLIC_URL", "").rstrip("/"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",  # sent on the top-level GET from chatgpt.com to /idp
        "SESSION_COOKIE_SECURE": False,
        "SEED_DEMO": env.get("SEED_DEMO", "1" if local else "0") == "1",
        "TRUSTED_PROXIES": trusted_proxies(env.get("TRUSTED_PROXIES", "1")),
        # A public client that retries a refresh within this many seconds (a lost response) gets
        # the same new tokens instead of having its grant revoked as a reuse (RFC 9700 §4.14.2).
        "REFRESH_TOKEN_GRACE_SECONDS": grace_seconds(env.get("REFRESH_TOKEN_GRACE_SECONDS", "30")),
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "" if production else "memory://"),
        # When the shared store fails, each worker counts in its own memory and the requests go on;
        # Flask-Limiter warns once, checks the store again with a growing interval, and goes back to it.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": True,
        # A store that stops answering must not hold a request for long (redis-py waits forever).
        "RATELIMIT_STORAGE_OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        # No X-RateLimit-* headers: each would cost the shared store a round trip on every request.
        # A 429 still says when to come back, in Retry-After (web.http_error).
        "RATELIMIT_HEADERS_ENABLED": False,
        "RATELIMIT_ENABLED": env.get("RATELIMIT_ENABLED", "1") == "1",
        **{name: env.get(variable, default) for name, (variable, default) in RATE_LIMITS.items()},
        # RFC 7591 §3: when set, dynamic registration is closed to all but holders of this token.
        "INITIAL_ACCESS_TOKEN": env.get("INITIAL_ACCESS_TOKEN", "").strip(),  # env files add newlines
        # Development only: let client metadata documents and keys come from this machine's own
        # loopback addresses (draft-ietf-oauth-client-id-metadata-document §8.6), as tests serve them.
        "CIMD_ALLOW_LOOPBACK": env.get("CIMD_ALLOW_LOOPBACK") == "1",
        "MCP_ALLOWED_ORIGINS": [o.strip() for o in env.get("MCP_ALLOWED_ORIGINS", "").split(",") if o.strip()]
        or list(DEFAULT_MCP_ORIGINS),
    }


def check(config: dict[str, Any], instance_path: str) -> None:
    """Refuse to start a production app that is not safe to serve; fill in development's key."""
    production = config["APP_ENV"] == "production"
    if production and len(config.get("SECRET_KEY") or "") < SECRET_KEY_MIN:
        raise SystemExit(
            f"SECRET_KEY is not set, or shorter than {SECRET_KEY_MIN} characters. Set it to a long random "
            "value, for example the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = kept_in_instance(instance_path, "secret_key", lambda: secrets.token_urlsafe(32))
    if not config.get("KEY_ENCRYPTION_KEY"):
        if production:
            raise SystemExit(
                "KEY_ENCRYPTION_KEY is not set. It seals the token signing keys in the database; set it "
                "to the output of `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'` and keep it apart from database backups."
            )
        config["KEY_ENCRYPTION_KEY"] = kept_in_instance(instance_path, "key_encryption_key", new_fernet_key)
    try:
        key_encryption_keys(config["KEY_ENCRYPTION_KEY"])
    except ValueError:
        message = "KEY_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes each), comma-separated."
        raise SystemExit(message) from None
    if production and config.get("CIMD_ALLOW_LOOPBACK"):
        raise SystemExit(
            "CIMD_ALLOW_LOOPBACK is for development: in production a client's metadata document must never "
            "be fetched from this machine's own addresses. Unset it."
        )
    if not config["RATELIMIT_STORAGE_URI"]:
        # Counted in each worker's memory, every limit would be multiplied by the number of workers.
        raise SystemExit(
            "RATELIMIT_STORAGE_URI is not set. Set it to a Redis URL (redis://host:6379) that every worker and "
            "host shares, or to memory:// for a single worker process."
        )
    if not config["PUBLIC_URL"]:
        # The issuer must not follow a Host or X-Forwarded-Host header an attacker chose (RFC 9700 §4.13).
        if production:
            raise SystemExit(
                "PUBLIC_URL is not set. Set it to the app's public https origin, e.g. https://todos.example.com."
            )
        # Development without PUBLIC_URL: the issuer is the request's origin, so only a loopback
        # origin may be one (Flask refuses any other Host with a 400).
        config["TRUSTED_HOSTS"] = list(LOOPBACK_HOSTS)


def issuer() -> str:
    """The issuer: PUBLIC_URL; in development without it, the request's own loopback origin (Flask's
    TRUSTED_HOSTS refuses any other Host). No path, no trailing slash."""
    if public_url := current_app.config["PUBLIC_URL"]:
        return public_url
    if request.scheme not in ("http", "https"):  # X-Forwarded-Proto from a proxy may say anything
        raise SecurityError(f"The scheme {request.scheme[:20]!r} is not http or https.")
    return request.host_url.rstrip("/")


def api_resource() -> str:
    """The REST API's resource identifier (RFC 8707): an access token audience."""
    return f"{issuer()}/api"


def mcp_resource() -> str:
    """The MCP endpoint's resource identifier, exactly the URL a person pastes into a client."""
    return f"{issuer()}/mcp"


def resources() -> list[str]:
    """Every resource an access token may be issued for."""
    return [api_resource(), mcp_resource()]


def database_url(url: str | None, instance_path: str) -> str:
    """DATABASE_URL, defaulting to SQLite in instance/; accept postgres:// as hosts give it."""
    url = url or f"sqlite:///{instance_path}/connected-todos.db"
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def trusted_proxies(value: str) -> int:
    """TRUSTED_PROXIES: how many proxies stand in front of the app (platforms have one)."""
    if not value.isdigit():
        raise SystemExit(f"TRUSTED_PROXIES must be a number of proxies, such as 0 or 1, not {value!r}.")
    return int(value)


def grace_seconds(value: str) -> int:
    """REFRESH_TOKEN_GRACE_SECONDS: 0 (no grace) to 300; a longer window would shelter a thief."""
    if not (value.isascii() and value.isdigit()) or int(value[:4]) > 300:
        raise SystemExit(f"REFRESH_TOKEN_GRACE_SECONDS must be a number of seconds from 0 to 300, not {value!r}.")
    return int(value)


def new_fernet_key() -> str:
    return Fernet.generate_key().decode()


def key_encryption_keys(value: str) -> MultiFernet:
    """The key-encryption keys of KEY_ENCRYPTION_KEY; ValueError when one is not a Fernet key."""
    return MultiFernet([Fernet(key.strip()) for key in value.split(",") if key.strip()])


def kept_in_instance(instance_path: str, name: str, generate: Callable[[], str]) -> str:
    """A development key generated once and kept in instance/, so that it survives a restart."""
    path = os.path.join(instance_path, name)
    if not os.path.exists(path):
        # Written aside (mode 0600) and linked into place, so that another process starting at the
        # same moment finds either no key or a whole one, and the first key stays.
        fd, draft = tempfile.mkstemp(dir=instance_path)
        with os.fdopen(fd, "w") as f:
            f.write(generate())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    with open(path) as f:
        return f.read().strip()
