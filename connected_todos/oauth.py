"""OAuth: the authorization server's machinery, on Authlib.

Owns how a request reaches Authlib (form or JSON bodies, comma-separated scopes), client
authentication (RFC 6749 §2.3: client_secret_basic, client_secret_post, none for public clients,
and private_key_jwt from ``assertions``) and its brute-force limit, resource indicators (RFC
8707), the JWT access tokens (RFC 9068) and what is stored when they are issued, the claims
UserInfo and ID tokens carry (OIDC Core §5.4), and the revocation (RFC 7009) and introspection
(RFC 7662) endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Payload
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import Response
from flask import current_app
from flask import g
from flask import request
from joserfc import jwt
from werkzeug.datastructures import MultiDict

from .assertions import PrivateKeyJWT
from .assertions import unverified_subject
from .keys import current_signing_key
from .models import SECRET_AUTH_METHODS
from .models import AccessToken
from .models import AuthorizationCode
from .models import Client
from .models import Grant
from .models import Member
from .models import RefreshToken
from .models import db
from .models import insert_once
from .models import sha256
from .models import utcnow
from .registry import audit
from .registry import revoke_grants
from .rules import SCOPES
from .rules import error_text
from .rules import normalize_scope
from .settings import api_resource
from .settings import issuer
from .settings import mcp_resource
from .settings import resources
from .tokens import access_token_claims
from .tokens import b64url_json
from .web import configured_limit
from .web import limiter
from .web import read_json
from .web import remote_network

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none", "private_key_jwt"]
# Introspection answers confidential clients only: those that prove themselves.
CONFIDENTIAL_AUTH_METHODS = [*SECRET_AUTH_METHODS, "private_key_jwt"]
ACCESS_TOKEN_TTL = 3600  # RFC 9068 access tokens: one hour
TOKEN_ALPHABET = string.ascii_letters + string.digits
REFRESH_TOKEN_TTL = timedelta(days=90)  # sliding, renewed on every use
LAST_USED_PRECISION = timedelta(minutes=1)  # how exactly /setup tells when an app was last used


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested resource is not one this server issues tokens for."""

    error = "invalid_target"


# ---- Requests ----------------------------------------------------------------------------------


class Payload(OAuth2Payload):
    """Request parameters as one MultiDict of strings."""

    def __init__(self, values: MultiDict[str, str]) -> None:
        self._values = values

    @property
    def data(self) -> MultiDict[str, str]:
        return self._values

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {key: self._values.getlist(key) for key in self._values}


class OAuth2Request(FlaskOAuth2Request):
    """A Flask request whose body may be form-encoded (RFC 6749) or JSON, with a comma-separated
    scope read as space-separated: the GPT builder passes its Scope field as typed."""

    def __init__(self, flask_request: Any) -> None:
        super().__init__(flask_request)
        self._body = request_body(flask_request)
        # The authorization endpoint takes its parameters from the query (RFC 6749 §3.1), even on
        # the consent form's POST; the other endpoints from the body only (§3.2).
        values = MultiDict(flask_request.args) if flask_request.endpoint == "idp.authorize" else self._body
        self.payload = Payload(normalized(values))

    @property
    def form(self) -> MultiDict[str, str]:
        return self._body


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


def request_body_error(server: AuthorizationServer) -> Response | None:
    """A JSON body that cannot be read says why; and RFC 6749 §3.2: request parameters MUST NOT be
    included more than once."""
    if request.is_json:
        try:
            read_json()
        except ValueError as error:
            return server.handle_error_response(None, InvalidRequestError(error_text(str(error))))
    body = request_body(request)
    if repeated := [key for key in body if len(body.getlist(key)) > 1]:
        name = error_text(repeated[0])[:40]
        return server.handle_error_response(None, InvalidRequestError(f"The parameter {name} is repeated."))
    return None


