"""IdP: the endpoints an OAuth client talks to, and the consent page a member sees.

Owns the authorization endpoint ``/idp`` (RFC 6749 §3.1 and §4.1, OIDC Core §3.1.2, RFC 9207): it
checks the client (registered, or described by the metadata document its client_id names) and the
redirect URI before anything else and never redirects to one that is not registered (RFC 6749
§4.1.2.1, RFC 9700 §4.1); it logs the member in and asks for consent. It
also owns the views of ``/oauth/*`` (token, revocation, introspection, registration, UserInfo) and
``/.well-known/*`` (RFC 8414, OIDC Discovery, RFC 7517, RFC 9728).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oidc.core.errors import ConsentRequiredError
from authlib.oidc.core.errors import LoginRequiredError
from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from .assertions import ASSERTION_ALGORITHMS
from .client_metadata import MetadataDocumentError
from .client_metadata import described_client
from .grants import server
from .keys import load_keys
from .models import Client
from .models import Member
from .models import db
from .oauth import CLIENT_AUTH_METHODS
from .oauth import CONFIDENTIAL_AUTH_METHODS
from .oauth import client_auth_limit
from .oauth import lasting_access
from .oauth import request_body_error
from .oauth import user_info
from .registry import audit
from .registry import consented
from .registry import query_client
from .registry import record_rejected_redirect
from .registry import remember_consent
from .rules import SCOPES
from .rules import bounded_int
from .rules import is_loopback_host
from .rules import is_metadata_url
from .settings import api_resource
from .settings import issuer
from .settings import mcp_resource
from .tokens import USERINFO
from .tokens import Bearer
from .tokens import require_token
from .web import configured_limit
from .web import csrf
from .web import limiter
from .web import log
from .web import with_policy

bp = Blueprint("idp", __name__)
MAX_AGE_MAX = 9_999_999_999  # seconds: ten digits, as long as max_age can usefully be


# ---- The authorization endpoint and consent ----------------------------------------------------


@dataclass(frozen=True)
class LinkProblem:
    """Why an authorization request cannot go back to its client, for the person who followed it."""

    message: str
    unregistered_for: Client | None = None  # the app, when an operator may add its redirect URI
    unfetched: str | None = None  # a metadata document URL the server could not fetch
    detail: str | None = None  # what went wrong in words another host chose: for operators only


def authorization_request_problem(args: MultiDict[str, str]) -> LinkProblem | None:
    """Check client_id and redirect_uri before anything else; they decide whether an error may be
    sent back to the client at all (RFC 6749 §4.1.2.1). A client_id that is a URL names the app's
    metadata document, which is fetched now unless a fresh copy is kept (CIMD §5); nothing about
    it can be trusted until it has been checked, so every failure is this page, never a redirect."""
    for name in ("client_id", "redirect_uri"):
        if len(args.getlist(name)) > 1:
            return LinkProblem(f"The request has more than one {name}.")
    client_id = args.get("client_id")
    if not client_id:
        return LinkProblem("The request has no client_id, so we cannot tell which app is asking.")
    if is_metadata_url(client_id):
        try:
            client = described_client(client_id)
        except MetadataDocumentError as error:
            log.info("%s", error)  # the host's own words, for the operator; a person reads ours
            reason = "could not be fetched" if error.fetch_failed else "does not describe an app this server accepts"
            message = f"The app's description at {client_id} {reason}."
            return LinkProblem(message, unfetched=client_id if error.fetch_failed else None, detail=str(error))
    else:
        client = query_client(client_id)
    if client is None:
        return LinkProblem(f"No app with the client_id “{client_id}” is registered here.")
    redirect_uri = args.get("redirect_uri")
    if redirect_uri is None:
        if client.get_default_redirect_uri() is None:
            return LinkProblem(f"{client.name} has several redirect URIs and the request names none.")
        return None
    if client.check_redirect_uri(redirect_uri):
        return None
    if client.described:  # its document decides its redirect URIs, not an operator (CIMD §4.2)
        return LinkProblem(f"The redirect URI “{redirect_uri}” is not listed in {client.name}'s metadata document.")
    record_rejected_redirect(client, redirect_uri)
    message = f"The redirect URI “{redirect_uri}” is not registered for {client.name}."
    return LinkProblem(message, unregistered_for=client)


def authorization_redirect(target: str) -> str | None:
    """The client's redirect URI when ``target`` is an authorization request with a registered one.
    After login, /idp may send the browser straight on to it (consent remembered), so the login
    form's CSP must allow it."""
    path, _, query = target.partition("?")
    if path != url_for("idp.authorize"):
        return None
    args = MultiDict(parse_qsl(query))
    client = query_client(args.get("client_id", ""))
    uri = args.get("redirect_uri") or (client.get_default_redirect_uri() if client else None)
    return uri if client and uri and client.check_redirect_uri(uri) else None


