"""Todos: the rules of a todo, shared by the web pages, the REST API and the MCP tools.

Owns the one check of a todo's fields, the queries (every one starts from the member's own
organization, so that tenants stay apart), keyset pages of todos, and the JSON shapes and schemas
that openapi.yaml and the MCP tools' schemas both use. A broken rule is a ``TodoError``, which each
protocol turns into its own answer in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from .models import Client
from .models import Member
from .models import Todo
from .models import db
from .rules import CURSOR_PATTERN
from .rules import ID_LIMIT
from .rules import ROLES
from .rules import decode_cursor

TITLE_MAX = 200
NOTES_MAX = 5000
# What a title is trimmed of: every character str.isspace() knows, and the byte-order mark. It is
# written out once, so that the pattern in openapi.yaml says exactly what the server accepts.
BLANK = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
PAGE_DEFAULT = 20
PAGE_MAX = 100
FIELDS = ("title", "notes", "completed", "due_date")


class TodoError(Exception):
    """A todo request that breaks a rule; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


def clean_todo(data: Any, partial: bool) -> dict[str, Any]:
    """Validate todo fields from JSON, a form or a tool call; ``partial`` allows any subset (PATCH)."""
    if not isinstance(data, dict):
        raise TodoError("The body must be a JSON object.", status=400)
    unknown = set(data) - set(FIELDS)
    if unknown:
        raise TodoError(f"Unknown field '{sorted(unknown)[0]}'.", sorted(unknown)[0])
    values: dict[str, Any] = {}
    if "title" in data or not partial:
        title = data.get("title")
        if not isinstance(title, str) or not title.strip(BLANK):
            raise TodoError("title is required and must be a non-empty string.", "title")
        if len(title) > TITLE_MAX:
            raise TodoError(f"title must be at most {TITLE_MAX} characters.", "title")
        values["title"] = title.strip(BLANK)
    if "notes" in data:
        notes = data["notes"] if data["notes"] is not None else ""
        if not isinstance(notes, str):
            raise TodoError("notes must be a string.", "notes")
        if len(notes) > NOTES_MAX:
            raise TodoError(f"notes must be at most {NOTES_MAX} characters.", "notes")
        values["notes"] = notes
    if "completed" in data:
        if not isinstance(data["completed"], bool):
            raise TodoError("completed must be true or false.", "completed")
        values["completed"] = data["completed"]
    if "due_date" in data:
        values["due_date"] = parse_due_date(data["due_date"])
    return values


def parse_due_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise TodoError("due_date must be a date like 2026-12-31, or null.", "due_date")


def fields_from_form(form: Any, with_completed: bool = False) -> dict[str, Any]:
    """A todo's fields as the web form sends them: an empty date field means no due date."""
    fields = {"title": form.get("title", ""), "notes": form.get("notes", ""), "due_date": form.get("due_date") or None}
    if with_completed:
        fields["completed"] = form.get("completed") == "on"  # an unticked box is not sent at all
    return fields


def todo_query_of_organization(query: sa.Select) -> sa.Select:
    """Every todo query starts here: only one organization's todos, the one bound as ``org``."""
    return query.where(Todo.organization_id == sa.bindparam("org"))


def todo_query(member: Member) -> sa.Select[tuple[Todo]]:
    """Whole todos of the member's own organization."""
    return todo_query_of_organization(sa.select(Todo)).params(org=member.organization_id)


@dataclass(frozen=True, slots=True)
class MemberRef:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class AppRef:
    client_id: str
    name: str


@dataclass(frozen=True, slots=True)
class TodoRow:
    """A todo as a page lists it: its columns, and who and which apps made and changed it, read in
    one query of plain rows (a page of ORM objects, four to a todo, cost more than the rest)."""

    id: int
    title: str
    notes: str
    completed: bool
    due_date: date | None
    created_at: datetime
    updated_at: datetime
    created_by: MemberRef | None
    created_via: AppRef | None
    updated_via: AppRef | None


