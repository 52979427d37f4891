"""MCP server: the protocol at ``/mcp``, for ChatGPT, Claude and every other MCP client.

Owns the Streamable HTTP transport with JSON responses, in two eras on one endpoint:
- MCP 2026-07-28, stateless: ``server/discover``, the protocol version and client capabilities in
  every request's ``_meta``, the ``Mcp-Method`` and ``Mcp-Name`` headers checked against the body
  (SEP-2243), caching hints on list and read results (SEP-2549), and the request's id on every
  error (SEP-2575);
- MCP 2025-11-25, 2025-06-18 and 2025-03-26, with the ``initialize`` handshake and no sessions.
A request's ``MCP-Protocol-Version`` header picks the era (transport spec, Backward Compatibility).

Every message is checked, and every result built, with the official SDK's models (``mcp_types``),
so ``/mcp`` follows the spec's schemas version by version. The SDK's ASGI server is not mounted:
under gunicorn's threaded workers it would need an event loop beside each worker, for a server
that answers each POST with one JSON body anyway. Also owns the Origin check against DNS
rebinding and the MCP authorization spec's challenge (RFC 9728 resource metadata, RFC 8707).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from mcp_types import HEADER_MISMATCH
from mcp_types import INTERNAL_ERROR
from mcp_types import INVALID_PARAMS
from mcp_types import INVALID_REQUEST
from mcp_types import METHOD_NOT_FOUND
from mcp_types import PARSE_ERROR
from mcp_types import UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.methods import serialize_server_result
from mcp_types.methods import validate_client_request
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from .mcp_tools import TOOLS
from .mcp_tools import UI_EXTENSION
from .mcp_tools import VIEW_URI
from .mcp_tools import tool_error
from .mcp_tools import view_contents
from .mcp_tools import view_resource
from .rules import storable
from .settings import APP_VERSION
from .settings import issuer
from .settings import mcp_resource
from .tokens import MCP
from .tokens import Bearer
from .tokens import BearerError
from .tokens import authenticate_bearer
from .tokens import bearer_challenge
from .tokens import bearer_error_response
from .web import configured_limit
from .web import csrf
from .web import limiter
from .web import parse_json

bp = Blueprint("mcp", __name__)

MODERN_VERSIONS = ("2026-07-28",)
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")  # newest first
VERSION_META = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
MCP_MAX_BODY = 64 * 1024
MCP_SCOPES = "todos:read todos:write"
SERVER_INFO = {"name": "connected-todos", "title": "Connected Todos", "version": APP_VERSION}
INSTRUCTIONS = "Manage the todos of the member's organization. Call list_todos or search to find ids."
# SEP-2549: what a client may cache and for how long. Nothing listed depends on who asks.
CACHE_HINTS = {"ttlMs": 10 * 60 * 1000, "cacheScope": "public"}
CACHEABLE = {"server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list"}
# The HTTP status of each JSON-RPC error on the 2026-07-28 transport.
ERROR_STATUS = {METHOD_NOT_FOUND: 404, INTERNAL_ERROR: 500}


class RpcError(Exception):
    """A JSON-RPC 2.0 error, with the HTTP status the transport answers it with."""

    def __init__(self, code: int, message: str, status: int = 200, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.data = code, message, status, data


def modern_error(code: int, message: str, data: Any = None) -> RpcError:
    """An error of the 2026-07-28 transport: 404 for an unknown method, 400 for the rest."""
    return RpcError(code, message, ERROR_STATUS.get(code, 400), data)


def rpc_response(message_id: Any, result: Any = None, error: RpcError | None = None) -> Response:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": message_id}
    if error:
        body["error"] = {"code": error.code, "message": error.message}
        if error.data is not None:
            body["error"]["data"] = error.data
    else:
        body["result"] = result
    response = jsonify(body)
    response.status_code = error.status if error else 200
    return response


def capabilities() -> dict[str, Any]:
    """What the server offers, the MCP Apps extension included, in every revision (SEP-1865)."""
    return {"tools": {"listChanged": False}, "resources": {}, "prompts": {}, "extensions": {UI_EXTENSION: {}}}


# ---- The transport ------------------------------------------------------------------------------


def mcp_origin_allowed(origin: str) -> bool:
    """A present Origin must be allowed (MCP transports: DNS-rebinding protection)."""
    allowed = current_app.config["MCP_ALLOWED_ORIGINS"]
    return "*" in allowed or origin in allowed or origin == issuer()


def read_rpc_message() -> dict[str, Any]:
    """Parse one JSON-RPC message; batches were removed from MCP in 2025-06-18."""
    try:
        message = parse_json(max_bytes=MCP_MAX_BODY)
    except RequestEntityTooLarge:
        raise RpcError(INVALID_REQUEST, f"The message is larger than {MCP_MAX_BODY} bytes.", 413) from None
    except ValueError as error:
        raise RpcError(PARSE_ERROR, f"Parse error: {error}", 400) from None
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "Batches are not supported; send one message per request.", 400)
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "Invalid request: expected a JSON-RPC 2.0 object.", 400)
    # MCP: a request id is a string or an integer, never null; JSON-RPC answers a bad one with null.
    if "id" in message and type(message["id"]) not in (str, int):
        raise RpcError(INVALID_REQUEST, "Invalid request: id must be a string or an integer.", 400)
    return message


def requested_version(params: Any) -> str | None:
    """The revision a request speaks: its MCP-Protocol-Version header; a request without one that
    carries the 2026-07-28 _meta is a modern request missing its header."""
    if header := request.headers.get("MCP-Protocol-Version"):
        return header
    if isinstance(params, dict) and isinstance(params.get("_meta"), dict) and VERSION_META in params["_meta"]:
        return ""
    return None


@bp.route("/mcp", methods=["POST", "GET", "DELETE"], strict_slashes=True)
@csrf.exempt
@limiter.limit(configured_limit("API_RATE_LIMIT"))
def mcp() -> Response:
    """The MCP server: one JSON-RPC message per POST, answered with JSON."""
    if request.method != "POST":  # no SSE stream and no sessions to end
        return Response(status=405, headers={"Allow": "POST"})
    origin = request.headers.get("Origin")
    if origin and not mcp_origin_allowed(origin):
        return rpc_response(None, error=RpcError(INVALID_REQUEST, f"Origin {origin} is not allowed.", 403))
    try:
        bearer = authenticate_bearer(MCP, None)
    except BearerError as error:
        error.scope = MCP_SCOPES
        return bearer_error_response(error, mcp_resource())
    try:
        message = read_rpc_message()
    except RpcError as error:
        return rpc_response(None, error=error)
    params = message.get("params", {})
    version = requested_version(params)
    if "id" not in message:  # a notification, or a response to us
        return Response(status=202)
    message_id, method = message["id"], message.get("method")
    try:
        if not isinstance(method, str) or not isinstance(params, dict):
            raise RpcError(INVALID_REQUEST, "Invalid request: method must be a string and params an object.", 400)
        if not storable(params):  # checked here, not while parsing, so that the error keeps the id
            raise RpcError(INVALID_PARAMS, "Invalid params: text must be valid UTF-8, without NUL characters.", 400)
        if version is None or version in LEGACY_VERSIONS:
            return legacy(message_id, method, params, version or "2025-03-26", bearer)
        return modern(message_id, method, params, version, bearer)
    except RpcError as error:
        return rpc_response(message_id, error=error)


# ---- MCP 2025-11-25, 2025-06-18 and 2025-03-26 --------------------------------------------------


def legacy(message_id: Any, method: str, params: dict[str, Any], version: str, bearer: Bearer) -> Response:
    """A request of the initialize-based revisions; errors keep JSON-RPC's HTTP 200."""
    try:
        validate_client_request(method, version, params)
    except KeyError:
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}") from None
    except ValidationError as error:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {first_problem(error)}") from None
    if method != "initialize" and method not in ANSWERS:
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
    if method == "initialize":
        requested = params.get("protocolVersion")
        result = {
            "protocolVersion": requested if requested in LEGACY_VERSIONS else LEGACY_VERSIONS[0],
            "capabilities": capabilities(),
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }
        serialized = serialize_server_result(method, version, result)
        # The 2025 models predate SEP-2133's capabilities.extensions, which their schema allows.
        serialized["capabilities"]["extensions"] = capabilities()["extensions"]
        return rpc_response(message_id, serialized)
    if method == "resources/read" and params.get("uri") != VIEW_URI:
        raise RpcError(-32002, "Resource not found", data={"uri": params.get("uri")})  # 2025-11-25's code
    result = ANSWERS[method](params, bearer)
    status = 403 if result.pop("_insufficient_scope", False) else 200
    response = rpc_response(message_id, serialize_server_result(method, version, result))
    return challenge(response, result) if status == 403 else response


