"""Web: what every request passes through, and how every error is answered.

Owns the Flask extensions (CSRF, rate limits, logins), the request log, the security headers
(RFC 9700 §4.16 clickjacking, CSP, HSTS), and errors in the format of the protocol a path speaks:
OAuth JSON (RFC 6749 §5.2), JSON-RPC for /mcp, the API's JSON, or a readable page for a person. A
dependency that fails (the database) answers a clean 503, never a 500.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from collections.abc import Iterable
from ipaddress import ip_address
from ipaddress import ip_network
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask import Response
from flask import current_app
from flask import has_request_context
from flask import jsonify
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import SecurityError
from werkzeug.routing import BaseConverter
from werkzeug.routing import ValidationError
from werkzeug.serving import WSGIRequestHandler

from .models import db
from .rules import CLIENT_ID_MAX
from .rules import JSON_DEPTH_MAX
from .rules import MAX_PARAMETER_LENGTH
from .rules import json_depth
from .rules import origin
from .rules import storable

ADDRESS_MAX = 64  # the audit log's column: an IPv6 address with a zone fits


def remote_address() -> str:
    """The request's address as it is stored: what a trusted proxy forwarded may be anything, so
    a value that is not an address is cut to fit its column."""
    address = get_remote_address() or ""
    try:
        return str(ip_address(address))
    except ValueError:
        return address[:ADDRESS_MAX]


def remote_network() -> str:
    """Whom a per-address limit counts: the address, or for IPv6 its /64, which one subscriber
    usually holds whole: counting each of its addresses apart would let one guesser pass as many."""
    address = get_remote_address()
    try:
        parsed = ip_address(address)
    except ValueError:
        return address[:ADDRESS_MAX]
    if parsed.version == 4:
        return str(parsed)
    if parsed.ipv4_mapped:
        return str(parsed.ipv4_mapped)
    return str(ip_network(f"{parsed}/64", strict=False))


class ViewLimiter(Limiter):
    """Flask-Limiter with every limit on a view (``@limiter.limit``), none for the whole app.

    Flask-Limiter checks the application's and default limits before every request, and that
    check cost more than the rest of the middleware together while finding nothing: this app sets
    none. The limits on views are checked as before, when the view is called."""

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        if self.limit_manager.application_limits or self.limit_manager.default_limits:
            raise RuntimeError("Rate limits here go on views; application and default limits would not be checked.")

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if not in_middleware:  # a view's own limits
            super()._check_request_limit(callable_name, in_middleware)


csrf = CSRFProtect()
limiter = ViewLimiter(remote_network)
login_manager = LoginManager()
log = logging.getLogger("connected_todos")


def serves_https(app: Flask) -> bool:
    """Whether the deployment's public URL is https: then only https is served (RFC 6749 §3.1, §3.2)."""
    return app.config["PUBLIC_URL"].startswith("https://")


class SessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure when the app is served over https, whatever one request says;
    build the cookie's signer once per key rather than twice per request; and leave a request that
    never touched the session alone."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure or serves_https(app))

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if not session and not session.modified and not session.accessed:
            return  # no cookie to set or delete, no Vary: an API or MCP request, a health check
        super().save_session(app, session, response)

    def get_signing_serializer(self, app: Flask) -> Any:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = app.extensions.get("connected_todos.session_signer")
        if cached is None or cached[0] != keys:
            cached = (keys, super().get_signing_serializer(app))
            app.extensions["connected_todos.session_signer"] = cached
        return cached[1]


def configured_limit(name: str) -> Callable[[], str]:
    """A rate limit read from the app's settings when a request is counted, not at import."""
    return lambda: current_app.config[name]


# ---- The request log ----------------------------------------------------------------------------

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
REQUEST_ID_KEY = "connected_todos.request_id"


class RequestLog:
    """WSGI middleware: each request gets an id (its own X-Request-Id if well-formed), which its
    log lines and its response carry, and one log line with the method, path, status and time.
    The line never has the query string, a body or a header, so no secret can reach the log."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
        environ[REQUEST_ID_KEY] = request_id
        started = time.perf_counter()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Request-Id", request_id))
            elapsed = (time.perf_counter() - started) * 1000
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            log.info(
                "%s %s %s %.1fms",
                environ["REQUEST_METHOD"],
                path,
                status.split(" ", 1)[0],
                elapsed,
                extra={"request_id": request_id},
            )
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


class RequestIdFilter(logging.Filter):
    """Stamp every log record with the id of the request it belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request.environ.get(REQUEST_ID_KEY, "-") if has_request_context() else "-"
        return True


