"""MCP server: the todo tools for ChatGPT, Claude and other MCP clients, at ``/mcp``.

Owns the Streamable HTTP transport with JSON responses (MCP 2025-11-25, 2025-06-18 and
2025-03-26), JSON-RPC 2.0 framing and its errors, the Origin check against DNS rebinding, the
bearer challenge of the MCP authorization spec (RFC 9728 resource metadata, RFC 8707 audience),
and the tools, which share the REST API's rules: each needs the scope of the operation it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request

from .rules import scope_for
from .rules import storable
from .settings import APP_VERSION
from .todos import CURSOR_SCHEMA
from .todos import ME_SCHEMA
from .todos import PAGE_DEFAULT
from .todos import PAGE_MAX
from .todos import TODO_PROPERTIES
from .todos import TODO_SCHEMA
from .todos import TodoError
from .todos import create_todo
from .todos import delete_todo
from .todos import list_todos
from .todos import me_json
from .todos import todo_json
from .todos import todo_page_json
from .todos import todo_page_schema
from .todos import update_todo
from .tokens import MCP
from .tokens import Bearer
from .tokens import BearerError
from .tokens import authenticate_bearer
from .tokens import bearer_challenge
from .tokens import bearer_error_response
from .web import configured_limit
from .web import csrf
from .web import issuer
from .web import limiter
from .web import mcp_resource
from .web import parse_json

bp = Blueprint("mcp", __name__)

MCP_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")  # newest first
MCP_MAX_BODY = 64 * 1024
MCP_SCOPES = "todos:read todos:write"
ID_SCHEMA = {"type": "integer", "description": "The todo's id, from list_todos."}


@dataclass
class Tool:
    """An MCP tool: its description, schemas and annotations, the API operation whose scope it
    needs, and the function that runs it."""

    name: str
    title: str
    description: str
    operation: str
    input_properties: dict[str, Any]
    required: list[str]
    output_schema: dict[str, Any]
    annotations: dict[str, bool]
    run: Callable[[Bearer, dict[str, Any]], dict[str, Any]]

    @property
    def scope(self) -> str:
        return scope_for(self.operation)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": self.input_properties,
                "required": self.required,
                "additionalProperties": False,
            },
            "outputSchema": self.output_schema,
            "annotations": {"title": self.title, **self.annotations, "openWorldHint": False},
        }


def todo_id_argument(arguments: dict[str, Any]) -> int:
    todo_id = arguments.get("id")
    if not isinstance(todo_id, int) or isinstance(todo_id, bool):
        raise TodoError("id must be the integer id of a todo; call list_todos to find it.", "id")
    return todo_id


def run_list_todos(bearer: Bearer, arguments: dict[str, Any]) -> dict[str, Any]:
    completed, limit = arguments.get("completed"), arguments.get("limit", PAGE_DEFAULT)
    if completed is not None and not isinstance(completed, bool):
        raise TodoError("completed must be true, false or left out.", "completed")
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TodoError(f"limit must be an integer from 1 to {PAGE_MAX}.", "limit")
    cursor = arguments.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise TodoError("cursor must be the next_cursor string of the previous page.", "cursor")
    return todo_page_json(*list_todos(bearer.member, completed, limit, cursor))


def run_update_todo(bearer: Bearer, arguments: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in arguments.items() if k != "id"}
    if not fields:
        raise TodoError("Give at least one of title, notes, completed or due_date to change.")
    return todo_json(update_todo(bearer.member, todo_id_argument(arguments), fields, bearer.client))


def run_complete_todo(bearer: Bearer, arguments: dict[str, Any]) -> dict[str, Any]:
    return todo_json(update_todo(bearer.member, todo_id_argument(arguments), {"completed": True}, bearer.client))


def run_delete_todo(bearer: Bearer, arguments: dict[str, Any]) -> dict[str, Any]:
    todo_id = todo_id_argument(arguments)
    delete_todo(bearer.member, todo_id)
    return {"deleted": True, "id": todo_id}


READ = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True}
TOOLS = {
    tool.name: tool
    for tool in [
        Tool(
            "whoami",
            "Who am I",
            "The member this connection acts for, and their organization.",
            "getMe",
            {},
            [],
            ME_SCHEMA,
            READ,
            lambda bearer, _: me_json(bearer.member),
        ),
        Tool(
            "list_todos",
            "List todos",
            "List the organization's todos, newest first. Pass next_cursor back as cursor for more.",
            "listTodos",
            {
                "completed": {"type": "boolean", "description": "Only completed (true) or open (false) todos."},
                "limit": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
                "cursor": CURSOR_SCHEMA,
            },
            [],
            todo_page_schema(TODO_SCHEMA),
            READ,
            run_list_todos,
        ),
        Tool(
            "add_todo",
            "Add a todo",
            "Create a todo in the organization.",
            "createTodo",
            TODO_PROPERTIES,
            ["title"],
            TODO_SCHEMA,
            {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False},
            lambda bearer, arguments: todo_json(create_todo(bearer.member, arguments, bearer.client)),
        ),
        Tool(
            "update_todo",
            "Update a todo",
            "Change a todo's title, notes, due date or completion; send only what changes.",
            "updateTodo",
            {"id": ID_SCHEMA, **TODO_PROPERTIES},
            ["id"],
            TODO_SCHEMA,
            {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True},
            run_update_todo,
        ),
        Tool(
            "complete_todo",
            "Complete a todo",
            "Mark a todo as done.",
            "updateTodo",
            {"id": ID_SCHEMA},
            ["id"],
            TODO_SCHEMA,
            {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True},
            run_complete_todo,
        ),
        Tool(
            "delete_todo",
            "Delete a todo",
            "Delete a todo for good.",
            "deleteTodo",
            {"id": ID_SCHEMA},
            ["id"],
            {
                "type": "object",
                "required": ["deleted", "id"],
                "properties": {"deleted": {"type": "boolean"}, "id": {"type": "integer"}},
            },
            {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True},
            run_delete_todo,
        ),
    ]
}


class RpcError(Exception):
    """A JSON-RPC 2.0 error, with the HTTP status the transport answers it with."""

    def __init__(self, code: int, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def rpc_response(message_id: Any, result: Any = None, error: RpcError | None = None) -> Response:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": message_id}
    if error:
        body["error"] = {"code": error.code, "message": error.message}
    else:
        body["result"] = result
    response = jsonify(body)
    response.status_code = error.status if error else 200
    return response


def mcp_origin_allowed(origin: str) -> bool:
    """A present Origin must be allowed (MCP transports: DNS-rebinding protection)."""
    allowed = current_app.config["MCP_ALLOWED_ORIGINS"]
    return "*" in allowed or origin in allowed or origin == issuer()


def read_rpc_message() -> dict[str, Any]:
    """Parse one JSON-RPC message; batches were removed from MCP in 2025-06-18."""
    if (request.content_length or 0) > MCP_MAX_BODY:
        raise RpcError(-32600, f"The message is larger than {MCP_MAX_BODY} bytes.", 413)
    try:
        message = parse_json()
    except ValueError as error:
        raise RpcError(-32700, f"Parse error: {error}", 400) from None
    if isinstance(message, list):
        raise RpcError(-32600, "Batches are not supported; send one message per request.", 400)
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(-32600, "Invalid request: expected a JSON-RPC 2.0 object.", 400)
    # MCP: a request id is a string or an integer, never null; JSON-RPC answers a bad one with null.
    if "id" in message and type(message["id"]) not in (str, int):
        raise RpcError(-32600, "Invalid request: id must be a string or an integer.", 400)
    return message


@bp.route("/mcp", methods=["POST", "GET", "DELETE"], strict_slashes=True)
@csrf.exempt
@limiter.limit(configured_limit("API_RATE_LIMIT"))
def mcp() -> Response:
    """The MCP server: one JSON-RPC message per POST, answered with JSON."""
    if request.method != "POST":  # no SSE stream and no sessions to end
        return Response(status=405, headers={"Allow": "POST"})
    origin = request.headers.get("Origin")
    if origin and not mcp_origin_allowed(origin):
        return rpc_response(None, error=RpcError(-32600, f"Origin {origin} is not allowed.", 403))
    version = request.headers.get("MCP-Protocol-Version")
    if version and version not in MCP_PROTOCOL_VERSIONS:
        return rpc_response(None, error=RpcError(-32600, f"Unsupported MCP-Protocol-Version {version}.", 400))
    try:
        bearer = authenticate_bearer(MCP, None)
    except BearerError as error:
        error.scope = MCP_SCOPES
        return bearer_error_response(error, mcp_resource())
    try:
        message = read_rpc_message()
    except RpcError as error:
        return rpc_response(None, error=error)
    if "id" not in message:  # a notification, or a response to us
        return Response(status=202)
    method, params = message.get("method"), message.get("params", {})
    try:
        if not isinstance(method, str) or not isinstance(params, dict):
            raise RpcError(-32600, "Invalid request: method must be a string and params an object.", 400)
        if not storable(params):  # checked here, not while parsing, so that the error keeps the id
            raise RpcError(-32602, "Invalid params: text must be valid UTF-8, without NUL characters.", 400)
        if method == "tools/call":
            return call_tool(message["id"], params, bearer)
        return rpc_response(message["id"], mcp_result(method, params))
    except RpcError as error:
        return rpc_response(message["id"], error=error)


def mcp_result(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Answer initialize, ping and tools/list; anything else is unknown (-32601)."""
    if method == "initialize":
        requested = params.get("protocolVersion")
        return {
            "protocolVersion": requested if requested in MCP_PROTOCOL_VERSIONS else MCP_PROTOCOL_VERSIONS[0],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "connected-todos", "title": "Connected Todos", "version": APP_VERSION},
            "instructions": "Manage the todos of the member's organization. Call list_todos to find ids.",
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": [tool.describe() for tool in TOOLS.values()]}
    raise RpcError(-32601, f"Method not found: {method}")


