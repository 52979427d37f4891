"""Registry: who may act, and the one path by which access ends.

Owns the audit log, organizations, members (sign-up, login, password, role, removal), the registry
of connected apps (registration for every path, redirect URIs, secret rotation, deletion), the
consent a member gave, and revocation: ``revoke_grants`` is the only way a grant ends, whoever ends
it (RFC 7009 §2.1, RFC 9700 §4.5 and §4.14.2). Every change is audited here, so that it is recorded
whichever way it was made: a page, the API, MCP or the command line.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from authlib.common.security import generate_token
from flask import has_request_context
from flask import request
from werkzeug.security import check_password_hash

from .models import EMAIL_SALT_PREFIX
from .models import AuditEvent
from .models import AuthorizationCode
from .models import Client
from .models import Consent
from .models import Grant
from .models import LoginChoice
from .models import Member
from .models import MemberSession
from .models import Organization
from .models import RejectedRedirect
from .models import Todo
from .models import db
from .models import insert_once
from .models import new_secret
from .models import password_hash
from .models import sha256
from .models import utcnow
from .rules import DEFAULT_CLIENT_SCOPE
from .rules import ClientMetadataError
from .rules import check_client_metadata
from .rules import is_safe_return_path
from .rules import normalize_email
from .rules import normalize_scope
from .rules import redirect_uri_problem
from .web import log
from .web import remote_address

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
    "client_metadata_pinned",
    "client_metadata_unpinned",
    "client_deleted",
    "client_unblocked",
    "redirect_uri_added",
    "redirect_uri_removed",
    "password_changed",
    "role_changed",
    "member_removed",
    "member_added",
    "operator_granted",
    "operator_revoked",
)
CLI_ACTOR = "command line"


def audit(
    event: str, member: Member | None = None, client_id: str | None = None, detail: str = "", actor: str | None = None
) -> None:
    """Add an audit record to the current transaction; the caller's commit keeps it."""
    assert event in AUDIT_EVENTS, event
    db.session.add(
        AuditEvent(
            event=event,
            actor=actor or (member.email if member is not None else None),
            member_id=member.id if member is not None else None,
            client_id=client_id,
            ip_address=remote_address() if has_request_context() else None,
            detail=detail[:500],
        )
    )


def actor_name(by: Member | None) -> str:
    """Who made a change: a member by their email, or the command line."""
    return by.email if by is not None else CLI_ACTOR


# ---- Revocation: the one path ------------------------------------------------------------------


def revoke_grants(
    event: str,
    *,
    member: Member | None = None,
    client: Client | None = None,
    grant: Grant | None = None,
    code: AuthorizationCode | None = None,
    forget_consent: bool = False,
    actor: str | None = None,
    detail: str = "",
) -> int:
    """End grants, and with them every access and refresh token they issued, at once.

    Which grants: a member's (with one client, or all), a client's (every member's), one grant, or
    the grant one authorization code started. A member's or a client's codes not yet redeemed die
    too, or one issued a moment before would start a new grant. ``forget_consent`` also forgets
    what the member allowed, so that the consent page is shown again. Logs, and writes the audit record ``event``
    about the member, by ``actor`` (who ended it; the member themself when not named).
    Every path takes it: a member's revoke, a password change, a role change, a removal, refresh
    token reuse (RFC 9700 §4.14.2), code replay (§4.5), RFC 7009 revocation and client deletion.
    """
    member = member or (grant.member if grant else None)
    client = client or (grant.client if grant else None)
    where = [Grant.revoked_at.is_(None)]
    if grant is not None:
        where.append(Grant.id == grant.id)
    elif code is not None:
        where.append(Grant.authorization_code_id == code.id)
    else:
        assert member is not None or client is not None, "a revocation names whose grants end"
        if member is not None:
            where.append(Grant.member_id == member.id)
        if client is not None:
            where.append(Grant.client_id == client.id)
    now = utcnow()
    ended = db.session.execute(sa.update(Grant).where(*where).values(revoked_at=now)).rowcount
    if grant is None and code is None:
        pending = [AuthorizationCode.used_at.is_(None), AuthorizationCode.expires_at > now]
        if member is not None:
            pending.append(AuthorizationCode.member_id == member.id)
        if client is not None:
            pending.append(AuthorizationCode.client_id == client.id)
        db.session.execute(sa.update(AuthorizationCode).where(*pending).values(expires_at=now))
    if forget_consent and (member is not None or client is not None):
        consents = sa.delete(Consent)
        if member is not None:
            consents = consents.where(Consent.member_id == member.id)
        if client is not None:
            consents = consents.where(Consent.client_id == client.id)
        db.session.execute(consents)
    client_id = client.client_id if client is not None else None
    log.warning("%s: %d grant(s) revoked%s", event, ended, f" of client {client_id}" if client_id else "")
    audit(event, member, client_id, detail, actor=actor)
    return ended