CREATOR, MADE_VIA, CHANGED_VIA = aliased(Member), aliased(Client), aliased(Client)
TODO_ROWS = (
    sa.select(
        Todo.id,
        Todo.title,
        Todo.notes,
        Todo.completed,
        Todo.due_date,
        Todo.created_at,
        Todo.updated_at,
        CREATOR.id,
        CREATOR.name,
        MADE_VIA.client_id,
        MADE_VIA.name,
        CHANGED_VIA.client_id,
        CHANGED_VIA.name,
    )
    .outerjoin(CREATOR, CREATOR.id == Todo.created_by_id)
    .outerjoin(MADE_VIA, MADE_VIA.id == Todo.created_via_id)
    .outerjoin(CHANGED_VIA, CHANGED_VIA.id == Todo.updated_via_id)
)


def todo_row(row: Any) -> TodoRow:
    creator = MemberRef(row[7], row[8]) if row[7] is not None else None
    made_via = AppRef(row[9], row[10]) if row[9] is not None else None
    changed_via = AppRef(row[11], row[12]) if row[11] is not None else None
    return TodoRow(*row[:7], creator, made_via, changed_via)


COMPLETED = sa.cast(sa.bindparam("completed"), sa.Boolean)  # None: done or not
# A page is one statement, built once: keyset pagination below a todo id (the cost of a page does
# not grow with the table), with or without the completed filter.
TODO_PAGE = (
    todo_query_of_organization(TODO_ROWS)
    .where(Todo.id <= sa.bindparam("through"))
    .where(sa.or_(COMPLETED.is_(None), Todo.completed == COMPLETED))
    .order_by(Todo.id.desc())
    .limit(sa.bindparam("rows"))
)


def list_todos(
    member: Member, completed: bool | None = None, limit: int = PAGE_DEFAULT, cursor: str | None = None
) -> tuple[list[TodoRow], str | None]:
    """One page of todos, newest first, with the cursor of the next page."""
    if not 1 <= limit <= PAGE_MAX:
        raise TodoError(f"limit must be between 1 and {PAGE_MAX}.", "limit", 400)
    try:
        before = decode_cursor(cursor) if cursor is not None else None
    except ValueError as error:
        raise TodoError(str(error), "cursor", 400) from None
    through = before - 1 if before else ID_LIMIT - 1  # the highest id the page may hold, a 32-bit one
    values = {"org": member.organization_id, "through": through, "completed": completed, "rows": limit + 1}
    # Run on the session's connection: rows of columns need none of the ORM's work on results.
    rows = db.session.connection().execute(TODO_PAGE, values).all()
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return [todo_row(row) for row in rows[:limit]], next_cursor


SEARCH_RESULTS = 20
QUERY_MAX = 200


def search_todos(member: Member, query: str) -> list[Todo]:
    """The organization's todos whose title or notes contain every word of ``query``, in any case,
    newest first: the search that ChatGPT's deep research and company knowledge run."""
    if not isinstance(query, str) or len(query) > QUERY_MAX:
        raise TodoError(f"query must be text of at most {QUERY_MAX} characters.", "query")
    words = query.split()
    found = todo_query(member)
    for word in words:
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = found.where(sa.or_(Todo.title.ilike(pattern, escape="\\"), Todo.notes.ilike(pattern, escape="\\")))
    return list(db.session.scalars(found.order_by(Todo.id.desc()).limit(SEARCH_RESULTS)))


def get_todo(member: Member, todo_id: int) -> Todo:
    """A todo of the member's organization; another organization's todo does not exist."""
    todo = db.session.scalar(todo_query(member).where(Todo.id == todo_id)) if 0 < todo_id < ID_LIMIT else None
    if todo is None:
        raise TodoError("There is no todo with that id.", "id", 404)
    return todo


def create_todo(member: Member, data: Any, via: Client | None = None) -> Todo:
    """Add a todo as ``member``, on the web or through the app ``via``."""
    todo = Todo(organization_id=member.organization_id, created_by_id=member.id, created_via=via)
    for key, value in clean_todo(data, partial=False).items():
        setattr(todo, key, value)
    db.session.add(todo)
    db.session.commit()
    return todo


def update_todo(member: Member, todo_id: int, data: Any, via: Client | None = None) -> Todo:
    """Change a todo as ``member``, on the web or through the app ``via``; it remembers both."""
    values = clean_todo(data, partial=True)
    todo = get_todo(member, todo_id)
    for key, value in values.items():
        setattr(todo, key, value)
    todo.updated_by_id, todo.updated_via = member.id, via
    db.session.commit()
    return todo


