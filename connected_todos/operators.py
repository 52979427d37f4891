"""Operators: the pages of the people who run the deployment, and the playground.

Owns ``/setup`` (connect a GPT or an MCP client, and see every connected app), each app's page
(the values to paste, callback URLs, secret rotation in three steps, deletion), the audit log, and
the playground: a first-party public client (RFC 6749 §2.1, with PKCE) that walks the flow in the
browser. Pages that show a secret are never cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from flask import Response
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user
from flask_login import login_required

from .mcp_tools import view_inline_hashes
from .models import AuditEvent
from .models import Client
from .models import Member
from .models import Organization
from .models import RejectedRedirect
from .models import db
from .models import keyset_page
from .registry import AUDIT_EVENTS
from .registry import NO_SECRET
from .registry import add_redirect_uri
from .registry import connected_members
from .registry import delete_client
from .registry import finish_secret_rotation
from .registry import query_client
from .registry import register_client
from .registry import remove_redirect_uri
from .registry import start_secret_rotation
from .registry import unblock_client
from .rules import ClientMetadataError
from .rules import redirect_uri_problem
from .settings import issuer
from .web import with_policy

bp = Blueprint("operators", __name__)

PLAYGROUND_CLIENT_ID = "connected-todos-playground"
CHATGPT_CALLBACK = re.compile(r"https://(chatgpt\.com|chat\.openai\.com)/aip/g-[A-Za-z0-9]+/oauth/callback")
AUDIT_PAGE = 100
AUDIT_FILTERS = ("event", "client_id", "actor", "ip_address")


def operator_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """View decorator that lets only operators through."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_operator:
            command = f"flask --app app make-operator --org {current_user.organization.slug} {current_user.email}"
            abort(403, f"Only operators can open this page. An operator can make you one with: {command}")
        return view(*args, **kwargs)

    return wrapped


def no_store(page: str) -> Response:
    """A page that shows a secret must not be kept by any cache (RFC 6749 §5.1's spirit)."""
    response = Response(page)
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_client_or_404(client_id: str) -> Client:
    client = query_client(client_id)
    if client is None or client.client_id == PLAYGROUND_CLIENT_ID:
        abort(404)
    return client


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


@bp.route("/setup")
@operator_required
def setup() -> Response:
    """The operator's page: connect an MCP client or a GPT, and see every connected app."""
    clients = db.session.scalars(
        sa.select(Client).where(Client.client_id != PLAYGROUND_CLIENT_ID).order_by(Client.created_at.desc())
    ).all()
    rows = [(client, connected_members(client)) for client in clients]
    mcp_clients = [(client, members) for client, members in rows if client.self_registered]
    registered = [(client, members) for client, members in rows if not client.self_registered]
    operators = db.session.execute(
        sa.select(Member, Organization.name)
        .join(Organization, Organization.id == Member.organization_id)
        .where(Member.is_operator)
        .order_by(Organization.name, Member.email)
    ).all()
    return no_store(
        render_template(
            "setup.html", mcp_clients=mcp_clients, registered=registered, operators=operators, base=issuer()
        )
    )


@bp.route("/setup/gpt", methods=["POST"])
@operator_required
def setup_gpt() -> Response:
    """Register a custom GPT: a confidential third-party client; show its secret once."""
    try:
        client, secret = register_client(request.form.get("name") or "ChatGPT", [], public=False, by=current_user)
    except ClientMetadataError as error:
        flash(error.sentence, "error")
        return redirect(url_for("operators.setup"))
    flash(f"{client.name} is registered. Copy the secret now: it is shown only once.")
    return no_store(render_client_page(client, secret=secret))


@bp.route("/setup/clients/<client_id:client_id>")
@operator_required
def setup_client(client_id: str) -> Response:
    """One connected app: the values to paste, its callback URLs and its secret."""
    return no_store(render_client_page(setup_client_or_404(client_id)))


@bp.route("/setup/clients/<client_id:client_id>/redirect-uris", methods=["POST"])
@operator_required
def setup_add_redirect_uri(client_id: str) -> Any:
    """Add a callback URL: a GPT's is added at once, any other after an explicit confirmation."""
    client = setup_client_or_404(client_id)
    uri = request.form.get("redirect_uri", "").strip()
    # A URL the operator typed in ChatGPT's own shape goes in at once; any other, and any from the
    # list of rejected ones (which anyone can fill), only after an explicit confirmation.
    typed_chatgpt = CHATGPT_CALLBACK.fullmatch(uri) and request.form.get("from") != "rejected"
    if not typed_chatgpt and request.form.get("confirm") != "yes":
        if problem := redirect_uri_problem(uri):
            flash(f"{uri} {problem}.", "error")
            return redirect(url_for("operators.setup_client", client_id=client.client_id))
        return no_store(render_client_page(client, pending_uri=uri))  # asks to confirm
    try:
        add_redirect_uri(client, uri, by=current_user)
    except ClientMetadataError as error:
        flash(error.sentence, "error")
    else:
        looks_like = "ChatGPT's callback URL" if CHATGPT_CALLBACK.fullmatch(uri) else "The callback URL"
        flash(f"{looks_like} {uri} is registered for {client.name}.")
    return redirect(url_for("operators.setup_client", client_id=client.client_id))