# ---- Organizations and members -----------------------------------------------------------------


SESSION_LIFETIME = timedelta(days=30)


def session_binding() -> str:
    """The address (as the trusted proxies report it) and the browser that a login belongs to."""
    return sha256(f"{request.remote_addr}|{request.headers.get('User-Agent', '')}")


def open_session(member: Member) -> str:
    """Record a new login for this browser; return the random id its cookie carries."""
    sid = secrets.token_urlsafe(32)
    expired = MemberSession.created_at <= utcnow() - SESSION_LIFETIME
    db.session.execute(sa.delete(MemberSession).where(MemberSession.member_id == member.id, expired))
    db.session.add(MemberSession(member_id=member.id, sid_hash=sha256(sid), binding=session_binding()))
    return sid


def session_member(member_id: str, sid: str | None) -> Member | None:
    """The member a session cookie names, while that login is open, young enough, and used from
    the address and browser it began in. A copied cookie works nowhere else."""
    if not member_id.isdigit() or not sid:
        return None
    return db.session.scalar(
        sa.select(Member)
        .join(MemberSession, MemberSession.member_id == Member.id)
        .where(
            Member.id == int(member_id),
            MemberSession.sid_hash == sha256(sid),
            MemberSession.binding == session_binding(),
            MemberSession.created_at > utcnow() - SESSION_LIFETIME,
        )
    )


LOGIN_CHOICE_SECONDS = 300


def open_login_choice(members: list[Member]) -> str:
    """Keep, for five minutes, the members whose password matched, until the person chooses one;
    return the random id the session cookie carries. Nothing in the cookie itself is a credential."""
    token = secrets.token_urlsafe(32)
    matched = {str(m.id): sha256(m.password_hash) for m in members}
    db.session.add(LoginChoice(token_hash=sha256(token), members=matched, binding=session_binding()))
    db.session.commit()
    return token


def login_choice_members(token: str | None) -> list[Member]:
    """The members a pending choice may pick from: in its own browser, within five minutes, and
    only those whose password has not changed since it matched."""
    if not isinstance(token, str) or not token:
        return []
    choice = db.session.scalar(
        sa.select(LoginChoice).where(
            LoginChoice.token_hash == sha256(token),
            LoginChoice.binding == session_binding(),
            LoginChoice.created_at > utcnow() - timedelta(seconds=LOGIN_CHOICE_SECONDS),
        )
    )
    if choice is None:
        return []
    ids = [int(member_id) for member_id in choice.members]
    members = db.session.scalars(sa.select(Member).where(Member.id.in_(ids)).order_by(Member.organization_id))
    return [m for m in members if choice.members[str(m.id)] == sha256(m.password_hash)]


def close_login_choice(token: str | None) -> None:
    """A choice is used once; old ones are cleared away with it."""
    expired = LoginChoice.created_at <= utcnow() - timedelta(seconds=LOGIN_CHOICE_SECONDS)
    db.session.execute(sa.delete(LoginChoice).where((LoginChoice.token_hash == sha256(token or "")) | expired))
    db.session.commit()


def end_session(sid: str | None) -> None:
    """Logout: this login ends on the server, so its cookie is worthless from now on."""
    if sid:
        db.session.execute(sa.delete(MemberSession).where(MemberSession.sid_hash == sha256(sid)))
        db.session.commit()


def end_sessions(member: Member) -> None:
    """End every login of the member, in every browser."""
    db.session.execute(sa.delete(MemberSession).where(MemberSession.member_id == member.id))


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50] or "org"