def toggle_completed(member: Member, todo_id: int) -> Todo:
    return update_todo(member, todo_id, {"completed": not get_todo(member, todo_id).completed})


def delete_todo(member: Member, todo_id: int) -> None:
    db.session.delete(get_todo(member, todo_id))
    db.session.commit()


# ---- JSON shapes and their schemas, for openapi.yaml and the MCP tools --------------------------


def regex_class(chars: str) -> str:
    """``chars`` as the body of an ECMA-262 character class (JSON Schema's regex dialect)."""
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in chars)


# Text is stored as given, except that no database keeps a NUL; a title needs a visible character.
TITLE_PATTERN = f"^[^\\x00]*[^\\x00{regex_class(BLANK)}][^\\x00]*$"
NOTES_PATTERN = "^[^\\x00]*$"
CURSOR_SCHEMA = {"type": "string", "pattern": CURSOR_PATTERN, "description": "next_cursor from the previous page."}

TODO_PROPERTIES = {
    "title": {
        "type": "string",
        "minLength": 1,
        "maxLength": TITLE_MAX,
        "pattern": TITLE_PATTERN,
        "description": "What to do.",
    },
    "notes": {
        "type": ["string", "null"],
        "maxLength": NOTES_MAX,
        "pattern": NOTES_PATTERN,
        "description": "Details; empty or null for none.",
    },
    "completed": {"type": "boolean", "description": "Whether it is done."},
    "due_date": {"type": ["string", "null"], "format": "date", "description": "Due date, YYYY-MM-DD."},
}
APP_SCHEMA = {
    "type": ["object", "null"],
    "required": ["client_id", "name"],
    "properties": {"client_id": {"type": "string"}, "name": {"type": "string"}},
}
TODO_SCHEMA = {
    "type": "object",
    "required": [
        "id",
        "title",
        "notes",
        "completed",
        "due_date",
        "created_at",
        "updated_at",
        "created_by",
        "created_via",
        "updated_via",
    ],
    "properties": {
        "id": {"type": "integer"},
        **TODO_PROPERTIES,
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "created_by": {
            "type": ["object", "null"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        },
        "created_via": {**APP_SCHEMA, "description": "The app that made it for the member; null on the web."},
        "updated_via": {**APP_SCHEMA, "description": "The app that last changed it; null on the web or never."},
    },
}
ME_SCHEMA = {
    "type": "object",
    "required": ["id", "name", "email", "role", "organization"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "email": {"type": "string"},
        "role": {"type": "string", "enum": list(ROLES)},
        "organization": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "slug": {"type": "string"}},
        },
    },
}


def todo_page_schema(todo_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["todos", "next_cursor"],
        "properties": {
            "todos": {"type": "array", "items": todo_schema},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as cursor for the next page; null at the end.",
            },
        },
    }


def me_json(member: Member) -> dict[str, Any]:
    org = member.organization
    return {
        "id": member.id,
        "name": member.name,
        "email": member.email,
        "role": member.role,
        "organization": {"id": org.id, "name": org.name, "slug": org.slug},
    }


def todo_json(todo: Todo | TodoRow) -> dict[str, Any]:
    creator = todo.created_by
    return {
        "id": todo.id,
        "title": todo.title,
        "notes": todo.notes,
        "completed": todo.completed,
        "due_date": todo.due_date.isoformat() if todo.due_date else None,
        "created_at": todo.created_at.isoformat() + "Z",
        "updated_at": todo.updated_at.isoformat() + "Z",
        "created_by": {"id": creator.id, "name": creator.name} if creator else None,
        "created_via": app_json(todo.created_via),
        "updated_via": app_json(todo.updated_via),
    }


def app_json(client: Client | AppRef | None) -> dict[str, str] | None:
    return {"client_id": client.client_id, "name": client.name} if client else None


def todo_page_json(page: list[TodoRow], next_cursor: str | None) -> dict[str, Any]:
    return {"todos": [todo_json(t) for t in page], "next_cursor": next_cursor}
