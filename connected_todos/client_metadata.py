"""Client metadata: apps whose client_id is the URL of a document that describes them.

Owns Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-02, and the MCP
authorization spec's Client ID Metadata Documents): fetching a document through ``outbound`` (§5,
§8.6, §8.7), what it must and must not say (§4, §4.1, RFC 7591 §2), keeping the last valid one
for as long as HTTP caching allows (§5.2, RFC 9111) in a registry whose unconnected entries are
bounded, an operator's pinned copy for a host that turns servers away, and the app's public keys
for private_key_jwt (RFC 7591 §2 jwks and jwks_uri), fetched with the same guards. What an app's
name, redirect URIs and scope may be is ``rules.check_client_metadata``, as for every other app.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from joserfc.jwk import KeySet

from .models import AuthorizationCode
from .models import Client
from .models import ClientMetadataDocument
from .models import Consent
from .models import Grant
from .models import db
from .models import utcnow
from .outbound import FetchError
from .outbound import fetch_json
from .registry import audit
from .registry import query_client as query_registered
from .rules import DEFAULT_CLIENT_SCOPE
from .rules import GRANT_TYPES
from .rules import MAX_REDIRECT_URIS
from .rules import SCOPES
from .rules import URI_MAX
from .rules import ClientMetadataError
from .rules import check_client_metadata
from .rules import is_metadata_url
from .rules import link_problem
from .rules import metadata_url_problem
from .rules import normalize_scope
from .web import log

DOCUMENT_MAX_BYTES = 5 * 1024  # §8.7's recommended limit
JWKS_MAX_BYTES = 16 * 1024  # a key set: room for several RSA keys during a rotation
MIN_FRESHNESS = 60  # §5.2 lets a server set bounds: fetch a document at most once a minute
UNCONNECTED_KEPT = 500  # described apps no member has connected yet; the oldest beyond this go
ETAG = re.compile(r'(W/)?"[\x21\x23-\x7e]{0,190}"')  # fits its column of 200
AUTH_METHODS = ("none", "private_key_jwt")
PRIVATE_KEY_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
PUBLIC_KEY_TYPES = {"RSA", "EC", "OKP"}


class MetadataDocumentError(Exception):
    """An app's metadata document cannot be used; ``problem`` completes "The document at URL …"."""

    def __init__(self, url: str, problem: str, fetch_failed: bool = False) -> None:
        self.url, self.problem, self.fetch_failed = url, problem, fetch_failed
        super().__init__(f"The client metadata document at {url} {problem}.")


@dataclass(frozen=True)
class Description:
    """What a valid document says about its app, in the registry's terms."""

    name: str
    redirect_uris: list[str]
    scope: str
    grant_types: list[str]
    token_endpoint_auth_method: str
    links: dict[str, str]


# ---- What a document must say (§4, §4.1) -------------------------------------------------------


def describe(url: str, document: dict[str, Any]) -> Description:
    """Check a document against its URL; MetadataDocumentError says what is wrong."""

    def wrong(problem: str) -> MetadataDocumentError:
        return MetadataDocumentError(url, problem)

    if document.get("client_id") != url:  # §4: a plain string comparison, nothing normalized
        raise wrong(f"names the client_id {str(document.get('client_id'))[:URI_MAX]!r}, not its own URL")
    name, uris = document.get("client_name"), document.get("redirect_uris")
    if not isinstance(name, str):
        raise wrong("has no client_name")
    if not isinstance(uris, list) or not 0 < len(uris) <= MAX_REDIRECT_URIS or not all(type(u) is str for u in uris):
        raise wrong(f"must list one to {MAX_REDIRECT_URIS} redirect_uris")
    if "client_secret" in document or "client_secret_expires_at" in document:
        raise wrong("carries a client_secret, which a metadata document must not (§4.1)")
    method = document.get("token_endpoint_auth_method", "none")  # §4.1 rules out every secret
    if method not in AUTH_METHODS:
        raise wrong(f"names the token_endpoint_auth_method {str(method)[:40]!r}; use none or private_key_jwt (§4.1)")
    grant_types = document.get("grant_types", ["authorization_code"])  # RFC 7591 §2's default
    if not is_list_of_text(grant_types) or "authorization_code" not in grant_types:
        raise wrong("must allow the authorization_code grant, in a list of grant types")
    response_types = document.get("response_types", ["code"])
    if not is_list_of_text(response_types) or "code" not in response_types:
        raise wrong("must allow the code response type, in a list of response types")
    check_keys(document, method, wrong)
    links = {key: document[key] for key in ("client_uri", "logo_uri") if document.get(key) is not None}
    for key, link in links.items():
        if problem := link_problem(link):
            raise wrong(f"has a {key} that {problem}")
    # A document serves every server it is sent to, so scopes this one does not know are skipped.
    scope = document.get("scope")
    known = [s for s in normalize_scope(scope).split() if s in SCOPES] if isinstance(scope, str) else []
    description = Description(
        name=name.strip(),
        redirect_uris=uris,
        scope=" ".join(known) or DEFAULT_CLIENT_SCOPE,
        grant_types=[g for g in GRANT_TYPES if g in grant_types],
        token_endpoint_auth_method=method,
        links=links,
    )
    try:
        check_client_metadata(description.name, description.redirect_uris, description.scope)
    except ClientMetadataError as error:
        raise wrong(f"is not acceptable: {error.message}") from None
    return description