def create_organization(name: str, slug: str | None = None) -> Organization:
    """A new organization, under the first free slug of its name: slug, slug-2, … Each slug is
    claimed with one atomic insert, so that sign-ups racing for one name each get their own."""
    base = slug or slugify(name)
    candidate, n = base, 1
    while db.session.scalar(sa.select(Organization.id).where(Organization.slug == candidate)) or not insert_once(
        Organization, name=name.strip(), slug=candidate
    ):
        n += 1
        candidate = f"{base}-{n}"
    return db.session.scalar(sa.select(Organization).where(Organization.slug == candidate))


def create_member(org: Organization, email: str, name: str, password: str, role: str, how: str = "") -> Member:
    """Add a member; ``how`` tells the audit log who added them."""
    member = Member(organization_id=org.id, email=normalize_email(email), name=name.strip(), role=role)
    member.set_password(password)
    db.session.add(member)
    db.session.flush()
    audit("member_added", member, detail=f"as {role}{', ' + how if how else ''}")
    return member


def authenticate_members(email: str, password: str) -> list[Member]:
    """The members, one per organization, whose email and password these are; a hash made
    before email salts is remade and saved on its first match.

    One scrypt, whatever the number of accounts with this email, none of them included: a login's
    time tells nothing about who is a member, or of how many organizations (OWASP ASVS 2.2)."""
    email = normalize_email(email)
    presented = password_hash(email, password)
    candidates = db.session.scalars(sa.select(Member).where(Member.email == email)).all()
    matches, legacy_checked = [], False
    for member in candidates:
        if secrets.compare_digest(member.password_hash, presented):
            matches.append(member)
        elif member.password_hash.split("$")[1] != presented.split("$")[1]:
            legacy_checked = True
            if member.check_password(password):
                member.set_password(password)  # a hash from before email salts, from now on in line
                db.session.commit()
                matches.append(member)
    if not legacy_checked and legacy_hashes_remain():
        # While any hash from before email salts remains, every login pays for one more check, so
        # that its time does not tell which emails still have such a hash.
        check_password_hash(DUMMY_LEGACY_HASH, password)
    return matches


# A Werkzeug hash of a password no one has: the second check legacy accounts cost, for the others.
DUMMY_LEGACY_HASH = "scrypt:32768:8:1$dummy-legacy-salt$" + "0" * 128


def legacy_hashes_remain() -> bool:
    old = ~Member.password_hash.like(f"scrypt:32768:8:1${EMAIL_SALT_PREFIX}%")
    return bool(db.session.scalar(sa.select(sa.exists().where(old))))


def replace_password(member: Member, password: str) -> None:
    """A new password ends every login and cuts off every app the member connected."""
    member.set_password(password)
    end_sessions(member)
    revoke_grants("password_changed", member=member, forget_consent=True, detail="by the member")
    db.session.commit()


def set_role(member: Member, role: str, by: Member) -> None:
    """A new role ends the member's logins and cuts off their apps: each must be allowed again."""
    member.role = role
    end_sessions(member)
    revoke_grants("role_changed", member=member, forget_consent=True, actor=by.email, detail=f"to {role}")
    db.session.commit()


def delete_member(member: Member, by: Member) -> None:
    """Remove a member; their logins and apps end at once, and their todos stay, without a creator."""
    end_sessions(member)
    revoke_grants("member_removed", member=member, forget_consent=True, actor=by.email)
    db.session.delete(member)
    db.session.commit()


def make_operator(member: Member, operator: bool = True) -> None:
    """Let a member manage every connected app at /setup, or no longer."""
    member.is_operator = operator
    audit("operator_granted" if operator else "operator_revoked", member, detail=f"by the {CLI_ACTOR}")
    db.session.commit()


# ---- The registry of connected apps ------------------------------------------------------------


def new_client_id() -> str:
    """A client_id of letters and digits: safe to paste anywhere, a shell argument included."""
    return generate_token(24)


def query_client(client_id: str) -> Client | None:
    """The app the registry holds under a client_id, as it is (client_metadata.query_client also
    fetches a described app's document again when it is stale)."""
    return db.session.scalar(sa.select(Client).where(Client.client_id == client_id))


