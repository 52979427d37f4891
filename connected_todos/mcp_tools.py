"""MCP tools: what an agent can do with the member's todos over MCP, and the view that shows them.

Owns the tools (each runs the REST API's rules and needs the scope of the API operation it stands
for), ChatGPT's ``search`` and ``fetch`` contract for deep research and company knowledge, and the
MCP Apps view (SEP-1865, extension ``io.modelcontextprotocol/ui``): a ``ui://`` resource of type
``text/html;profile=mcp-app`` that hosts render for the tools that point at it. The protocol
around them is in mcp_server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from functools import cache
from pathlib import Path
from typing import Any

from .models import Todo
from .rules import scope_for
from .settings import issuer
from .todos import CURSOR_SCHEMA
from .todos import ME_SCHEMA
from .todos import PAGE_DEFAULT
from .todos import PAGE_MAX
from .todos import TODO_PROPERTIES
from .todos import TODO_SCHEMA
from .todos import TodoError
from .todos import create_todo
from .todos import delete_todo
from .todos import get_todo
from .todos import list_todos
from .todos import me_json
from .todos import search_todos
from .todos import todo_json
from .todos import todo_page_json
from .todos import todo_page_schema
from .todos import update_todo
from .tokens import Bearer

UI_EXTENSION = "io.modelcontextprotocol/ui"
VIEW_URI = "ui://connected-todos/todos.html"
VIEW_MIME_TYPE = "text/html;profile=mcp-app"  # exactly, as MCP Apps requires
VIEW_FILE = Path(__file__).resolve().parent.parent / "static" / "todos-view.html"
# The view loads nothing from anywhere: its script and styles are inline, and it reaches the
# server only through the host's tools/call. An empty CSP declaration says so to the host.
VIEW_META = {"ui": {"csp": {"connectDomains": [], "resourceDomains": []}, "prefersBorder": True}}
ID_SCHEMA = {"type": "integer", "description": "The todo's id, from list_todos."}


@dataclass
class Tool:
    """An MCP tool: its description, schemas and annotations, the API operation whose scope it
    needs, whether the view shows its result, and the function that runs it."""

    name: str
    title: str
    description: str
    operation: str
    input_properties: dict[str, Any]
    required: list[str]
    output_schema: dict[str, Any]
    annotations: dict[str, bool]
    run: Callable[[Bearer, dict[str, Any]], dict[str, Any]]
    shows_view: bool = False
    text: Callable[[dict[str, Any]], str] = field(default=json.dumps)  # what a host without views reads

    @property
    def scope(self) -> str:
        return scope_for(self.operation)

    def describe(self) -> dict[str, Any]:
        tool = {
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
        if self.shows_view:
            # MCP Apps: the view renders the result, and may call the tool itself. ChatGPT still
            # reads its older name for the same link.
            tool["_meta"] = {
                "ui": {"resourceUri": VIEW_URI, "visibility": ["model", "app"]},
                "openai/outputTemplate": VIEW_URI,
            }
        return tool

    def call(self, bearer: Bearer, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run the tool; a broken rule is a tool error the model can read and fix (isError)."""
        try:
            structured = self.run(bearer, arguments)
        except TodoError as error:
            return tool_error(error.message)
        text = [{"type": "text", "text": self.text(structured)}]
        return {"content": text, "structuredContent": structured, "isError": False}


def tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


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


# ChatGPT's search and fetch contract: documents with a string id, a title, a URL, and for fetch
# the full text. The JSON goes in one text item, which is what ChatGPT reads.


def todo_url(todo: Todo) -> str:
    return f"{issuer()}/todos/{todo.id}/edit"


def run_search(bearer: Bearer, arguments: dict[str, Any]) -> dict[str, Any]:
    found = search_todos(bearer.member, arguments.get("query", ""))
    return {"results": [{"id": str(t.id), "title": t.title, "url": todo_url(t)} for t in found]}


def run_fetch(bearer: Bearer, arguments: dict[str, Any]) -> dict[str, Any]:
    raw = arguments.get("id")
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit():
        raise TodoError('id must be the id of a search result, such as "42".', "id")
    todo = get_todo(bearer.member, int(raw))
    data = todo_json(todo)
    lines = [todo.title, f"Status: {'done' if todo.completed else 'open'}"]
    if todo.due_date:
        lines.append(f"Due: {todo.due_date.isoformat()}")
    if todo.notes:
        lines += ["", todo.notes]
    metadata = {k: data[k] for k in ("completed", "due_date", "created_at", "updated_at", "created_by", "created_via")}
    return {"id": raw, "title": todo.title, "text": "\n".join(lines), "url": todo_url(todo), "metadata": metadata}


DOCUMENT_REF = {
    "type": "object",
    "required": ["id", "title", "url"],
    "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"}},
}
READ = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True}
WRITE = {"readOnlyHint": False, "destructiveHint": False}
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
            shows_view=True,
        ),
        Tool(
            "add_todo",
            "Add a todo",
            "Create a todo in the organization.",
            "createTodo",
            TODO_PROPERTIES,
            ["title"],
            TODO_SCHEMA,
            {**WRITE, "idempotentHint": False},
            lambda bearer, arguments: todo_json(create_todo(bearer.member, arguments, bearer.client)),
            shows_view=True,
        ),
        Tool(
            "update_todo",
            "Update a todo",
            "Change a todo's title, notes, due date or completion; send only what changes.",
            "updateTodo",
            {"id": ID_SCHEMA, **TODO_PROPERTIES},
            ["id"],
            TODO_SCHEMA,
            {**WRITE, "idempotentHint": True},
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
            {**WRITE, "idempotentHint": True},
            run_complete_todo,
            shows_view=True,
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
        Tool(
            "search",
            "Search todos",
            "Search the organization's todos by words in their title or notes. Returns ids for fetch.",
            "listTodos",
            {"query": {"type": "string", "maxLength": 200, "description": "Words to look for."}},
            ["query"],
            {
                "type": "object",
                "required": ["results"],
                "properties": {"results": {"type": "array", "items": DOCUMENT_REF}},
            },
            READ,
            run_search,
        ),
        Tool(
            "fetch",
            "Fetch a todo",
            "Fetch one todo by the id a search result gave, with its full text.",
            "getTodo",
            {"id": {"type": "string", "description": "The id of a search result."}},
            ["id"],
            {
                "type": "object",
                "required": ["id", "title", "text", "url", "metadata"],
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "text": {"type": "string"},
                    "url": {"type": "string"},
                    "metadata": {"type": "object"},
                },
            },
            READ,
            run_fetch,
        ),
    ]
}


@cache
def view_html() -> str:
    """The view, read once: the file in the repository is exactly what hosts get."""
    return VIEW_FILE.read_text()


@cache
def view_inline_hashes() -> tuple[str, ...]:
    """The CSP hashes of the view's inline script and styles, for a page that renders it (CSP 3)."""
    blocks = re.findall(r"<(script|style)>(.*?)</\1>", view_html(), re.DOTALL)
    return tuple("sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() for _, body in blocks)


def view_resource() -> dict[str, Any]:
    return {
        "uri": VIEW_URI,
        "name": "todos-view",
        "title": "Todos",
        "description": "The organization's todos, to tick off and add to.",
        "mimeType": VIEW_MIME_TYPE,
        "_meta": VIEW_META,
    }


def view_contents() -> dict[str, Any]:
    return {"uri": VIEW_URI, "mimeType": VIEW_MIME_TYPE, "text": view_html(), "_meta": VIEW_META}
