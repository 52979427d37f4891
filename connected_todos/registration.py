"""Registration: apps that register themselves, as MCP clients do (RFC 7591).

Owns the dynamic client registration endpoint, on Authlib's ``ClientRegistrationEndpoint``: the
shape of the metadata a client sends (RFC 7591 §2), the initial access token that can close
registration (§3), and the answer (§3.2). What the metadata may say (names, redirect URIs, scopes)
is checked by the same rule as every other registration, in ``registry.register_client``.
"""

from __future__ import annotations

import secrets
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import JsonPayload
from authlib.oauth2.rfc6749 import JsonRequest
from authlib.oauth2.rfc7591 import ClientMetadataClaims
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError
from authlib.oauth2.rfc7591.errors import InvalidRedirectURIError
from flask import current_app
from flask import request

from .models import Client
from .models import new_secret
from .models import sha256
from .registry import new_client_id
from .registry import register_client
from .rules import DEFAULT_CLIENT_SCOPE
from .rules import GRANT_TYPES
from .rules import MAX_REDIRECT_URIS
from .rules import ClientMetadataError
from .rules import error_text
from .rules import link_problem
from .rules import normalize_scope
from .tokens import BearerError
from .tokens import bearer_challenge
from .web import read_json

REGISTRATION_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]


class ClientMetadata(ClientMetadataClaims):
    """RFC 7591 §2 metadata, limited to what this server stores: anything else is ignored (§2),
    and never echoed back as if it were registered (§3.2.1). Omitted fields get §2's defaults."""

    REGISTERED_CLAIMS = (
        "redirect_uris",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "client_name",
        "client_uri",
        "logo_uri",
        "scope",
    )

    @classmethod
    def get_claims_options(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        return {}  # overridden: the checks below say what is wrong in words a developer can act on

    def validate(self, now: Any = None, leeway: int = 0) -> None:
        for key in self.REGISTERED_CLAIMS:
            getattr(self, f"validate_{key}")()

    def validate_redirect_uris(self) -> None:
        uris = self.get("redirect_uris")
        if (
            not isinstance(uris, list)
            or not 0 < len(uris) <= MAX_REDIRECT_URIS
            or not all(isinstance(u, str) for u in uris)
        ):
            raise InvalidRedirectURIError(f"redirect_uris must be a list of one to {MAX_REDIRECT_URIS} URIs.")

    def validate_token_endpoint_auth_method(self) -> None:
        method = self.setdefault("token_endpoint_auth_method", "client_secret_basic")  # §2's default
        if method not in REGISTRATION_AUTH_METHODS:
            raise InvalidClientMetadataError(
                f"token_endpoint_auth_method must be one of {', '.join(REGISTRATION_AUTH_METHODS)}."
            )

    def validate_grant_types(self) -> None:
        grant_types = self.setdefault("grant_types", ["authorization_code"])
        if (
            not isinstance(grant_types, list)
            or not all(isinstance(g, str) for g in grant_types)
            or not set(grant_types) <= set(GRANT_TYPES)
            or "authorization_code" not in grant_types
        ):
            raise InvalidClientMetadataError("grant_types may be authorization_code and refresh_token.")

    def validate_response_types(self) -> None:
        if self.setdefault("response_types", ["code"]) != ["code"]:
            raise InvalidClientMetadataError("response_types must list only code.")

    def validate_client_name(self) -> None:
        if not isinstance(self.setdefault("client_name", "An unnamed app"), str):
            raise InvalidClientMetadataError("client_name must be text.")
        self["client_name"] = self["client_name"].strip()

    def validate_client_uri(self) -> None:
        self.validate_link("client_uri")

    def validate_logo_uri(self) -> None:
        self.validate_link("logo_uri")

    def validate_link(self, key: str) -> None:
        if self.get(key) is None:
            self.pop(key, None)
        elif problem := link_problem(self[key]):
            raise InvalidClientMetadataError(error_text(f"{key} {problem}."))

    def validate_scope(self) -> None:
        scope = self.get("scope")
        self["scope"] = normalize_scope(scope) if isinstance(scope, str) else DEFAULT_CLIENT_SCOPE


class BodyPayload(JsonPayload):
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class InitialAccessTokenError(OAuth2Error):
    """RFC 7591 §3: registration is closed, and the request has no valid initial access token,
    which it presents as an RFC 6750 bearer token; the answer carries RFC 6750 §3's challenge."""

    error = "invalid_token"
    status_code = 401

    def __init__(self, presented: bool) -> None:
        if presented:
            super().__init__("The initial access token is not valid.")
            self.challenge = bearer_challenge(BearerError("invalid_token", self.description), None)
        else:
            super().__init__("Registration needs an initial access token from the operator.")
            self.challenge = bearer_challenge(BearerError(None), None)

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("WWW-Authenticate", self.challenge)]