def register_client(
    name: str,
    redirect_uris: list[str],
    *,
    public: bool,
    first_party: bool = False,
    scope: str = DEFAULT_CLIENT_SCOPE,
    grant_types: list[str] | None = None,
    self_registered: bool = False,
    links: dict[str, str] | None = None,
    client_id: str | None = None,
    secret: str | None = None,
    own_origin_paths: tuple[str, ...] = (),
    by: Member | None = None,
) -> tuple[Client, str | None]:
    """Register an app, by whatever path: the command line, /setup, dynamic registration or the
    playground. Return it and its secret (``secret``, or a new one), which is shown once and
    stored only as a hash. ``own_origin_paths`` are redirect paths on the app's own origin, for its
    built-in client alone."""
    scope = normalize_scope(scope)
    check_client_metadata(name, redirect_uris, scope)
    assert all(is_safe_return_path(path) for path in own_origin_paths), own_origin_paths
    secret = None if public else secret or new_secret()
    client = Client(
        client_id=client_id or new_client_id(),
        client_secret_hash=sha256(secret) if secret else None,
        name=name.strip(),
        first_party=first_party,
        redirect_uris=[*redirect_uris, *own_origin_paths],
        scope=scope,
        self_registered=self_registered,
        **(links or {}),
    )
    if grant_types is not None:
        client.grant_types = grant_types
    db.session.add(client)
    db.session.flush()
    if self_registered:
        audit("client_registered", client_id=client.client_id, actor=client.name, detail=" ".join(redirect_uris))
    else:
        audit("client_created", by, client.client_id, client.client_type, actor=actor_name(by))
    db.session.commit()
    return client, secret


def add_redirect_uri(client: Client, uri: str, by: Member | None = None) -> None:
    if client.described:
        raise ClientMetadataError("redirect_uris", "cannot be added: the app's metadata document lists them", uri)
    check_client_metadata(redirect_uris=[uri])
    audit("redirect_uri_added", by, client.client_id, uri, actor=actor_name(by))
    if uri not in client.redirect_uris:
        client.redirect_uris = [*client.redirect_uris, uri]
    db.session.execute(
        sa.delete(RejectedRedirect).where(RejectedRedirect.client_id == client.id, RejectedRedirect.redirect_uri == uri)
    )
    db.session.commit()


def remove_redirect_uri(client: Client, uri: str, by: Member) -> None:
    client.redirect_uris = [u for u in client.redirect_uris if u != uri]
    audit("redirect_uri_removed", by, client.client_id, uri)
    db.session.commit()


REJECTED_REDIRECTS_KEPT = 10  # per client, the newest: what the app's page at /setup shows


def record_rejected_redirect(client: Client, uri: str) -> None:
    """Remember a redirect URI /idp refused for a registered client, so that an operator can add
    it if it is the app's own (a GPT's callback changes with its settings). Anyone can send one,
    so only a URI that could be registered is kept, a repeat only counts, and each client keeps
    its newest few: the table cannot grow without bound. Nothing here ever registers a URI."""
    if redirect_uri_problem(uri):
        return
    row = db.session.scalar(
        sa.select(RejectedRedirect).where(RejectedRedirect.client_id == client.id, RejectedRedirect.redirect_uri == uri)
    )
    if row is None:
        db.session.add(RejectedRedirect(client_id=client.id, redirect_uri=uri))
    else:
        row.count, row.last_seen_at = row.count + 1, utcnow()
    db.session.flush()
    newest = (
        sa.select(RejectedRedirect.id)
        .where(RejectedRedirect.client_id == client.id)
        .order_by(RejectedRedirect.last_seen_at.desc(), RejectedRedirect.id.desc())
        .limit(REJECTED_REDIRECTS_KEPT)
    )
    older = sa.delete(RejectedRedirect).where(RejectedRedirect.client_id == client.id)
    db.session.execute(older.where(RejectedRedirect.id.not_in(newest.scalar_subquery())))
    db.session.commit()


NO_SECRET = "This app has no client secret: it is public, or proves itself as its metadata document says."


def start_secret_rotation(client: Client, by: Member | None = None) -> str:
    """Issue a second secret; the old one keeps working until the rotation completes."""
    if not client.uses_secret:
        raise ValueError(NO_SECRET)
    secret = new_secret()
    client.pending_secret_hash = sha256(secret)
    audit("client_secret_rotated", by, client.client_id, "started", actor=actor_name(by))
    db.session.commit()
    return secret


