"""Assertions: client authentication with a signed JWT, private_key_jwt (RFC 7523 §2.2 and §3,
OIDC Core §9), on Authlib's ``JWTBearerClientAssertion``.

Owns what an assertion must be: iss and sub the client_id, and a client_id sent beside it the same
(RFC 7521 §4.2); aud this server's issuer or its token endpoint, as the one audience (RFC 7523 §3,
draft-ietf-oauth-rfc7523bis §4); exp required and at most five minutes away; a jti used once until
then, across every worker and host; signed by an asymmetric algorithm with one of the app's public
keys, from its metadata document. Every failure is invalid_client (RFC 7523 §3.2).
"""

from __future__ import annotations

import time
from datetime import UTC
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .client_metadata import client_keys
from .models import Client
from .models import UsedClientAssertion
from .models import db
from .models import insert_once
from .models import sha256
from .models import utcnow
from .outbound import FetchError
from .rules import error_text
from .settings import issuer
from .tokens import b64url_json

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Asymmetric only: an HMAC would need a secret shared with the app, which it must not have.
ASSERTION_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
ASSERTION_LIFETIME_MAX = 300  # seconds: RFC 7523 §3 lets a server refuse an exp far in the future
LEEWAY = 30  # seconds of clock skew


def unverified_subject(assertion: str) -> str | None:
    """The sub an assertion claims, before anything about it is checked."""
    try:
        sub = b64url_json(assertion.split(".")[1]).get("sub")
    except (IndexError, ValueError, AttributeError, RecursionError):
        return None
    return sub if isinstance(sub, str) else None


def refused(description: str) -> InvalidClientError:
    """invalid_client, answered 401 like every other failed client authentication here."""
    return InvalidClientError(description=error_text(description), status_code=401)


class PrivateKeyJWT(JWTBearerClientAssertion):
    """private_key_jwt: the app proves itself with a JWT signed by its private key."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY)

    def __call__(self, query_client: Any, oauth_request: Any) -> Client | None:
        form = oauth_request.form
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return None
        if "Authorization" in oauth_request.headers or "client_secret" in form:
            raise refused("Authenticate one way only: an assertion, with no secret and no Authorization header.")
        # RFC 7521 §4.2, checked before any key is looked up (which may fetch the app's key set).
        if "client_id" in form and form["client_id"] != unverified_subject(form.get("client_assertion", "")):
            raise refused("The client_id differs from the assertion's sub.")
        try:
            client = super().__call__(query_client, oauth_request)
        except InvalidClientError as error:
            raise refused(error.description or "The assertion is not valid.") from None
        return client

    def get_audiences(self) -> list[str]:
        return [issuer(), f"{issuer()}/oauth/token"]

    def verify_claims(self, claims: Any) -> None:
        """Authlib's checks (iss, sub, aud, exp, nbf, iat and jti), after two of our own, so that no
        jti is spent on an assertion refused anyway."""
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if len(audiences) != 1 or audiences[0] not in self.get_audiences():
            raise refused("aud must be this server's issuer, or its token endpoint, alone.")
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires > time.time() + ASSERTION_LIFETIME_MAX + LEEWAY:
            raise refused(f"exp must be at most {ASSERTION_LIFETIME_MAX} seconds away.")
        super().verify_claims(claims)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError, TypeError) as error:
            raise refused(f"The assertion is not valid: {str(error)[:200] or type(error).__name__}.") from None
        self.verify_claims(token.claims)
        return token.claims

    def validate_jti(self, claims: Any, jti: str) -> bool:
        """Record the jti until the assertion expires; False when it was recorded before."""
        client_id = db.session.scalar(sa.select(Client.id).where(Client.client_id == claims["sub"]))
        now = utcnow()
        db.session.execute(sa.delete(UsedClientAssertion).where(UsedClientAssertion.expires_at < now))
        expires_at = datetime.fromtimestamp(claims["exp"] + LEEWAY, UTC).replace(tzinfo=None)
        fresh = insert_once(UsedClientAssertion, client_id=client_id, jti_hash=sha256(str(jti)), expires_at=expires_at)
        db.session.commit()
        return fresh

    def resolve_client_public_key(self, client: Client) -> Any:
        """The app's keys, looked up once the assertion's header names its kid."""

        def resolve(token: Any) -> KeySet:
            try:
                keys = client_keys(client)
                kid = token.headers().get("kid")
                if kid is not None and all(key.kid != kid for key in keys):
                    keys = client_keys(client, unknown_kid=True)
            except (FetchError, ValueError) as error:
                raise refused(f"The app's keys could not be read: {error}.") from None
            return keys

        return resolve