def consent_needed(client: Client, member: Member, scope: str, prompts: list[str]) -> bool:
    """First-party apps and scopes already consented to skip the consent page."""
    if "consent" in prompts:
        return True
    return not client.first_party and not consented(client, member, scope_to_list(scope) or [])


def needs_fresh_login(prompts: list[str]) -> bool:
    """prompt=login, or a max_age older than the member's login (OIDC Core §3.1.2.1), or a fresh
    login asked for earlier in this session and not yet given."""
    try:
        max_age = bounded_int(request.args.get("max_age", ""), 0, MAX_AGE_MAX)
    except ValueError:
        max_age = None  # absent, or not a number of seconds this side of the year 2286: no age
    too_old = max_age is not None and time.time() - session.get("auth_time", 0) > max_age
    return "login" in prompts or too_old or "login_asked_at" in session  # a login renews the session


def redirect_to_login() -> Response:
    """Log in, then come back to this request, minus what asked for the login (no loop). The
    current session lasts until the new login succeeds: a link from another site that asks for a
    fresh login must not be able to log a member out. Until then, no authorization request of this
    session goes through without one, so going back to the request by hand skips nothing."""
    session["login_asked_at"] = int(time.time())  # until start_session replaces this session
    query = [(k, v) for k, v in request.args.items(multi=True) if k != "max_age"]
    query = [(k, " ".join(p for p in v.split() if p != "login")) if k == "prompt" else (k, v) for k, v in query]
    return redirect(url_for("pages.login", returnTo=f"{request.path}?{urlencode([(k, v) for k, v in query if v])}"))


def authorization_request_by_post() -> Response:
    """OIDC Core §3.1.2.1: an authorization request may arrive by POST, form-encoded. It is the
    same request as by GET, so it continues as one; the consent form then posts back to that URL."""
    params = list(request.form.items(multi=True)) or list(request.args.items(multi=True))
    return redirect(f"{url_for('idp.authorize')}?{urlencode(params)}", 303)


def invalid_link(problem: LinkProblem) -> tuple[str, int]:
    """The page a person sees for an authorization request that cannot go back to its client. An
    operator may add an app's new redirect URI from here."""
    operator = current_user.is_authenticated and current_user.is_operator
    rejected = (problem.unregistered_for, request.args["redirect_uri"]) if problem.unregistered_for else None
    page = render_template(
        "error.html",
        title="This sign-in link is not valid",
        message=problem.message,
        rejected=rejected if operator else None,
        unfetched=problem.unfetched if operator else None,
        detail=problem.detail if operator else None,
    )
    return page, 400


def names_no_document() -> bool:
    return not is_metadata_url(request.values.get("client_id", ""))


@bp.route("/idp", methods=["GET", "POST"])
@csrf.exempt  # the consent decision checks its token below; a request by POST changes nothing
@limiter.limit(configured_limit("CLIENT_METADATA_RATE_LIMIT"), exempt_when=names_no_document)
def authorize() -> Any:
    """The authorization endpoint: check the request, log the member in, ask for consent."""
    if request.method == "POST" and "decision" not in request.form:
        return authorization_request_by_post()
    if request.method == "POST":
        csrf.protect()
    if problem := authorization_request_problem(request.args):
        return invalid_link(problem)
    member = current_user._get_current_object() if current_user.is_authenticated else None
    try:
        grant = server.get_consent_grant(end_user=member)
    except OAuth2Error as error:
        if error.redirect_uri:
            return server.handle_error_response(None, error)
        return invalid_link(LinkProblem(error.get_error_description()))
    prompts = request.args.get("prompt", "").split()
    if "none" in prompts and len(prompts) > 1:  # OIDC Core §3.1.2.1: none with any other value is an error
        error = InvalidRequestError("prompt=none cannot be combined with other values.")
        error.redirect_uri, error.state = grant.redirect_uri, request.args.get("state")
        return server.handle_error_response(None, error)
    if "none" in prompts and (member is None or needs_fresh_login(prompts)):  # OIDC Core §3.1.2.1: no page
        return server.handle_error_response(
            None, LoginRequiredError(redirect_uri=grant.redirect_uri, state=request.args.get("state"))
        )
    if member is None or needs_fresh_login(prompts):
        return redirect_to_login()
    client, scope = grant.client, grant.request.scope
    if request.method == "POST":
        if request.form.get("decision") != "allow":
            audit("consent_denied", member, client.client_id, scope)
            db.session.commit()
            return server.create_authorization_response(grant=grant, grant_user=None)
        remember_consent(client, member, scope)
    elif consent_needed(client, member, scope, prompts):
        if prompts == ["none"]:
            error = ConsentRequiredError(redirect_uri=grant.redirect_uri, state=request.args.get("state"))
            return server.handle_error_response(None, error)
        page = render_template(
            "consent.html",
            client=client,
            document_host=urlsplit(client.client_id).netloc if client.described else None,
            to_this_computer=is_loopback_host(urlsplit(grant.redirect_uri).hostname),
            redirect_host=urlsplit(grant.redirect_uri).netloc,
            scopes=[(s, SCOPES[s].consent) for s in scope_to_list(scope) or []],
            lasting=lasting_access(client, scope),
            organization=member.organization,
        )
        return with_policy(page, form_redirects=[grant.redirect_uri])
    return server.create_authorization_response(grant=grant, grant_user=member)


