"""Models: the database and every table, as typed SQLAlchemy 2 models.

Owns the schema (migrations/ follows it), how secrets are kept at rest (SHA-256 of 256-bit random
values; a password hash only for passwords), and keyset pagination. The OAuth models carry the
small interfaces Authlib's grants and endpoints read (RFC 6749, RFC 7009, RFC 7662).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC
from datetime import date
from datetime import datetime
from importlib import import_module

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.util import scope_to_list
from flask import current_app
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship
from werkzeug.security import check_password_hash

from .rules import CLIENT_ID_MAX
from .rules import DEFAULT_CLIENT_SCOPE
from .rules import decode_cursor
from .rules import is_metadata_url
from .rules import redirect_uri_matches
from .settings import issuer


class Base(DeclarativeBase):
    pass


# A request's objects stay loaded after a commit: reloading each one from the database after every
# commit cost the token endpoint a dozen SELECTs. A request that needs a fresh row refreshes it.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})

SECRET_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def utcnow() -> datetime:
    """The current time in UTC, naive, as every column stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def sha256(value: str) -> str:
    """Hash a 256-bit random secret for storage; a password hash would add nothing but cost."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret() -> str:
    """A 256-bit random secret: a client secret, shown once and kept only as its SHA-256."""
    return secrets.token_urlsafe(32)


class Organization(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(60), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


PASSWORD_METHOD = (2**15, 8, 1)  # scrypt's n, r and p: Werkzeug's default
EMAIL_SALT_PREFIX = "email."


class Deployment(db.Model):
    """Facts of this deployment made once, when it first starts."""

    id: Mapped[int] = mapped_column(primary_key=True)
    # Random, and unknown outside the database, so that no one can prepare guesses for an
    # email's passwords before they hold the database (see password_hash).
    password_salt_seed: Mapped[str] = mapped_column(sa.String(64))


def password_salt_seed() -> str:
    """This deployment's salt seed, read once per app."""
    seed = current_app.extensions.get("connected_todos.password_salt_seed")
    if seed is None:
        seed = db.session.scalar(sa.select(Deployment.password_salt_seed).where(Deployment.id == 1))
        current_app.extensions["connected_todos.password_salt_seed"] = seed
    return seed


def ensure_deployment() -> None:
    """Make this deployment's facts on its first start; a worker that races another keeps theirs."""
    if db.session.get(Deployment, 1) is None:
        db.session.add(Deployment(id=1, password_salt_seed=secrets.token_hex(32)))
        try:
            db.session.commit()
        except sa.exc.IntegrityError:
            db.session.rollback()


def password_hash(email: str, password: str) -> str:
    """scrypt with a salt drawn from the email, in Werkzeug's format (check_password_hash reads it).

    Members of several organizations may share an email, each with a password of their own. With
    one salt for the email, a login computes one scrypt and compares it with every account that
    shares the email, so that a login costs the same whether the email has one account or ten.
    The salt is keyed with the deployment's own seed, so that it is unique to this deployment."""
    n, r, p = PASSWORD_METHOD
    keyed = hmac.new(password_salt_seed().encode(), email.encode(), hashlib.sha256).hexdigest()[:32]
    salt = EMAIL_SALT_PREFIX + keyed
    digest = hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p)
    return f"scrypt:{n}:{r}:{p}${salt}${digest.hex()}"


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
        self.password_hash = password_hash(self.email, password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def get_user_id(self) -> int:
        return self.id


class LoginChoice(db.Model):
    """A login waiting for its organization: the password matched several members of one email.
    The cookie carries a random id, stored as its hash with the browser it belongs to; choosing
    uses it up, and a password changed meanwhile voids it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # Each member whose password matched, with a hash of the password hash it matched.
    members: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    binding: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemberSession(db.Model):
    """A browser's login, kept on the server so that it can end (OWASP ASVS 3.3.1 and 3.3.3): the
    cookie carries a random id, and only its hash is stored, with the hash of the address and
    browser it belongs to."""

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id", ondelete="CASCADE"), index=True)
    sid_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    binding: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Client(ClientMixin, db.Model):
    """A connected app: an OAuth client registered with this server."""

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.String(CLIENT_ID_MAX), unique=True)
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
    # Set only for an app described by a metadata document: "none" or "private_key_jwt".
    token_endpoint_auth_method: Mapped[str | None] = mapped_column(sa.String(30))
    # An app described by a metadata document that an operator deleted stays here, refused, so that
    # its next authorization request cannot bring it back.
    blocked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    document: Mapped[ClientMetadataDocument | None] = relationship(
        back_populates="client", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def is_public(self) -> bool:
        if self.token_endpoint_auth_method:  # an app its document describes: the document decides
            return self.token_endpoint_auth_method == "none"
        return self.client_secret_hash is None

    @property
    def uses_secret(self) -> bool:
        """Whether the app authenticates with a client secret, which an operator can rotate."""
        return not self.token_endpoint_auth_method and self.client_secret_hash is not None

    @property
    def described(self) -> bool:
        """Whether the client_id is the URL of a metadata document that describes the app."""
        return is_metadata_url(self.client_id)

    @property
    def client_type(self) -> str:
        party = "first-party" if self.first_party else "third-party"
        return f"{party} {'public' if self.is_public else 'confidential'}"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # With several registered URIs the request must name one (RFC 6749 §3.1.2.3).
        if len(self.redirect_uris) != 1:
            return None
        uri = self.redirect_uris[0]
        return issuer() + uri if uri.startswith("/") else uri

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
        """A registered path ("/…", which only the app's built-in client has) is that path on the
        app's own origin, exactly; any other URI matches as RFC 8252 §7.3 allows."""
        return any(
            redirect_uri == issuer() + uri if uri.startswith("/") else redirect_uri_matches(uri, redirect_uri)
            for uri in self.redirect_uris
        )

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret_hash is None:
            return False
        presented = sha256(client_secret)
        current = secrets.compare_digest(self.client_secret_hash, presented)
        pending = secrets.compare_digest(self.pending_secret_hash or "", presented)
        return current or pending

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # Both secret styles work for confidential clients: they are the GPT builder's two
        # "token exchange methods". Public clients authenticate with "none" only, and an app its
        # metadata document describes with the one method the document names.
        if self.token_endpoint_auth_method:
            return method == self.token_endpoint_auth_method
        if self.is_public:
            return method == "none"
        return method in SECRET_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class ClientMetadataDocument(db.Model):
    """The last valid metadata document of an app whose client_id is its URL, and until when it may
    be used without fetching it again (draft-ietf-oauth-client-id-metadata-document §5.2, RFC 9111
    §4.2). Never an error or an invalid document. An operator's pinned copy never goes stale.
    The app's public keys for private_key_jwt are here too: inline, or as last fetched."""

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("client.id", ondelete="CASCADE"), unique=True)
    document: Mapped[dict] = mapped_column(sa.JSON)
    pinned: Mapped[bool] = mapped_column(default=False)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)
    fresh_until: Mapped[datetime] = mapped_column(default=utcnow)
    etag: Mapped[str | None] = mapped_column(sa.String(200))
    # The last fetch, failed or not: a stale document or key set is fetched at most once a minute.
    attempted_at: Mapped[datetime | None]
    jwks: Mapped[dict | None] = mapped_column(sa.JSON)
    jwks_fetched_at: Mapped[datetime | None]
    jwks_fresh_until: Mapped[datetime | None]
    jwks_attempted_at: Mapped[datetime | None]

    client: Mapped[Client] = relationship(back_populates="document")

    def is_fresh(self) -> bool:
        return self.pinned or self.fresh_until > utcnow()