@bp.route("/setup/clients/<client_id:client_id>/redirect-uris/remove", methods=["POST"])
@operator_required
def setup_remove_redirect_uri(client_id: str) -> Any:
    """Remove a callback URL."""
    client = setup_client_or_404(client_id)
    uri = request.form.get("redirect_uri", "")
    remove_redirect_uri(client, uri, by=current_user)
    flash(f"Removed {uri}.")
    return redirect(url_for("operators.setup_client", client_id=client.client_id))


@bp.route("/setup/clients/<client_id:client_id>/secret", methods=["POST"])
@operator_required
def setup_rotate_secret(client_id: str) -> Any:
    """Rotate a secret in three steps, as Stytch does: start, then complete or cancel."""
    client = setup_client_or_404(client_id)
    action = request.form.get("action")
    if not client.uses_secret:
        abort(400, NO_SECRET)
    if action == "start":
        secret = start_secret_rotation(client, by=current_user)
        flash("A new secret is ready; the old one keeps working until you complete the rotation.")
        return no_store(render_client_page(client, secret=secret))
    if action in ("complete", "cancel"):
        finish_secret_rotation(client, complete=action == "complete", by=current_user)
        flash("Rotation completed: only the new secret works now." if action == "complete" else "Rotation cancelled.")
    return redirect(url_for("operators.setup_client", client_id=client.client_id))


@bp.route("/setup/clients/<client_id:client_id>/delete", methods=["POST"])
@operator_required
def setup_delete_client(client_id: str) -> Any:
    """Delete a connected app; every token it holds stops working."""
    client = setup_client_or_404(client_id)
    name, described = client.name, client.described
    delete_client(client, by=current_user)
    if described:
        flash(f"{name} is blocked and all of its tokens are revoked; its metadata document cannot bring it back.")
        return redirect(url_for("operators.setup_client", client_id=client_id))
    flash(f"{name} is deleted and all of its tokens are revoked.")
    return redirect(url_for("operators.setup"))


@bp.route("/setup/clients/<client_id:client_id>/unblock", methods=["POST"])
@operator_required
def setup_unblock_client(client_id: str) -> Any:
    """Let a blocked app ask members again."""
    client = setup_client_or_404(client_id)
    unblock_client(client, by=current_user)
    flash(f"{client.name} may ask members again.")
    return redirect(url_for("operators.setup_client", client_id=client.client_id))


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
        return redirect(url_for("operators.audit_log", **filters))  # a cursor that no page gave out
    return no_store(
        render_template("audit.html", events=events, names=AUDIT_EVENTS, filters=filters, next_cursor=next_cursor)
    )


# The playground's callback: this path on the app's own origin, which is PUBLIC_URL, or in
# development the loopback origin the app answers on. No request can name another (RFC 9700 §4.1).
PLAYGROUND_CALLBACK = "/playground/callback"


def ensure_playground_client() -> None:
    """Register the built-in first-party public client at start-up, with its one callback; a
    client stored before had others, which go."""
    client = query_client(PLAYGROUND_CLIENT_ID)
    try:
        if client is None:
            register_client(
                "Playground",
                [],
                public=True,
                first_party=True,
                client_id=PLAYGROUND_CLIENT_ID,
                own_origin_paths=(PLAYGROUND_CALLBACK,),
            )
        elif client.redirect_uris != [PLAYGROUND_CALLBACK]:
            client.redirect_uris = [PLAYGROUND_CALLBACK]
            db.session.commit()
    except sa.exc.IntegrityError:  # another worker created it first
        db.session.rollback()


@bp.route("/playground")
@bp.route("/playground/callback", endpoint="playground_callback")
def playground() -> Response:
    """Walk the OAuth flow, then MCP, one step at a time in the browser, without ChatGPT."""
    page = render_template(
        "playground.html",
        client_id=PLAYGROUND_CLIENT_ID,
        base=issuer(),
        redirect_uri=issuer() + PLAYGROUND_CALLBACK,
        scope="openid profile email offline_access todos:read todos:write",  # it shows a refresh too
    )
    return with_policy(page, inline=view_inline_hashes())  # the todos view it renders, as a host does
