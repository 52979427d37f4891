"""Grants: how a code and a refresh token become tokens, and the server that runs them.

Owns the authorization code grant (RFC 6749 §4.1) with PKCE, S256 only (RFC 7636, RFC 9700
§2.1.1), single-use codes whose replay revokes what they issued (RFC 9700 §4.5), ID tokens (OIDC
Core §3.1.3), and the refresh token grant (RFC 6749 §6): rotation with reuse detection for public
clients (RFC 9700 §4.14.2). It builds ``server``, Authlib's authorization server with these grants
and the revocation, introspection and registration endpoints.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import current_app
from flask import session
from joserfc.jwk import RSAKey

from .keys import current_signing_key
from .models import AuthorizationCode
from .models import Client
from .models import Member
from .models import RefreshToken
from .models import db
from .models import sha256
from .models import utcnow
from .oauth import CLIENT_AUTH_METHODS
from .oauth import REFRESH_TOKEN_TTL
from .oauth import AuthorizationServer
from .oauth import Introspection
from .oauth import InvalidTargetError
from .oauth import OAuth2Request
from .oauth import Revocation
from .oauth import bind_resource
from .oauth import derived_secret
from .oauth import lasting_access
from .oauth import requested_resource
from .oauth import successor_token
from .oauth import user_info
from .registration import Registration
from .registry import revoke_grants
from .settings import issuer

CODE_TTL = 300  # RFC 6749 §4.1.2 recommends at most ten minutes; we allow five
ID_TOKEN_TTL = 3600


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
        if not redeemed:
            if item is not None and item.used_at is not None:
                # A second redemption: revoke what the first one issued (RFC 9700 §4.5). The mark
                # on the code catches a first redemption that has not stored its grant yet.
                item.replayed_at = now
                member = db.session.get(Member, item.member_id)
                revoke_grants(
                    "code_reuse_detected", code=item, member=member, client=client, detail="code presented again"
                )
            db.session.commit()
            return None
        # Not committed here: the redemption commits with the tokens it issues (save_token), in one
        # transaction. A racing redemption waits on the code's row until then, and then sees it used.
        bind_resource(requested_resource(self.request, item.resource))
        return item

    def generate_token(
        self,
        user: Member | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """Overridden so that a refresh token comes only with lasting access (OIDC Core §11)."""
        include_refresh_token = include_refresh_token and lasting_access(self.request.client, scope or "")
        return super().generate_token(user, scope, grant_type, expires_in, include_refresh_token)

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
        bind_resource(requested_resource(self.request, item.grant.resource))
        if client.is_public:
            # Rotate (RFC 9700 §4.14.2): of racing uses exactly one rotates the token. The others,
            # and a retry within the grace window, get the same successor (issue_token), as long
            # as it is unused; any other use of a rotated token revokes the whole grant.
            rotated = db.session.execute(
                sa.update(RefreshToken)
                .where(RefreshToken.id == item.id, RefreshToken.rotated_at.is_(None))
                .values(rotated_at=now)
            ).rowcount
            db.session.commit()
            if not rotated and not self.retried_in_grace(item, refresh_token):
                revoke_grants("refresh_reuse_detected", grant=item.grant, detail="refresh token reused")
                db.session.commit()
                return None
            db.session.refresh(item)  # the rotation time, which the successor is issued at
        return item

    def retried_in_grace(self, item: RefreshToken, presented: str) -> bool:
        """Whether a rotated token comes back within the grace window, its successor unused."""
        db.session.refresh(item)
        grace = timedelta(seconds=current_app.config["REFRESH_TOKEN_GRACE_SECONDS"])
        if item.rotated_at is None or utcnow() - item.rotated_at > grace:
            return False
        successor_hash = sha256(derived_secret(presented, "refresh-token"))
        used = db.session.scalar(sa.select(RefreshToken.rotated_at).where(RefreshToken.token_hash == successor_hash))
        return used is None

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
        if self.request.client.is_public:  # a new pair, derived from the rotated token
            return successor_token(refresh_token, self.request.payload.data["refresh_token"], scope)
        return self.generate_token(user=user, scope=scope, include_refresh_token=False)

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


def create_server() -> AuthorizationServer:
    """The authorization server, with this app's grants and endpoints."""
    server = AuthorizationServer()
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), OpenIDConnect()])
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_endpoint(Registration)
    return server


server = create_server()