def finish_secret_rotation(client: Client, complete: bool, by: Member | None = None) -> None:
    """Complete (the new secret replaces the old) or cancel (the new one stops working)."""
    if complete and client.pending_secret_hash:
        client.client_secret_hash = client.pending_secret_hash
    client.pending_secret_hash = None
    detail = "completed" if complete else "cancelled"
    audit("client_secret_rotated", by, client.client_id, detail, actor=actor_name(by))
    db.session.commit()


def replace_client_secret(client: Client, by: Member | None = None) -> str:
    """Give a client a new secret at once; the old one, and any rotation under way, stop working."""
    if not client.uses_secret:
        raise ValueError(NO_SECRET)
    secret = new_secret()
    client.client_secret_hash, client.pending_secret_hash = sha256(secret), None
    audit("client_secret_rotated", by, client.client_id, "replaced at once", actor=actor_name(by))
    db.session.commit()
    return secret


def delete_client(client: Client, by: Member | None = None, detail: str = "") -> None:
    """Delete a client; its grants, and with them every token it holds, end first. An app its
    metadata document describes is blocked instead: its next authorization request would bring
    it back otherwise."""
    revoke_grants(
        "client_deleted",
        client=client,
        forget_consent=True,
        actor=actor_name(by),
        detail=detail or client.name,
    )
    if client.described:
        client.blocked_at = utcnow()
    else:
        db.session.delete(client)
    db.session.commit()


def unblock_client(client: Client, by: Member | None = None) -> None:
    """Let a blocked app, described by its metadata document, ask members again."""
    client.blocked_at = None
    audit("client_unblocked", by, client.client_id, client.name, actor=actor_name(by))
    db.session.commit()


# ---- Consent ------------------------------------------------------------------------------------


def consented(client: Client, member: Member, scopes: list[str]) -> bool:
    """Whether the member already allowed the client every scope asked for."""
    consent = db.session.scalar(
        sa.select(Consent).where(Consent.member_id == member.id, Consent.client_id == client.id)
    )
    return consent is not None and set(scopes) <= set(consent.scope.split())


def remember_consent(client: Client, member: Member, scope: str) -> None:
    audit("consent_given", member, client.client_id, scope)
    consent = db.session.scalar(
        sa.select(Consent).where(Consent.member_id == member.id, Consent.client_id == client.id)
    )
    if consent is None:
        consent = Consent(member_id=member.id, client_id=client.id, scope="")
        db.session.add(consent)
    consent.scope = " ".join(sorted(set(consent.scope.split()) | set(scope.split())))
    consent.granted_at = utcnow()
    db.session.commit()


def connected_members(client: Client) -> int:
    return db.session.scalar(sa.select(sa.func.count(Consent.id)).where(Consent.client_id == client.id)) or 0


def apps_connected_by(member: Member) -> list[dict[str, Any]]:
    """The apps a member allowed, with the scopes, when each last acted for them, and what each
    did in their name: how many todos it made and changed, and when it last did."""
    rows = db.session.execute(
        sa.select(Consent, Client, sa.func.max(Grant.last_used_at))
        .join(Client, Client.id == Consent.client_id)
        .outerjoin(Grant, (Grant.client_id == Client.id) & (Grant.member_id == member.id))
        .where(Consent.member_id == member.id)
        .group_by(Consent.id, Client.id)
        .order_by(Consent.granted_at.desc())
    ).all()
    made = todo_activity(Todo.created_via_id, Todo.created_at, Todo.created_by_id == member.id)
    changed = todo_activity(Todo.updated_via_id, Todo.updated_at, Todo.updated_by_id == member.id)
    return [
        {
            "client": client,
            "scope": consent.scope,
            "granted_at": consent.granted_at,
            "last_used_at": last_used,
            "made": made.get(client.id, (0, None)),
            "changed": changed.get(client.id, (0, None)),
        }
        for consent, client, last_used in rows
    ]


def todo_activity(via: Any, at: Any, by_member: Any) -> dict[int, tuple[int, Any]]:
    """For each app, how many todos it made or changed for a member, and when it last did."""
    rows = db.session.execute(
        sa.select(via, sa.func.count(), sa.func.max(at)).where(by_member, via.is_not(None)).group_by(via)
    ).all()
    return {client_id: (count, last) for client_id, count, last in rows}
