"""Pages: what a member does in the browser.

Owns sign-up, login (with a choice of organization when an email is in several), logout, the
todo pages, the members page for admins, the password page and the member's connected apps, where
they cut an app off. Logins follow OWASP ASVS: a new session at login, throttled guesses, and a
safe ``returnTo`` (RFC 9700 §4.11: no open redirect).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from flask import Response
from flask import abort
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import current_user
from flask_login import login_required
from flask_login import login_user
from flask_login import logout_user

from .idp import authorization_redirect
from .models import Member
from .models import db
from .registry import apps_connected_by
from .registry import audit
from .registry import authenticate_members
from .registry import close_login_choice
from .registry import create_member
from .registry import create_organization
from .registry import delete_member
from .registry import end_session
from .registry import login_choice_members
from .registry import open_login_choice
from .registry import open_session
from .registry import query_client
from .registry import replace_password
from .registry import revoke_grants
from .registry import session_member
from .registry import set_role
from .rules import ID_LIMIT
from .rules import ROLES
from .rules import SCOPES
from .rules import is_safe_return_path
from .rules import member_problem
from .rules import name_problem
from .rules import normalize_email
from .rules import password_problem
from .todos import PAGE_MAX
from .todos import TodoError
from .todos import create_todo
from .todos import delete_todo
from .todos import fields_from_form
from .todos import get_todo
from .todos import list_todos
from .todos import toggle_completed
from .todos import update_todo
from .web import configured_limit
from .web import limiter
from .web import protocol_error
from .web import remote_network
from .web import with_policy

bp = Blueprint("pages", __name__)


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """View decorator that lets only an organization's admins through."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def load_member(member_id: str) -> Member | None:
    """Flask-Login's loader: the member whose login this browser's session cookie carries."""
    return session_member(member_id, session.get("sid"))


def start_session(member: Member) -> None:
    """Log the member in with a fresh session, so that no pre-login session survives."""
    sid = open_session(member)
    db.session.commit()  # the login, and its audit record
    session.clear()  # the session cookie is the session: clearing it renews it
    login_user(member)
    session["sid"] = sid
    session["auth_time"] = int(time.time())


def return_to() -> str:
    """The returnTo (or next) target of /login when it is a safe same-origin path."""
    target = request.values.get("returnTo") or request.values.get("next")
    return target if is_safe_return_path(target) else url_for("pages.todos")


def login_page(template: str, **context: Any) -> Response:
    """A login step's page; its form may lead on to the client of the authorization request."""
    redirect_uri = authorization_redirect(return_to())
    return with_policy(render_template(template, **context), form_redirects=[redirect_uri] if redirect_uri else [])


@bp.route("/livez")
def livez() -> Response:
    """Liveness: the process answers. Touches nothing, so it is also the benchmark's floor."""
    return jsonify({"status": "ok"})


@bp.route("/healthz")
def healthz() -> Response:
    """Readiness: the database answers (a 503 comes from the outage handler otherwise). The
    rate-limit store is reported but fails nothing: without it, each worker counts alone."""
    db.session.execute(sa.text("SELECT 1"))
    return jsonify({"status": "ok", "database": "ok", "rate_limit_store": rate_limit_store()})


def rate_limit_store() -> str:
    try:
        return "ok" if limiter.storage.check() else "unreachable"
    except Exception:  # any failure of the store's client is an unreachable store
        return "unreachable"


@bp.route("/")
def index() -> str:
    """Explain what the app is."""
    return render_template("index.html")


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(configured_limit("SIGNUP_RATE_LIMIT"), methods=["POST"])
def signup() -> Any:
    """Create an organization and its first admin."""
    if request.method == "POST":
        form = request.form
        org_name, email = form.get("organization", "").strip(), normalize_email(form.get("email", ""))
        error = member_problem(email, form.get("name", ""), form.get("password", ""))
        if problem := name_problem(org_name):
            error = f"The organization name {problem}."
        if error is None:
            org = create_organization(org_name)
            member = create_member(org, email, form["name"], form["password"], "admin", "at sign-up")
            db.session.commit()
            start_session(member)
            flash(f"Welcome! {org.name} is ready.")
            return redirect(url_for("pages.todos"))
        flash(error, "error")
    return render_template("signup.html")