class AuthorizationServer(FlaskAuthorizationServer):
    """Authlib's server, with our requests, iss on every authorization response and JWT tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.register_client_auth_method("client_secret_basic", authenticate_secret_basic)
        self.register_client_auth_method("client_secret_post", authenticate_secret_post)
        self.register_client_auth_method("none", authenticate_public)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJWT())

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


# ---- Client authentication (RFC 6749 §2.3) -----------------------------------------------------
# Any failure, an unknown client_id included, is one 401 invalid_client with a WWW-Authenticate
# challenge (§5.2). A request that carries credentials both ways fails too: a client MUST NOT use
# more than one method (§2.3), and the throttle below counts each request against one client only.


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
    form = oauth_request.form
    return "Authorization" in oauth_request.headers and ("client_secret" in form or "client_assertion" in form)


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
    form = oauth_request.form
    client_id = form.get("client_id")
    other_ways = {"client_secret", "client_assertion"} & form.keys() or "Authorization" in oauth_request.headers
    return query(client_id) if client_id and not other_ways else None
    return None


def client_auth_key() -> str:
    """Who is trying to authenticate as whom: the client_id a request presents, and its address.

    RFC 6749 §2.3.1: an endpoint that checks a client's password MUST be protected against brute
    force. Failures are counted per client and address, so a stranger's guesses from elsewhere do
    not lock the client out; from an address it shares (ChatGPT's own), for a minute at most.
    """
    credentials = basic_credentials(request.headers.get("Authorization", ""))
    body = request_body(request)
    client_id = (
        credentials[0]
        if credentials
        else body.get("client_id") or unverified_subject(body.get("client_assertion", "")) or ""
    )
    return f"client-auth:{client_id[:100]}:{remote_network()}"


def failed_client_auth(response: Response) -> bool:
    return response.status_code == 401  # invalid_client, and only that, answers 401 (RFC 6749 §5.2)


# Token, revocation and introspection all check a client's secret, so they share one count.
client_auth_limit = limiter.shared_limit(
    configured_limit("CLIENT_AUTH_RATE_LIMIT"),
    scope="client-auth",
    key_func=client_auth_key,
    deduct_when=failed_client_auth,
)


# ---- Resources and tokens ----------------------------------------------------------------------


def default_resource(client: Client) -> str:
    """The audience when a request names no resource: self-registered clients are MCP clients,
    and operator-registered ones (a GPT Action) call the REST API."""
    return mcp_resource() if client.self_registered else api_resource()


def requested_resource(oauth_request: OAuth2Request, bound: str | None = None) -> str:
    """The RFC 8707 resource a token is for: the request's, or the grant's, or the client's default."""
    values = oauth_request.payload.datalist.get("resource", [])
    if len(values) > 1:
        raise InvalidTargetError("Ask for one resource at a time.")
    resource = values[0] if values else (bound or default_resource(oauth_request.client))
    if resource not in resources():
        raise InvalidTargetError(f"Unknown resource. Use one of: {' '.join(resources())}.")
    if bound and resource != bound:
        raise InvalidTargetError("The resource differs from the one that was authorized.")
    return resource


def bind_resource(resource: str) -> None:
    """Name the audience of the token being issued. Through flask.g, because Authlib calls the
    token generator's get_audiences(client, user, scope) with no request to carry it."""
    g.token_resource = resource


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """RFC 9068 JWT access tokens, signed with the current database key by sign_access_token."""

    def __init__(self) -> None:
        super().__init__(
            issuer="",
            alg="RS256",
            refresh_token_generator=lambda **_: generate_token(48),
            expires_generator=lambda client, grant_type: ACCESS_TOKEN_TTL,
        )

    def access_token_generator(self, client: Client, grant_type: str, user: Member, scope: str) -> str:
        # g.token_resource: see bind_resource
        return sign_access_token(client, user, scope, g.token_resource, int(time.time()), secrets.token_urlsafe(24))


def sign_access_token(client: Client, member: Member, scope: str, audience: str, issued_at: int, jti: str) -> str:
    """An RFC 9068 access token (§2.2 claims, typ at+jwt). Given the same values it is the same
    token, byte for byte (RS256 signatures are deterministic): see successor_token."""
    claims = {
        "iss": issuer(),
        "exp": issued_at + ACCESS_TOKEN_TTL,
        "client_id": client.client_id,
        "iat": issued_at,
        "jti": jti,
        "scope": scope,
        "sub": str(member.id),
        "aud": audience,
        "org_id": member.organization_id,
    }
    key = current_signing_key()
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, claims, key)


# ---- Retry-safe rotation (RFC 9700 §4.14.2) ----------------------------------------------------
# A public client's refresh token is exchanged once. Its successor is derived from it with the
# server's key, so that a retry of the same exchange (a lost response, two requests at once) gets
# the same pair back without any of it being stored in a form that could be replayed.


def derived_secret(presented: str, purpose: str, length: int = 48) -> str:
    """``length`` letters and digits drawn from HMAC-SHA512(SECRET_KEY, purpose:presented)."""
    key = current_app.config["SECRET_KEY"].encode()
    number = int.from_bytes(hmac.new(key, f"{purpose}:{presented}".encode(), hashlib.sha512).digest())
    letters = []
    for _ in range(length):  # 62**48 is about 2**286: the entropy of generate_token(48)
        number, index = divmod(number, len(TOKEN_ALPHABET))
        letters.append(TOKEN_ALPHABET[index])
    return "".join(letters)