def call_tool(message_id: Any, params: dict[str, Any], bearer: Bearer) -> Response:
    """Run a tool with the REST API's rules; a bad argument is a tool error the model can fix."""
    tool = TOOLS.get(params.get("name"))  # type: ignore[arg-type]
    if tool is None:
        raise RpcError(-32602, f"Unknown tool {params.get('name')!r}. Tools: {', '.join(TOOLS)}.")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise RpcError(-32602, "arguments must be an object.")
    if tool.scope not in bearer.scope:
        error = BearerError("insufficient_scope", f"{tool.name} needs the {tool.scope} scope.", 403, tool.scope)
        result = tool_error(error.description)
        result["_meta"] = {"mcp/www_authenticate": [bearer_challenge(error, mcp_resource())]}
        return bearer_error_response(error, mcp_resource(), {"jsonrpc": "2.0", "id": message_id, "result": result})
    if unknown := sorted(set(arguments) - set(tool.input_properties)):
        takes = ", ".join(tool.input_properties) or "no arguments"
        return rpc_response(message_id, tool_error(f"Unknown argument {unknown[0]!r}. {tool.name} takes: {takes}."))
    try:
        structured = tool.run(bearer, arguments)
    except TodoError as error:  # a broken todo rule, answered as MCP answers it: a tool error
        return rpc_response(message_id, tool_error(error.message))
    content = [{"type": "text", "text": json.dumps(structured)}]
    return rpc_response(message_id, {"content": content, "structuredContent": structured, "isError": False})


def tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}