def failed_attempt(response: Response) -> bool:
    return response.status_code == 200  # a failed login or password change shows the form again


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(configured_limit("LOGIN_RATE_LIMIT"), methods=["POST"])
@limiter.limit(
    configured_limit("LOGIN_ACCOUNT_RATE_LIMIT"),
    methods=["POST"],
    key_func=lambda: f"account:{normalize_email(request.form.get('email', ''))}:{remote_network()}",
    deduct_when=failed_attempt,
)
def login() -> Any:
    """Log a member in with email and password."""
    if request.method == "POST":
        email = normalize_email(request.form.get("email", ""))
        matches = authenticate_members(email, request.form.get("password", ""))
        if len(matches) == 1:
            audit("login_succeeded", matches[0])
            start_session(matches[0])
            return redirect(return_to())
        if matches:
            # The email belongs to several organizations: choose after the password check.
            target = return_to()
            choice = open_login_choice(matches)
            session.clear()
            session["org_choice"] = choice
            return redirect(url_for("pages.choose_organization", returnTo=target))
        audit("login_failed", actor=email[:254])
        db.session.commit()
        flash("That email and password do not match a member.", "error")
    return login_page("login.html", return_to=request.values.get("returnTo", ""))


@bp.route("/login/organization", methods=["GET", "POST"])
def choose_organization() -> Any:
    """Let a person whose email is in several organizations choose one."""
    members = login_choice_members(session.get("org_choice"))
    if not members:
        return redirect(url_for("pages.login"))
    if request.method == "POST":
        chosen = next((m for m in members if str(m.id) == request.form.get("member_id")), None)
        if chosen:
            close_login_choice(session.get("org_choice"))
            audit("login_succeeded", chosen, detail="after choosing the organization")
            start_session(chosen)
            return redirect(return_to())
        flash("Choose one of the organizations.", "error")
    return login_page("choose_org.html", members=members, return_to=return_to())


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    """Log the member out: the login ends on the server too, so a copy of the cookie is worthless."""
    end_session(session.get("sid"))
    logout_user()
    session.clear()
    return redirect(url_for("pages.index"))


# ---- Todos -------------------------------------------------------------------------------------


def todo_error_page(error: TodoError) -> Response:
    """A broken todo rule on a page: a todo that is not there is a 404 page; anything else is said
    above the page the member came from."""
    if error.status == 404:
        return protocol_error(404, error.message)
    flash(error.message, "error")
    return redirect(request.path)


bp.register_error_handler(TodoError, todo_error_page)


@bp.route("/todos", methods=["GET", "POST"])
@login_required
def todos() -> Any:
    """List the organization's todos and add one."""
    if request.method == "POST":
        create_todo(current_user, fields_from_form(request.form))
        flash("Todo added.")
        return redirect(url_for("pages.todos"))
    completed = {"open": False, "done": True}.get(request.args.get("show", ""))
    page, next_cursor = list_todos(current_user, completed, PAGE_MAX, request.args.get("cursor"))
    return render_template("todos.html", todos=page, next_cursor=next_cursor)


@bp.route("/todos/<int:todo_id>/edit", methods=["GET", "POST"])
@login_required
def edit_todo(todo_id: int) -> Any:
    """Edit a todo's title, notes, due date and completion."""
    if request.method == "POST":
        update_todo(current_user, todo_id, fields_from_form(request.form, with_completed=True))
        flash("Todo saved.")
        return redirect(url_for("pages.todos"))
    return render_template("todo_edit.html", todo=get_todo(current_user, todo_id))


@bp.route("/todos/<int:todo_id>/toggle", methods=["POST"])
@login_required
def toggle_todo(todo_id: int) -> Any:
    """Mark a todo completed, or open again."""
    toggle_completed(current_user, todo_id)
    return redirect(url_for("pages.todos"))


@bp.route("/todos/<int:todo_id>/delete", methods=["POST"])
@login_required
def remove_todo(todo_id: int) -> Any:
    """Delete a todo."""
    delete_todo(current_user, todo_id)
    flash("Todo deleted.")
    return redirect(url_for("pages.todos"))