# ---- MCP 2026-07-28 -----------------------------------------------------------------------------


def modern(message_id: Any, method: str, params: dict[str, Any], version: str, bearer: Bearer) -> Response:
    """A stateless request: _meta, then the headers against the body, then the version (SEP-2575's
    order), then the method; errors carry their own HTTP status."""
    meta = params.get("_meta")
    if not isinstance(meta, dict) or VERSION_META not in meta or CAPABILITIES_META not in meta:
        raise modern_error(INVALID_PARAMS, f"params._meta must carry {VERSION_META} and {CAPABILITIES_META}.")
    check_headers(method, params, version)
    if meta[VERSION_META] not in MODERN_VERSIONS:
        data = {"supported": list(MODERN_VERSIONS), "requested": meta[VERSION_META]}
        raise modern_error(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version.", data)
    try:
        validate_client_request(method, version, params)
    except KeyError:
        raise modern_error(METHOD_NOT_FOUND, f"Method not found: {method}") from None
    except ValidationError as error:
        raise modern_error(INVALID_PARAMS, f"Invalid params: {first_problem(error)}") from None
    if method not in ANSWERS:
        raise modern_error(METHOD_NOT_FOUND, f"Method not found: {method}")
    if method == "tools/call" and params["name"] not in TOOLS:
        raise modern_error(INVALID_PARAMS, f"Unknown tool {params['name']!r}. Tools: {', '.join(TOOLS)}.")
    if method == "resources/read" and params["uri"] != VIEW_URI:
        raise modern_error(INVALID_PARAMS, "Resource not found", {"uri": params["uri"]})  # SEP-2164
    result = ANSWERS[method](params, bearer)
    insufficient = result.pop("_insufficient_scope", False)
    result["resultType"] = "complete"
    result["_meta"] = {**result.get("_meta", {}), SERVER_INFO_META: SERVER_INFO}
    if method in CACHEABLE or method == "resources/read":
        result.update(CACHE_HINTS)
    response = rpc_response(message_id, serialize_server_result(method, version, result))
    return challenge(response, result) if insufficient else response


def check_headers(method: str, params: dict[str, Any], version: str) -> None:
    """SEP-2243: the routing headers must say what the body says (names any case, values exact)."""
    if version != params["_meta"][VERSION_META]:
        raise modern_error(HEADER_MISMATCH, "MCP-Protocol-Version differs from params._meta.")
    if header_value("Mcp-Method") != method:
        raise modern_error(HEADER_MISMATCH, "Mcp-Method is missing or differs from the request's method.")
    named = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
    if named and header_value("Mcp-Name") != params.get(named):
        raise modern_error(HEADER_MISMATCH, f"Mcp-Name is missing or differs from params.{named}.")


def header_value(name: str) -> str | None:
    """A routing header's value, trimmed, with SEP-2243's =?base64?…?= form decoded; HeaderMismatch
    when that form is malformed."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    value = raw.strip(" \t")
    if value.startswith("=?base64?") and value.endswith("?="):
        encoded = value[len("=?base64?") : -len("?=")]
        try:
            decoded = base64.b64decode(encoded, validate=True)
            if base64.b64encode(decoded).decode() != encoded:
                raise ValueError("not canonical")
            return decoded.decode()
        except (binascii.Error, ValueError):
            raise modern_error(HEADER_MISMATCH, f"{name} is not valid base64.") from None
    return value


# ---- Answers, the same in both eras -------------------------------------------------------------


def discover(params: dict[str, Any], bearer: Bearer) -> dict[str, Any]:
    return {"supportedVersions": list(MODERN_VERSIONS), "capabilities": capabilities(), "instructions": INSTRUCTIONS}


def call_tool(params: dict[str, Any], bearer: Bearer) -> dict[str, Any]:
    """Run a tool with the REST API's rules; a bad argument is a tool error the model can fix."""
    tool = TOOLS.get(params.get("name"))  # type: ignore[arg-type]
    if tool is None:
        raise RpcError(INVALID_PARAMS, f"Unknown tool {params.get('name')!r}. Tools: {', '.join(TOOLS)}.")
    arguments = params.get("arguments") or {}
    if tool.scope not in bearer.scope:
        error = BearerError("insufficient_scope", f"{tool.name} needs the {tool.scope} scope.", 403, tool.scope)
        result = tool_error(error.description)
        result["_meta"] = {"mcp/www_authenticate": [bearer_challenge(error, mcp_resource())]}
        return {**result, "_insufficient_scope": True}
    if unknown := sorted(set(arguments) - set(tool.input_properties)):
        takes = ", ".join(tool.input_properties) or "no arguments"
        return tool_error(f"Unknown argument {unknown[0]!r}. {tool.name} takes: {takes}.")
    return tool.call(bearer, arguments)


# What the server answers; a method a revision has that is not here (prompts/get, completion,
# logging, subscriptions) is not found. The results are the same in both eras.
ANSWERS: dict[str, Callable[[dict[str, Any], Bearer], dict[str, Any]]] = {
    "ping": lambda params, bearer: {},
    "server/discover": discover,
    "tools/list": lambda params, bearer: {"tools": [tool.describe() for tool in TOOLS.values()]},
    "tools/call": call_tool,
    "resources/list": lambda params, bearer: {"resources": [view_resource()]},
    "resources/read": lambda params, bearer: {"contents": [view_contents()]},
    "resources/templates/list": lambda params, bearer: {"resourceTemplates": []},
    "prompts/list": lambda params, bearer: {"prompts": []},
}


def challenge(response: Response, result: dict[str, Any]) -> Response:
    """A tool call beyond the token's scope: 403 with the RFC 6750 challenge the result carries."""
    response.status_code = 403
    response.headers["WWW-Authenticate"] = result["_meta"]["mcp/www_authenticate"][0]
    return response


def first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"{where}: {problem['msg']}" if where else problem["msg"]
