"""API: the todo REST API that a GPT Action calls, and its OpenAPI description.

Owns the ``/api/*`` views (RFC 6750 bearer tokens; each operation needs the scope the table in
rules.py gives it) and ``openapi.yaml`` (OpenAPI 3.1), generated with apispec from the views'
docstrings, so that the description cannot drift from the code. A broken todo rule is answered as
the API's JSON error, in one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from apispec import APISpec
from apispec.yaml_utils import load_operations_from_docstring
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request

from .rules import SCOPES
from .rules import bounded_int
from .rules import scope_for
from .settings import APP_VERSION
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
from .todos import todo_json
from .todos import todo_page_json
from .todos import todo_page_schema
from .todos import update_todo
from .tokens import Bearer
from .tokens import require_token
from .web import read_json

bp = Blueprint("api", __name__)

OPENAPI_BASE_URL = "http://127.0.0.1:5000"  # the committed file's; /openapi.yaml uses the real one


def operation_id(view: Callable[..., Any]) -> str:
    """The operationId a view's docstring declares."""
    return next(iter(load_operations_from_docstring(view.__doc__).values()))["operationId"]


def protected(view: Callable[..., Any]) -> Callable[..., Any]:
    """A view of the API: its bearer token needs the scope of the view's operation."""
    return require_token(operation_id(view))(view)


def todo_error(error: TodoError) -> tuple[Response, int]:
    """A broken todo rule as the API's JSON error, naming the field when there is one."""
    body = {"error": "not_found" if error.status == 404 else "invalid_request", "message": error.message}
    if error.field:
        body["field"] = error.field
    return jsonify(body), error.status


bp.register_error_handler(TodoError, todo_error)


def json_body() -> dict[str, Any]:
    try:
        data = read_json()
    except ValueError as error:
        raise TodoError(str(error), status=400) from None
    if not isinstance(data, dict):
        raise TodoError("The body must be a JSON object.", status=400)
    return data


def parse_completed(value: str | None) -> bool | None:
    if value is None:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise TodoError("completed must be true or false.", "completed", 400)


def parse_limit(value: str | None) -> int:
    if value is None:
        return PAGE_DEFAULT
    try:
        return bounded_int(value, 1, PAGE_MAX)
    except ValueError:
        raise TodoError(f"limit must be a number between 1 and {PAGE_MAX}.", "limit", 400) from None


@bp.route("/api/me")
@protected
def api_me(bearer: Bearer) -> Response:
    """Get the member and organization.
    ---
    get:
      operationId: getMe
      summary: Get the signed-in member and their organization.
      x-openai-isConsequential: false
      responses:
        "200":
          description: The member the token acts for.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Me"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
    """
    return jsonify(me_json(bearer.member))


@bp.route("/api/todos", methods=["GET"])
@protected
def api_list_todos(bearer: Bearer) -> Response:
    """List todos.
    ---
    get:
      operationId: listTodos
      summary: List the organization's todos, newest first, one page at a time.
      description: Pass next_cursor back as cursor to get the next page. Filter with completed.
      x-openai-isConsequential: false
      parameters:
        - name: completed
          in: query
          required: false
          description: Only completed (true) or open (false) todos.
          schema: {type: boolean}
        - name: limit
          in: query
          required: false
          description: How many todos per page, from 1 to 100.
          schema: {type: integer, minimum: 1, maximum: 100, default: 20}
        - Cursor
      responses:
        "200":
          description: A page of todos.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/TodoPage"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
    """
    args = request.args
    completed, limit = parse_completed(args.get("completed")), parse_limit(args.get("limit"))
    return jsonify(todo_page_json(*list_todos(bearer.member, completed, limit, args.get("cursor"))))


@bp.route("/api/todos", methods=["POST"])
@protected
def api_create_todo(bearer: Bearer) -> tuple[Response, int]:
    """Create a todo.
    ---
    post:
      operationId: createTodo
      summary: Create a todo in the organization.
      x-openai-isConsequential: false
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/TodoCreate"}
      responses:
        "201":
          description: The new todo.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Todo"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "422": {$ref: "#/components/responses/Invalid"}
    """
    return jsonify(todo_json(create_todo(bearer.member, json_body(), bearer.client))), 201


@bp.route("/api/todos/<int:todo_id>", methods=["GET"])
@protected
def api_get_todo(bearer: Bearer, todo_id: int) -> Response:
    """Get a todo.
    ---
    get:
      operationId: getTodo
      summary: Get one todo by id.
      x-openai-isConsequential: false
      parameters:
        - TodoId
      responses:
        "200":
          description: The todo.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Todo"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "404": {$ref: "#/components/responses/NotFound"}
    """
    return jsonify(todo_json(get_todo(bearer.member, todo_id)))