class UsedClientAssertion(db.Model):
    """A client assertion's jti, kept until the assertion expires so that it is used once
    (RFC 7523 §3 item 7, OIDC Core §9). Stored as a hash: a jti is as long as the client likes."""

    __table_args__ = (sa.UniqueConstraint("client_id", "jti_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("client.id", ondelete="CASCADE"))
    jti_hash: Mapped[str] = mapped_column(sa.String(64))
    expires_at: Mapped[datetime] = mapped_column(index=True)


def insert_once(model: type[db.Model], **values: object) -> bool:
    """Insert a row unless one with the same unique values exists; whether it was inserted.
    Atomic on every database, across workers and hosts."""
    dialect = db.session.get_bind().dialect.name  # the dialect's own INSERT … ON CONFLICT DO NOTHING
    insert = import_module(f"sqlalchemy.dialects.{dialect}").insert
    statement = insert(model).values(**values).on_conflict_do_nothing().returning(model.__table__.c.id)
    return db.session.execute(statement).first() is not None  # rowcount is -1 with psycopg


class Todo(db.Model):
    """A todo of an organization. It records who made it and who last changed it, and the app
    through which each acted for them (none when they did it on the web)."""

    __table_args__ = (sa.Index("ix_todo_org_id", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"))
    title: Mapped[str] = mapped_column(sa.String(200))
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    completed: Mapped[bool] = mapped_column(default=False)
    due_date: Mapped[date | None]
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("member.id", ondelete="SET NULL"))
    created_via_id: Mapped[int | None] = mapped_column(sa.ForeignKey("client.id", ondelete="SET NULL"), index=True)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("member.id", ondelete="SET NULL"))
    updated_via_id: Mapped[int | None] = mapped_column(sa.ForeignKey("client.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    created_by: Mapped[Member | None] = relationship(foreign_keys=[created_by_id], lazy="joined")
    created_via: Mapped[Client | None] = relationship(foreign_keys=[created_via_id], lazy="joined")
    updated_via: Mapped[Client | None] = relationship(foreign_keys=[updated_via_id], lazy="joined")


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
    client_id: Mapped[str | None] = mapped_column(sa.String(CLIENT_ID_MAX), index=True)
    ip_address: Mapped[str | None] = mapped_column(sa.String(64))  # web.ADDRESS_MAX
    detail: Mapped[str] = mapped_column(sa.String(500), default="")


class SigningKey(db.Model):
    """A private signing key, sealed with KEY_ENCRYPTION_KEY (Fernet): a copy of the database
    alone cannot sign a token. A key that was ever stored unsealed signs nothing more, verifies
    the tokens it signed until ``retire_after``, and is then removed."""

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    sealed_jwk: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retire_after: Mapped[datetime | None]


def keyset_page(
    query: sa.Select, model: type[Todo | AuditEvent], limit: int, cursor: str | None
) -> tuple[list, str | None]:
    """One page of ``query``'s rows, newest first, and the cursor of the next page (keyset
    pagination: the cost of a page does not grow with the table). ValueError for a made-up cursor."""
    if cursor is not None and (before := decode_cursor(cursor)) is not None:
        query = query.where(model.id < before)
    rows = db.session.scalars(query.order_by(model.id.desc()).limit(limit + 1)).all()
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return list(rows[:limit]), next_cursor