class Registration(ClientRegistrationEndpoint):
    """Dynamic client registration (RFC 7591 §3), open unless INITIAL_ACCESS_TOKEN is set."""

    def __init__(self, server: Any) -> None:
        super().__init__(server, claims_classes=[ClientMetadata])

    def create_endpoint_request(self, _request: Any) -> JsonRequest:
        """Overridden to read the body with the app's JSON reader: any content type, and no text a
        column could not store."""
        oauth_request = JsonRequest(request.method, request.url, request.headers)
        try:
            oauth_request.payload = BodyPayload(read_json())
        except ValueError as error:
            oauth_request.payload = BodyPayload(error)
        return oauth_request

    def authenticate_token(self, oauth_request: JsonRequest) -> bool:
        expected = current_app.config["INITIAL_ACCESS_TOKEN"]
        if not expected:
            return True  # open registration, which ChatGPT, Claude and other MCP clients rely on
        scheme, _, token = oauth_request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if token and secrets.compare_digest(sha256(token), sha256(expected)):
            return True
        raise InitialAccessTokenError(presented=bool(token))

    def extract_client_metadata(self, oauth_request: JsonRequest) -> dict[str, Any]:
        """Overridden to answer a body that is not a JSON object, or has no redirect URIs, with
        RFC 7591 §3.2.2's errors rather than a generic invalid_request."""
        data = oauth_request.payload.data
        if isinstance(data, ValueError):
            raise InvalidClientMetadataError(error_text(str(data)))
        if not isinstance(data, dict):
            raise InvalidClientMetadataError("The body must be a JSON object.")
        if not data:  # Authlib would answer invalid_request; an empty object lacks its redirect URIs
            ClientMetadata(data, {}).validate_redirect_uris()
        return super().extract_client_metadata(oauth_request)

    def get_server_metadata(self) -> dict[str, Any]:
        return {}  # the metadata rules live in ClientMetadata

    def generate_client_id(self, oauth_request: JsonRequest) -> str:
        return new_client_id()

    def generate_client_secret(self, oauth_request: JsonRequest) -> str | None:
        # A public client ("none") gets no secret; a secret is 256 bits, shown once (RFC 7591 §3.2.1).
        return None if oauth_request.payload.data.get("token_endpoint_auth_method") == "none" else new_secret()

    def generate_client_info(self, oauth_request: JsonRequest) -> dict[str, Any]:
        info = super().generate_client_info(oauth_request)
        if info["client_secret"] is None:
            del info["client_secret"], info["client_secret_expires_at"]  # §3.2.1: only with a secret
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], oauth_request: Any) -> Client:
        try:
            client, _ = register_client(
                client_metadata["client_name"],
                client_metadata["redirect_uris"],
                public="client_secret" not in client_info,
                scope=client_metadata["scope"],
                grant_types=client_metadata["grant_types"],
                self_registered=True,
                links={key: client_metadata[key] for key in ("client_uri", "logo_uri") if key in client_metadata},
                client_id=client_info["client_id"],
                secret=client_info.get("client_secret"),
            )
        except ClientMetadataError as error:
            if error.field == "redirect_uris":
                raise InvalidRedirectURIError(error_text(error.message)) from None
            raise InvalidClientMetadataError(error_text(error.message)) from None
        return client