def successor_token(refresh_token: RefreshToken, presented: str, scope: str) -> dict[str, Any]:
    """The token response that replaces a rotated refresh token: the same for every request that
    presents it within the grace window, to the byte."""
    grant = refresh_token.grant
    issued_at = int(refresh_token.rotated_at.replace(tzinfo=UTC).timestamp())
    jti = derived_secret(presented, "access-token-jti", 32)
    access_token = sign_access_token(grant.client, grant.member, scope, grant.resource, issued_at, jti)
    return {
        "token_type": "Bearer",
        "access_token": access_token,
        "expires_in": ACCESS_TOKEN_TTL,
        "refresh_token": derived_secret(presented, "refresh-token"),
        "scope": scope,
    }


def save_token(token: dict[str, Any], oauth_request: OAuth2Request) -> None:
    """Store what a token response issued: a grant (first time), the access token's jti and the
    refresh token's hash. Nothing is stored in a form that could be replayed."""
    claims = b64url_json(token["access_token"].split(".")[1])  # our own, just signed
    if oauth_request.payload.grant_type == "authorization_code":
        code: AuthorizationCode = oauth_request.authorization_code
        grant = Grant(
            client_id=oauth_request.client.id,
            member_id=oauth_request.user.id,
            authorization_code_id=code.id,
            scope=code.scope,
            resource=claims["aud"],
        )
        db.session.add(grant)
        db.session.flush()
    else:
        grant = oauth_request.refresh_token.grant
    now = utcnow()
    # Once each: a retried rotation answers with the successor pair already stored (grants).
    fresh = insert_once(
        AccessToken,
        grant_id=grant.id,
        jti=claims["jti"],
        scope=claims["scope"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None),
    )
    if "refresh_token" in token:
        token_hash = sha256(token["refresh_token"])
        insert_once(RefreshToken, grant_id=grant.id, token_hash=token_hash, expires_at=now + REFRESH_TOKEN_TTL)
    grant.last_used_at = now
    client = oauth_request.client
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_PRECISION:
        client.last_used_at = now  # not on every token: every token request of a client would queue on its row
    if fresh:
        audit("token_issued", grant.member, oauth_request.client.client_id, oauth_request.payload.grant_type)
    db.session.commit()
    if oauth_request.payload.grant_type == "authorization_code" and db.session.scalar(
        sa.select(AuthorizationCode.replayed_at).where(AuthorizationCode.id == grant.authorization_code_id)
    ):
        # The response still goes out, as the one answer to the code, but its tokens are dead.
        revoke_grants("code_reuse_detected", grant=grant, detail="replayed during its redemption")
        db.session.commit()
    elif db.session.scalar(sa.select(Grant.revoked_at).where(Grant.id == grant.id)):
        # Revoked while these tokens were being issued (a reuse detected, the member cutting the app
        # off): they are dead already, so the answer is an error, never a 200 with them.
        raise InvalidGrantError("The authorization was revoked.")


def user_info(member: Member, scope: str) -> dict[str, Any]:
    """The claims the granted scope allows (OpenID Connect Core §5.4). The app never proves that a
    member owns their email address, so it says so (§5.1 email_verified)."""
    scopes = scope_to_list(scope) or []
    claims: dict[str, Any] = {"sub": str(member.id)}
    if "profile" in scopes:
        claims["name"] = member.name
    if "email" in scopes:
        claims.update(email=member.email, email_verified=False)
    return claims


def lasting_access(client: Client, scope: str) -> bool:
    """Whether a grant of ``scope`` comes with a refresh token, so that access lasts until revoked.

    OpenID Connect Core §11: an OpenID request gets one only with offline_access. A GPT Action (a
    confidential client an operator registered) refreshes without ever asking for offline_access,
    and an OAuth client without openid (an MCP client) needs one to stay connected: both get one.
    The consent page says which it is."""
    if not client.check_grant_type("refresh_token"):
        return False
    scopes = scope_to_list(scope) or []
    gpt_action = not client.self_registered and not client.is_public
    return gpt_action or "openid" not in scopes or "offline_access" in scopes


# ---- Revocation (RFC 7009) and introspection (RFC 7662) ----------------------------------------


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
    claims = access_token_claims(token_string)
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
            revoke_grants("token_revoked", grant=token.grant, detail="refresh token, by the client")
        else:
            token.revoked_at = utcnow()
            audit("token_revoked", token.grant.member, token.grant.client.client_id, "access token, by the client")
        db.session.commit()


class Introspection(IntrospectionEndpoint):
    """RFC 7662, for confidential clients, about their own tokens only."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

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