class NoQueryStrings(logging.Filter):
    """Werkzeug's development server logs each request line as sent, and a query string may carry a
    code or a secret a client put in the wrong place: the line keeps its path only."""

    QUERY = re.compile(r"\?[^\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.QUERY.sub("", a) if isinstance(a, str) else a for a in record.args)
        return True


def configure_logging() -> None:
    """Our log lines go to stderr with a request id. They carry paths, never query strings,
    bodies or headers, so that no secret, code or token can reach them."""
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, NoQueryStrings) for f in werkzeug.filters):
        werkzeug.addFilter(NoQueryStrings())
    # The development server names Werkzeug's and Python's versions in every Server header, and
    # has no setting to stop it; gunicorn says only "gunicorn".
    WSGIRequestHandler.version_string = lambda _handler: "Werkzeug"
    if log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(message)s"))
    handler.addFilter(RequestIdFilter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    # Flask-Limiter says when its shared store fails and when it is back.
    limits = logging.getLogger("flask-limiter")
    limits.addHandler(handler)
    limits.setLevel(logging.INFO)
    limits.propagate = False
    # Authlib logs issued tokens at DEBUG level; a secret is never logged.
    logging.getLogger("authlib").setLevel(logging.INFO)


# ---- Input every view can trust -----------------------------------------------------------------

# Platforms check health over plain http from inside their network: these answer on any scheme.
HEALTH_PATHS = ("/livez", "/healthz")


def require_https() -> Response | None:
    """With an https PUBLIC_URL, a request over plain http is sent there (GET and HEAD), or refused.

    It is refused, too, when a proxy stands in front (TRUSTED_PROXIES) but did not say which scheme
    the request came in by: behind a proxy that strips X-Forwarded-Proto every request looks like
    http, and a redirect would loop."""
    app = current_app
    if request.is_secure or not serves_https(app) or request.path in HEALTH_PATHS:
        return None
    scheme_known = app.config["TRUSTED_PROXIES"] == 0 or "X-Forwarded-Proto" in request.headers
    if request.method in ("GET", "HEAD") and scheme_known:
        return redirect(app.config["PUBLIC_URL"] + request.full_path.removesuffix("?"), 308)
    if scheme_known:
        return protocol_error(400, f"This server answers only over https: use {app.config['PUBLIC_URL']}.")
    return protocol_error(400, "The proxy in front did not send X-Forwarded-Proto: https cannot be told from http.")


def reject_unstorable_input() -> Response | None:
    """Refuse query and form values that no column could store, before any view reads them."""
    sources = [request.args]
    if request.method not in ("GET", "HEAD") and not request.is_json:  # only a body can carry a form
        sources.append(request.form)
    for values in sources:
        for key, value in values.items(multi=True):
            if not storable(key) or not storable(value) or len(value) > MAX_PARAMETER_LENGTH:
                return protocol_error(400, f"The parameter {key[:40]!r} is too long or is not valid text.")
    return None


def parse_json(max_bytes: int | None = None) -> Any:
    """The request body as JSON, whatever its content type and transfer encoding; ValueError when
    it is not JSON or nests deeper than JSON_DEPTH_MAX. A body over ``max_bytes`` (counted as read,
    chunked or not) is a 413."""
    if max_bytes is not None:
        # Werkzeug cuts a chunked body at the limit rather than refusing it: one byte more tells.
        request.max_content_length = max_bytes + 1
    body = request.get_data(cache=True)
    if max_bytes is not None and len(body) > max_bytes:
        raise RequestEntityTooLarge(f"The body is larger than {max_bytes} bytes.")
    too_deep = f"The body nests arrays and objects deeper than {JSON_DEPTH_MAX} levels."
    try:
        data = json.loads(body or b"")
    except RecursionError:
        raise ValueError(too_deep) from None
    except ValueError:
        raise ValueError("The body is not valid JSON.") from None
    if json_depth(data) > JSON_DEPTH_MAX:
        raise ValueError(too_deep)
    return data


def read_json() -> Any:
    """The request body as JSON; ValueError when it is not JSON or not storable text."""
    data = parse_json()
    if not storable(data):
        raise ValueError("The body contains text that is not valid UTF-8, or a NUL character.")
    return data


# ---- Security headers ---------------------------------------------------------------------------


def content_security_policy(form_redirects: Iterable[str] = (), inline: Iterable[str] = ()) -> str:
    """The pages' CSP. form-action also governs the redirects after a form is sent, so a page
    whose form leads on to a client's redirect URI (consent, login) names that origin. ``inline``
    are the hashes of inline scripts and styles a page may run: a sandboxed frame it fills with
    srcdoc lives under the page's own policy."""
    sources = {source for uri in form_redirects if (source := origin(uri))}  # from checked parts only
    form_action = " ".join(["'self'", *sorted(sources)])
    policy = f"default-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    policy += "; object-src 'none'"
    if hashes := " ".join(f"'{digest}'" for digest in inline):
        policy += f"; script-src 'self' {hashes}; style-src 'self' {hashes}"
    return policy


def with_policy(page: str | Response, form_redirects: Iterable[str] = (), inline: Iterable[str] = ()) -> Response:
    """A page whose form may lead, through redirects, to ``form_redirects``, or that runs ``inline``."""
    response = make_response(page)
    response.headers["Content-Security-Policy"] = content_security_policy(form_redirects, inline)
    return response


def security_headers(response: Response) -> Response:
    """No page may be framed (RFC 9700 §4.16), and no URL with a code or token leaks as a Referer."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    # RFC 9700 §4.2.4: no other origin ever sees a Referer from the app. The app's own forms do, as
    # Flask-WTF's CSRF check over https requires one from the same origin.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
    if request.is_secure or serves_https(current_app):  # RFC 6797
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


# ---- Errors, in each protocol's format ----------------------------------------------------------

# The error code each protocol uses for an HTTP status, for errors raised outside the protocols'
# own handlers (an unknown path, a wrong method, a body too large, a rate limit, an outage). The
# server's own failures say so: server_error and temporarily_unavailable (RFC 6749 §4.1.2.1's
# words). A rate limit at the token, revocation, introspection and registration endpoints is
# invalid_request: RFC 6749 §5.2 (which RFC 7009, RFC 7662 and RFC 7591 build on) defines no
# code for it, temporarily_unavailable is the authorization endpoint's alone, and the request is
# the client's to slow down; the 429 and its Retry-After say the rest.
OAUTH_ERRORS = {429: "invalid_request", 500: "server_error", 503: "temporarily_unavailable"}
API_ERRORS = {404: "not_found", 429: "rate_limited", 500: "server_error", 503: "temporarily_unavailable"}
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


def protocol_error(status: int, message: str, page: bool = True) -> Response:
    """An error in the format of the protocol the path speaks: OAuth JSON (RFC 6749 §5.2),
    JSON-RPC for /mcp, the API's JSON, or a readable page for a person (plain text when ``page``
    is False: a request whose host is refused cannot build the page's links)."""
    path = request.path
    if path.startswith(("/oauth/", "/.well-known/")):
        response = jsonify({"error": OAUTH_ERRORS.get(status, "invalid_request"), "error_description": message})
    elif path == "/mcp":
        response = jsonify(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32600 if status < 500 else -32603, "message": message}}
        )
    elif path.startswith("/api/"):
        code = API_ERRORS.get(status, "invalid_request")
        response = jsonify({"error": code, "message": message})
    elif page:
        title = PAGE_TITLES.get(status, "Something went wrong")
        response = Response(render_template("error.html", title=title, message=message))
    else:
        response = Response(message + "\n", mimetype="text/plain")
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
    if status == 429:
        response.headers["Retry-After"] = str(seconds_until_reset())  # RFC 6585 §4
    if valid_methods := getattr(error, "valid_methods", None):  # 405 names what is allowed
        response.headers["Allow"] = ", ".join(valid_methods)
    return response