def is_list_of_text(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def check_keys(document: dict[str, Any], method: str, wrong: Any) -> None:
    """RFC 7591 §2: jwks or jwks_uri, never both; private_key_jwt needs one of them."""
    if "jwks" in document and "jwks_uri" in document:
        raise wrong("has both jwks and jwks_uri (RFC 7591 §2)")
    if method == "private_key_jwt" and not ("jwks" in document or "jwks_uri" in document):
        raise wrong("names private_key_jwt but has neither jwks nor jwks_uri")
    if "jwks" in document:
        try:
            public_keys(document["jwks"])
        except ValueError as error:
            raise wrong(f"has jwks that {error}") from None
    if "jwks_uri" in document:
        uri = document["jwks_uri"]
        if not isinstance(uri, str) or not is_metadata_url(uri) or metadata_url_problem(uri.split("?")[0]):
            raise wrong("has a jwks_uri that is not an https URL")


def public_keys(jwks: Any) -> KeySet:
    """A key set of public, asymmetric keys only; ValueError says what else it holds. A shared
    secret ("oct") or private key material published in a document is anybody's (§4.1)."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise ValueError("are not a JSON Web Key Set")
    if any(k.get("kty") not in PUBLIC_KEY_TYPES for k in keys):
        raise ValueError("hold a key that is not an RSA, EC or OKP public key")
    if any(PRIVATE_KEY_MEMBERS & k.keys() for k in keys):
        raise ValueError("hold private key material")
    try:
        return KeySet.import_key_set({"keys": keys})
    except Exception:  # joserfc raises what a key's fields make it raise (KeyError for a curve, …)
        raise ValueError("hold a key that cannot be read") from None


# ---- Fetching and keeping (§5, §5.2) -----------------------------------------------------------


def described_client(url: str) -> Client:
    """The app a client_id URL names, from a fresh copy of its document: kept, or fetched now.
    This is how /idp meets an app; MetadataDocumentError says why it cannot."""
    if problem := metadata_url_problem(url):
        raise MetadataDocumentError(url, f"cannot be used: the client_id {problem}")
    client = query_registered(url)
    if client is not None and client.blocked_at is not None:
        raise MetadataDocumentError(url, "names an app that an operator has blocked")
    if client is not None and client.document is not None and client.document.is_fresh():
        return client
    return refresh(url, client)


def query_client(client_id: str) -> Client | None:
    """Authlib's lookup of a client. A described app is used while its document is fresh and
    fetched again when it is not; until that succeeds the app is unknown (§5.1). Only apps the
    registry already holds are fetched here: a new URL is fetched at /idp alone."""
    client = query_registered(client_id)
    if client is None or not client.described or client.document is None:
        return client
    if client.blocked_at is not None or attempted_lately(client.document.attempted_at):
        return None if client.blocked_at or not client.document.is_fresh() else client
    if client.document.is_fresh():
        return client
    try:
        return refresh(client_id, client)
    except MetadataDocumentError as error:
        log.warning("%s", error)
        return None


def attempted_lately(attempted_at: Any) -> bool:
    """Whether a fetch was tried within the last minute: the token endpoint, which anyone can call
    with an app's client_id, tries a failing host no more often than that."""
    return attempted_at is not None and utcnow() - attempted_at < timedelta(seconds=MIN_FRESHNESS)


def refresh(url: str, client: Client | None) -> Client:
    """Fetch a document (revalidating the copy kept, if any), check it and keep it."""
    kept = client.document if client is not None else None
    if kept is not None:
        kept.attempted_at = utcnow()
    db.session.commit()  # no transaction stays open while another host is asked
    try:
        fetched = fetch_json(
            url,
            max_bytes=DOCUMENT_MAX_BYTES,
            etag=kept.etag if kept is not None else None,
            allow_loopback=current_app.config["CIMD_ALLOW_LOOPBACK"],
        )
    except FetchError as error:
        raise MetadataDocumentError(url, f"could not be fetched: {error}", fetch_failed=True) from None
    document = fetched.document if fetched.document is not None else kept.document  # 304: unchanged
    description = describe(url, document)
    fresh_until = utcnow() + timedelta(seconds=max(fetched.fresh_for, MIN_FRESHNESS))
    etag = fetched.etag if fetched.etag and ETAG.fullmatch(fetched.etag) else None  # RFC 9110 §8.8.3, sized
    return keep(url, description, document, client, fresh_until=fresh_until, etag=etag)


def keep(
    url: str,
    description: Description,
    document: dict[str, Any],
    client: Client | None,
    *,
    fresh_until: Any = None,
    etag: str | None = None,
    pinned: bool = False,
) -> Client:
    """Keep a valid document, and the app as it describes itself, in the registry."""
    new = client is None
    if client is None:
        client = Client(client_id=url, self_registered=True)
        db.session.add(client)
    if client.document is None:
        client.document = ClientMetadataDocument(document=document)
    kept = client.document
    if kept.document.get("jwks_uri") != document.get("jwks_uri"):
        kept.jwks = kept.jwks_fresh_until = kept.jwks_attempted_at = None  # the keys come from elsewhere now
    changed = (client.redirect_uris, client.token_endpoint_auth_method, kept.document.get("jwks_uri")) != (
        description.redirect_uris,
        description.token_endpoint_auth_method,
        document.get("jwks_uri"),
    )
    if not new and changed:  # CIMD §8.4: where it sends codes, or how it proves itself, changed
        db.session.execute(sa.delete(Consent).where(Consent.client_id == client.id))
    client.client_secret_hash = client.pending_secret_hash = None  # a document's app holds no secret
    client.name, client.redirect_uris, client.scope = description.name, description.redirect_uris, description.scope
    client.grant_types = description.grant_types
    client.token_endpoint_auth_method = description.token_endpoint_auth_method
    client.client_uri, client.logo_uri = description.links.get("client_uri"), description.links.get("logo_uri")
    kept.document, kept.fetched_at, kept.etag, kept.pinned = document, utcnow(), etag, pinned
    kept.fresh_until = fresh_until or utcnow()
    # Not audited here: anyone can make /idp fetch a document. The audit log records the app once
    # a member allows it (consent_given), and an operator's pin.
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # another worker kept it first: theirs is as fresh
        db.session.rollback()
        return query_registered(url)
    if new:
        forget_unconnected()
    return client


def forget_unconnected() -> None:
    """Bound the registry: anyone can send /idp a URL, so described apps that no member has
    connected (no consent, code or grant) and no operator pinned are kept up to a number."""
    connected = sa.union(
        sa.select(Consent.client_id), sa.select(AuthorizationCode.client_id), sa.select(Grant.client_id)
    )
    unconnected = (
        sa.select(Client.id)
        .join(ClientMetadataDocument)
        .where(~ClientMetadataDocument.pinned, Client.blocked_at.is_(None), Client.id.not_in(connected))
        .order_by(Client.id.desc())
        .offset(UNCONNECTED_KEPT)
    )
    if ids := db.session.scalars(unconnected).all():
        # The condition again, in the DELETE itself: an app connected a moment ago stays.
        db.session.execute(sa.delete(Client).where(Client.id.in_(ids), Client.id.not_in(connected)))
        db.session.commit()


def pin(url: str, document: Any, by: str) -> Client:
    """An operator's copy of a document the server cannot fetch (a host behind bot protection).
    It is checked like a fetched one, and used until unpinned."""
    if problem := metadata_url_problem(url):
        raise MetadataDocumentError(url, f"cannot be used: the client_id {problem}")
    if not isinstance(document, dict):
        raise MetadataDocumentError(url, "must be a JSON object")
    client = keep(url, describe(url, document), document, query_registered(url), pinned=True)
    audit("client_metadata_pinned", client_id=url, actor=by, detail=client.name)
    db.session.commit()
    return client


def unpin(client: Client, by: str) -> None:
    """Fetch the app's document from its URL again, from the next request on."""
    if client.document is not None and client.document.pinned:
        client.document.pinned = False
        client.document.fresh_until = utcnow()
        audit("client_metadata_unpinned", client_id=client.client_id, actor=by, detail=client.name)
        db.session.commit()


# ---- The app's keys, for private_key_jwt -------------------------------------------------------


def client_keys(client: Client, unknown_kid: bool = False) -> KeySet:
    """The public keys an app signs its assertions with: inline in its document, or from its
    jwks_uri, kept as HTTP caching allows. A kid not among them fetches the set again, at most
    once a minute, so that a key the app has just rotated in is found."""
    kept = client.document
    if kept is None:
        return KeySet([])
    if "jwks" in kept.document:
        return public_keys(kept.document["jwks"])
    now = utcnow()
    fresh = kept.jwks is not None and kept.jwks_fresh_until and kept.jwks_fresh_until > now
    if (fresh and not unknown_kid) or attempted_lately(kept.jwks_attempted_at):
        if kept.jwks is None:
            raise FetchError("its last fetch failed, under a minute ago")
        return public_keys(kept.jwks)
    kept.jwks_attempted_at = now
    db.session.commit()  # the attempt counts even if it fails, and no transaction waits on the fetch
    fetched = fetch_json(
        kept.document["jwks_uri"], max_bytes=JWKS_MAX_BYTES, allow_loopback=current_app.config["CIMD_ALLOW_LOOPBACK"]
    )  # FetchError goes to the caller, which refuses the assertion
    keys = public_keys(fetched.document)  # ValueError likewise: nothing invalid is kept
    kept.jwks, kept.jwks_fetched_at = fetched.document, now
    kept.jwks_fresh_until = now + timedelta(seconds=max(fetched.fresh_for, MIN_FRESHNESS))
    db.session.commit()
    return keys
