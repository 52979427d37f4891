"""Tokens: where a bearer token is checked, for the REST API, MCP and UserInfo alike.

Owns the bearer check (RFC 6750 §2.1, header only, never the query string), the validation of our
JWT access tokens (RFC 9068 §4, with RFC 8707 audiences), the lookup that refuses a revoked token,
a revoked grant or a member who left the organization on the very next request, and the
challenge every refusal carries (RFC 6750 §3 with RFC 9728 §5.1's resource_metadata).

Authlib's ``ResourceProtector`` and RFC 9068 ``JWTBearerTokenValidator`` carry the check; the
overrides below say why each one is needed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from authlib.oauth2 import OAuth2Error
from authlib.oauth2 import ResourceProtector
from authlib.oauth2.rfc6749 import JsonRequest
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError
from authlib.oauth2.rfc6749.errors import UnsupportedTokenTypeError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import InsufficientScopeError
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from authlib.oauth2.rfc9068.claims import JWTAccessTokenClaims
from flask import Response
from flask import jsonify
from flask import request
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import load_only

from .keys import load_keys
from .models import AccessToken
from .models import Client
from .models import Grant
from .models import Member
from .models import db
from .models import sha256
from .rules import ID_LIMIT
from .rules import scope_for
from .settings import api_resource
from .settings import issuer
from .settings import mcp_resource
from .settings import resources
from .web import configured_limit
from .web import csrf
from .web import limiter

MAX_TOKEN_BYTES = 8192
INVALID = "The access token is invalid or expired."
REQUIRED_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
OPTIONAL_CLAIMS = ("auth_time", "acr", "amr", "scope", "groups", "roles", "entitlements")
VERIFIED_MAX = 10_000  # access tokens whose signature a process remembers having verified


@dataclass
class Bearer:
    """An access token that passed every check: the member it acts for, and the app acting."""

    member: Member
    client: Client
    scope: list[str]
    claims: dict[str, Any]


def b64url_json(segment: str) -> Any:
    """Decode one base64url segment of a JWT into JSON."""
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class AccessTokenValidator(JWTBearerTokenValidator):
    """RFC 9068 §4 validation of this server's access tokens, then their record in the database."""

    def __init__(self, audiences: Callable[[], list[str]] | None) -> None:
        super().__init__(issuer=None, resource_server=None)  # both are read per request, below
        self.audiences = audiences

    def get_jwks(self) -> KeySet:
        return load_keys().public

    def validate_iss(self, claims: Any, iss: str) -> bool:
        return iss == issuer()  # PUBLIC_URL, which a deployment sets; the request's origin in development

    def verified_claims(self, token_string: str) -> JWTAccessTokenClaims:
        """The token's claims once its signature, header and claims pass; InvalidTokenError otherwise."""
        if not self.header_is_ours(token_string):
            raise InvalidTokenError(INVALID)
        try:
            payload, header = self.signed_payload(token_string)
            claims = JWTAccessTokenClaims(payload, header, self.claims_options())
            claims.validate()
        except (OAuth2Error, JoseError, ValueError, TypeError):
            raise InvalidTokenError(INVALID) from None
        return claims

    def claims_options(self) -> dict[str, Any]:
        """RFC 9068 §2.2's required claims, and the optional ones the library checks the type of.
        The issuer is ours; the audiences depend on the resource asked for (RFC 8707), read per request."""
        options: dict[str, Any] = {name: {"essential": True} for name in REQUIRED_CLAIMS}
        options |= {name: {"essential": False} for name in OPTIONAL_CLAIMS}
        options["iss"]["validate"] = self.validate_iss
        options["aud"] = {"essential": True, "values": self.audiences()} if self.audiences else {}
        return options

    def signed_payload(self, token_string: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The token's payload and header once its RS256 signature verifies (RFC 7515 §5.2).

        A signature cannot change, so each process verifies a token once per key set and then
        remembers it by its digest (never the token itself). Every claim is still validated, and
        the token's record looked up, on every request."""
        keys = load_keys()
        digest = sha256(token_string)
        known = keys.verified.get(digest)
        if known is None:
            signed = super().authenticate_token(token_string)  # the signature only: claims come after
            known = (dict(signed), dict(signed.header))
            if len(keys.verified) >= VERIFIED_MAX:
                keys.verified.clear()  # bounded: at worst some signatures are verified again
            keys.verified[digest] = known
        return dict(known[0]), dict(known[1])

    def header_is_ours(self, token_string: str) -> bool:
        """RS256 from one of our keys, typed as an access token (RFC 9068 §4), and never a key the
        token carries itself (RFC 8725 §3.1): checked before a key is chosen, which the library leaves to us."""
        if len(token_string) > MAX_TOKEN_BYTES or token_string.count(".") != 2:
            return False
        try:
            header = b64url_json(token_string.split(".")[0])
        except (ValueError, UnicodeDecodeError):
            return False
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return False
        if header.get("typ") not in ("at+jwt", "application/at+jwt") or header.keys() & {
            "jwk",
            "jku",
            "x5u",
            "x5c",
            "crit",
        }:
            return False
        keys = load_keys()
        if header.get("kid") not in keys.kids:
            keys = load_keys(force=True)  # another host may have rotated the key
        return header.get("kid") in keys.kids

    def authenticate_token(self, token_string: str) -> Bearer:
        """Overridden to look the token up too: its record and grant must not be revoked, and the
        member must still belong to the token's organization."""
        claims = self.verified_claims(token_string)
        org_id, client_id = claims.get("org_id"), claims.get("client_id")
        if not isinstance(org_id, int) or not isinstance(client_id, str):
            raise InvalidTokenError(INVALID)
        values = {"jti": claims["jti"], "member_id": member_id_of(claims), "org_id": org_id, "client_id": client_id}
        row = db.session.execute(LIVE_TOKEN, values).first()
        if row is None:
            raise InvalidTokenError("The access token was revoked.")
        return Bearer(member=row[0], client=row[1], scope=scope_to_list(claims.get("scope", "")) or [], claims=claims)

    def validate_token(self, token: Bearer, scopes: list[str] | None, request: Any) -> None:
        """Overridden: the claims were validated with the lookup above; only the scope is left."""
        if self.scope_insufficient(token.scope, scopes):
            raise InsufficientScopeError(f"This needs the {' '.join(scopes or [])} scope.")


# One statement for every bearer check, built once: the token's record and grant not revoked, the
# member still in the token's organization, the app the one the token names. Only the app's id,
# client_id and name are loaded: they are all a request needs of it (attribution, whoami).
LIVE_TOKEN = (
    sa.select(Member, Client)
    .join(Grant, Grant.member_id == Member.id)
    .join(AccessToken, AccessToken.grant_id == Grant.id)
    .join(Client, Client.id == Grant.client_id)
    .where(
        AccessToken.jti == sa.bindparam("jti"),
        AccessToken.revoked_at.is_(None),
        Grant.revoked_at.is_(None),
        Member.id == sa.bindparam("member_id"),
        Member.organization_id == sa.bindparam("org_id"),
        Client.client_id == sa.bindparam("client_id"),
    )
    .options(load_only(Client.id, Client.client_id, Client.name))
)


def member_id_of(claims: dict[str, Any]) -> int:
    """The member id in ``sub``, or 0 (no member) when it is not one."""
    sub = str(claims["sub"])
    return int(sub) if sub.isascii() and sub.isdigit() and int(sub) < ID_LIMIT else 0


class Protector(ResourceProtector):
    """Authlib's resource protector for tokens issued to one of ``audiences``."""

    def __init__(self, audiences: Callable[[], list[str]]) -> None:
        super().__init__()
        self.audiences = audiences
        self.register_token_validator(AccessTokenValidator(audiences))

    def resource(self) -> str | None:
        """The resource whose metadata a challenge names (RFC 9728 §5.1), when there is just one."""
        audiences = self.audiences()
        return audiences[0] if len(audiences) == 1 else None


API = Protector(lambda: [api_resource()])
MCP = Protector(lambda: [mcp_resource()])
USERINFO = Protector(resources)


def access_token_claims(token_string: str) -> dict[str, Any] | None:
    """The claims of one of our access tokens, whatever its audience, or None (revocation and
    introspection look a token up by its jti)."""
    try:
        return dict(AccessTokenValidator(None).verified_claims(token_string))
    except OAuth2Error:
        return None


class BearerError(Exception):
    """An RFC 6750 §3.1 error: ``error`` None means the request carried no token at all."""

    def __init__(self, error: str | None, description: str = "", status: int = 401, scope: str = "") -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.scope = error, description, status, scope


def authenticate_bearer(protect: Protector, scope: str | None) -> Bearer:
    """The request's bearer token, checked by ``protect`` for ``scope``; BearerError otherwise."""
    # The path is enough, and cheaper than the full URL: a bearer token comes in a header (RFC 6750 §2.1).
    oauth_request = JsonRequest(request.method, request.full_path, request.headers)
    try:
        return protect.validate_request([scope] if scope else None, oauth_request)
    except (MissingAuthorizationError, UnsupportedTokenTypeError):
        # RFC 6750 §3.1: a request without a bearer token gets a challenge with no error code.
        raise BearerError(None, scope=scope or "") from None
    except InsufficientScopeError as error:
        raise BearerError("insufficient_scope", error.description, 403, scope or "") from None
    except OAuth2Error as error:
        raise BearerError("invalid_token", error.description or INVALID, scope=scope or "") from None


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


def require_token(operation: str, protect: Protector = API) -> Callable[..., Any]:
    """View decorator: the request needs a bearer token with the scope ``operation`` needs (the
    table in rules.py). The view receives the checked ``Bearer`` as its first argument."""
    scope = scope_for(operation)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                bearer = authenticate_bearer(protect, scope)
            except BearerError as error:
                return bearer_error_response(error, protect.resource())
            return view(bearer, *args, **kwargs)

        return csrf.exempt(limiter.limit(configured_limit("API_RATE_LIMIT"))(wrapped))

    return decorator