@bp.route("/api/todos/<int:todo_id>", methods=["PATCH"])
@protected
def api_update_todo(bearer: Bearer, todo_id: int) -> Response:
    """Update a todo.
    ---
    patch:
      operationId: updateTodo
      summary: Change a todo's title, notes, due date or completion. Send only what changes.
      x-openai-isConsequential: false
      parameters:
        - TodoId
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/TodoUpdate"}
      responses:
        "200":
          description: The updated todo.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Todo"}
        "400": {$ref: "#/components/responses/BadRequest"}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "404": {$ref: "#/components/responses/NotFound"}
        "422": {$ref: "#/components/responses/Invalid"}
    """
    return jsonify(todo_json(update_todo(bearer.member, todo_id, json_body(), bearer.client)))


@bp.route("/api/todos/<int:todo_id>", methods=["DELETE"])
@protected
def api_delete_todo(bearer: Bearer, todo_id: int) -> tuple[str, int]:
    """Delete a todo.
    ---
    delete:
      operationId: deleteTodo
      summary: Delete a todo for good.
      x-openai-isConsequential: true
      parameters:
        - TodoId
      responses:
        "204": {description: The todo was deleted.}
        "401": {$ref: "#/components/responses/Unauthorized"}
        "403": {$ref: "#/components/responses/Forbidden"}
        "404": {$ref: "#/components/responses/NotFound"}
    """
    delete_todo(bearer.member, todo_id)
    return "", 204


# ---- openapi.yaml ------------------------------------------------------------------------------

API_VIEWS = [api_me, api_list_todos, api_create_todo, api_get_todo, api_update_todo, api_delete_todo]


def error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_spec(base_url: str) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of the todo API from the views' docstrings."""
    spec = APISpec(
        title="Connected Todos API",
        version=APP_VERSION,
        openapi_version="3.1.0",
        info={"description": "Read and manage the todos of the member's organization."},
        servers=[{"url": base_url}],
    )
    spec.components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": f"{base_url}/idp",
                    "tokenUrl": f"{base_url}/oauth/token",
                    "refreshUrl": f"{base_url}/oauth/token",
                    "scopes": {name: scope.consent for name, scope in SCOPES.items()},
                }
            },
        },
    )
    spec.components.schema("Todo", TODO_SCHEMA)
    spec.components.schema(
        "TodoCreate",
        {"type": "object", "required": ["title"], "properties": TODO_PROPERTIES, "additionalProperties": False},
    )
    spec.components.schema(
        "TodoUpdate", {"type": "object", "properties": TODO_PROPERTIES, "additionalProperties": False}
    )
    spec.components.schema("TodoPage", todo_page_schema({"$ref": "#/components/schemas/Todo"}))
    spec.components.schema("Me", ME_SCHEMA)
    spec.components.schema(
        "Error",
        {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "The input that was wrong."},
            },
        },
    )
    spec.components.parameter(
        "TodoId",
        "path",
        {"name": "todo_id", "required": True, "schema": {"type": "integer"}, "description": "The todo's id."},
    )
    spec.components.parameter(
        "Cursor",
        "query",
        {
            "name": "cursor",
            "required": False,
            "schema": CURSOR_SCHEMA,
            "description": "The next_cursor of the previous page.",
        },
    )
    for name, text in [
        ("BadRequest", "The request is malformed."),
        ("Unauthorized", "The access token is missing, invalid or revoked."),
        ("Forbidden", "The access token lacks the scope."),
        ("NotFound", "There is no such todo."),
        ("Invalid", "A field is invalid; the body names it."),
    ]:
        spec.components.response(name, error_response(text))
    for view in API_VIEWS:
        rule = next(r for r in current_app.url_map.iter_rules() if r.endpoint == f"api.{view.__name__}")
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        operations = load_operations_from_docstring(view.__doc__)
        for operation in operations.values():
            operation["security"] = [{"oauth2": [scope_for(operation["operationId"])]}]
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def openapi_yaml(base_url: str) -> str:
    return yaml.safe_dump(openapi_spec(base_url), sort_keys=False, allow_unicode=True)


@bp.route("/openapi.yaml")
def openapi_document() -> Response:
    """The OpenAPI document, with this deployment's own URL, for the GPT builder to import."""
    return Response(openapi_yaml(issuer()), mimetype="application/yaml")