# ---- Members and settings ----------------------------------------------------------------------


def colleague_or_404(member_id: int) -> Member:
    member = db.session.get(Member, member_id) if 0 < member_id < ID_LIMIT else None
    if member is None or member.organization_id != current_user.organization_id:
        abort(404)
    return member


@bp.route("/members", methods=["GET", "POST"])
@admin_required
def members() -> Any:
    """List the organization's members and let an admin add one."""
    org = current_user.organization
    if request.method == "POST":
        form = request.form
        email, role = normalize_email(form.get("email", "")), form.get("role", "member")
        error = member_problem(email, form.get("name", ""), form.get("password", ""), role)
        exists = sa.select(Member.id).where(Member.organization_id == org.id, Member.email == email)
        if error is None and db.session.scalar(exists):
            error = "That email is already a member of this organization."
        if error is None:
            create_member(org, email, form["name"], form["password"], role, f"by {current_user.email}")
            db.session.commit()
            flash(f"{email} can now log in to {org.name}.")
            return redirect(url_for("pages.members"))
        flash(error, "error")
    people = db.session.scalars(sa.select(Member).where(Member.organization_id == org.id).order_by(Member.email)).all()
    return render_template("members.html", members=people, roles=ROLES)


@bp.route("/members/<int:member_id>/role", methods=["POST"])
@admin_required
def change_role(member_id: int) -> Any:
    """Make a member an admin, or an admin a member."""
    member, new_role = colleague_or_404(member_id), request.form.get("role")
    if new_role not in ROLES:
        abort(400, "Choose the role admin or member.")
    if member.id == current_user.id:
        abort(400, "Ask another admin to change your own role.")
    if member.role != new_role:
        set_role(member, new_role, by=current_user)
        flash(f"{member.email} is now {'an admin' if new_role == 'admin' else 'a member'}; their apps must ask again.")
    return redirect(url_for("pages.members"))


@bp.route("/members/<int:member_id>/remove", methods=["POST"])
@admin_required
def remove_member(member_id: int) -> Any:
    """Remove a member from the organization; their apps are cut off at once."""
    member = colleague_or_404(member_id)
    if member.id == current_user.id:
        abort(400, "You cannot remove yourself.")
    email, org_name = member.email, current_user.organization.name
    delete_member(member, by=current_user)
    flash(f"{email} was removed from {org_name}.")
    return redirect(url_for("pages.members"))


@bp.route("/settings/password", methods=["GET", "POST"])
@login_required
@limiter.limit(
    configured_limit("PASSWORD_RATE_LIMIT"),
    methods=["POST"],
    key_func=lambda: f"password:{current_user.id}",
    deduct_when=failed_attempt,
)
def change_password() -> Any:
    """Change the password; every app the member connected must be allowed again."""
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if not current_user.check_password(request.form.get("current_password", "")):
            flash("The current password is not right.", "error")
        elif problem := password_problem(new):
            flash(problem, "error")
        else:
            member = current_user._get_current_object()
            replace_password(member, new)
            start_session(member)  # a new session id, too
            flash("Password changed. Apps you had connected must be allowed again.")
            return redirect(url_for("pages.connected_apps"))
    return render_template("password.html")


@bp.route("/settings/connected-apps")
@login_required
def connected_apps() -> str:
    """The apps the member has allowed, with what they may do and when they last did it."""
    apps = [
        {**app, "scopes": [(s, SCOPES[s].consent if s in SCOPES else s) for s in app["scope"].split()]}
        for app in apps_connected_by(current_user)
    ]
    return render_template("connected_apps.html", apps=apps)


@bp.route("/settings/connected-apps/<client_id:client_id>/revoke", methods=["POST"])
@login_required
def revoke_connected_app(client_id: str) -> Any:
    """Cut an app off: its tokens for this member stop working at once."""
    client = query_client(client_id)
    if client is None:
        abort(404)
    revoke_grants("app_disconnected", member=current_user, client=client, forget_consent=True)
    db.session.commit()
    flash(f"{client.name} can no longer act for you.")
    return redirect(url_for("pages.connected_apps"))