# ---- Token, revocation, introspection, registration and UserInfo -------------------------------


@bp.route("/oauth/token", methods=["POST"])
@csrf.exempt
@client_auth_limit
@limiter.limit(configured_limit("TOKEN_RATE_LIMIT"))
def issue_token() -> Response:
    """The token endpoint (RFC 6749 §3.2): authorization_code and refresh_token grants."""
    return request_body_error(server) or server.create_token_response()


@bp.route("/oauth/revoke", methods=["POST"])
@csrf.exempt
@client_auth_limit
@limiter.limit(configured_limit("TOKEN_RATE_LIMIT"))
def revoke_token() -> Response:
    """Revoke an access or refresh token (RFC 7009)."""
    return request_body_error(server) or server.create_endpoint_response("revocation")


@bp.route("/oauth/introspect", methods=["POST"])
@csrf.exempt
@client_auth_limit
@limiter.limit(configured_limit("TOKEN_RATE_LIMIT"))
def introspect_token() -> Response:
    """Describe a token to the client it was issued to (RFC 7662)."""
    return request_body_error(server) or server.create_endpoint_response("introspection")


@bp.route("/oauth/register", methods=["POST"])
@csrf.exempt
@limiter.limit(configured_limit("REGISTRATION_RATE_LIMIT"))
def register_client_dynamically() -> Response:
    """Dynamic client registration (RFC 7591): MCP clients register themselves."""
    return server.create_endpoint_response("client_registration")


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@require_token("userinfo", USERINFO)
def userinfo(bearer: Bearer) -> Response:
    """OpenID Connect UserInfo (Core §5.3): the claims the token's scope allows."""
    return jsonify(user_info(bearer.member, " ".join(bearer.scope)))


# ---- Discovery ---------------------------------------------------------------------------------


def server_metadata() -> dict[str, Any]:
    """RFC 8414 and OpenID Connect Discovery metadata; both documents are this one."""
    base = issuer()
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/idp",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "registration_endpoint": f"{base}/oauth/register",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "client_id_metadata_document_supported": True,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "name",
            "email",
            "email_verified",
        ],
        "prompt_values_supported": ["none", "login", "consent"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,  # Discovery §3 defaults it to true
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": f"{base}/",
    }


@bp.route("/.well-known/openid-configuration")
@bp.route("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    """Authorization server metadata (RFC 8414 §3, OpenID Connect Discovery §4)."""
    return jsonify(server_metadata())


@bp.route("/.well-known/jwks.json")
def jwks() -> Response:
    """The public signing keys, the retired one included until it is removed."""
    response = jsonify(load_keys().public.as_dict())
    response.cache_control.max_age = 60  # a rotated-in key shows up within a minute
    response.cache_control.public = True
    return response


@bp.route("/.well-known/oauth-protected-resource")
@bp.route("/.well-known/oauth-protected-resource/mcp")
@bp.route("/.well-known/oauth-protected-resource/api")
def protected_resource_metadata() -> Response:
    """Protected resource metadata (RFC 9728 §3): the MCP endpoint's at the root and at /mcp."""
    resource = api_resource() if request.path.endswith("/api") else mcp_resource()
    return jsonify(
        {
            "resource": resource,
            "authorization_servers": [issuer()],
            "scopes_supported": ["todos:read", "todos:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Connected Todos MCP server" if resource == mcp_resource() else "Connected Todos API",
            "resource_documentation": f"{issuer()}/",
        }
    )