def seconds_until_reset() -> int:
    """When the limit a request broke lets it through again, in whole seconds (one at least)."""
    try:
        limit = limiter.current_limit
        return max(1, int(limit.reset_at - time.time())) if limit else 60
    except Exception:  # the store may have failed meanwhile: a minute is a safe answer
        return 60


def untrusted_host(error: SecurityError) -> Response:
    """A Host this app does not answer for: without PUBLIC_URL, only a loopback one (RFC 9700 §4.13)."""
    message = "This server answers only for its own address. Set PUBLIC_URL to serve it under another name."
    return protocol_error(400, message, page=False)


def database_unavailable(error: sa.exc.OperationalError) -> Response:
    """A database outage answers 503 in the protocol's format; nothing half-written stays."""
    db.session.rollback()
    log.error("database unavailable: %s", error.__class__.__name__)
    response = protocol_error(503, "The database is unavailable. Try again shortly.")
    response.headers["Retry-After"] = "5"
    return response


def csrf_error(error: CSRFError) -> tuple[str, int]:
    return render_template("error.html", title="The form expired", message=error.description), 400


class ClientIdConverter(BaseConverter):
    """A client_id as one path segment. The app's own are letters and digits; a metadata document
    URL travels base64url-encoded after a "~", since proxies merge and decode slashes in paths."""

    def to_python(self, value: str) -> str:
        if not value.startswith("~"):
            return value
        try:
            client_id = base64.urlsafe_b64decode(value[1:] + "=" * (-len(value[1:]) % 4)).decode()
        except ValueError:
            raise ValidationError from None  # a 404, as for any client_id that is not registered
        if not storable(client_id) or len(client_id) > CLIENT_ID_MAX:
            raise ValidationError  # no column could hold it, so no app has it
        return client_id

    def to_url(self, value: str) -> str:
        if value.isascii() and value.isalnum():
            return value
        return "~" + base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def init_app(app: Flask) -> None:
    """Wire the extensions, the hooks and the error handlers into ``app``."""
    app.url_map.converters["client_id"] = ClientIdConverter
    app.before_request(require_https)  # first: nothing may answer over http, not even a CSRF error
    login_manager.init_app(app)
    login_manager.login_view = "pages.login"
    # Flask-Login's "strong" protection hashes the raw X-Forwarded-For header, which a client
    # writes; registry.session_member binds a login to the address ProxyFix computed instead.
    login_manager.session_protection = None
    csrf.init_app(app)
    limiter.init_app(app)
    configure_logging()
    app.wsgi_app = RequestLog(app.wsgi_app)
    app.before_request(reject_unstorable_input)
    app.after_request(security_headers)
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(SecurityError, untrusted_host)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(sa.exc.OperationalError, database_unavailable)
