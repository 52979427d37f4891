"""The todo REST API: bearer tokens (RFC 6750), validation and pagination."""

import re

import pytest
import requests
import sqlalchemy as sa
from conftest import api
from conftest import bearer
from conftest import token_for

from connected_todos.models import db
from connected_todos.todos import BLANK
from connected_todos.todos import TITLE_PATTERN


def test_me_names_the_member_and_organization(base_url, org, tokens):
    me = api(base_url, "GET", "/me", tokens["access_token"]).json()
    assert me["email"] == org.admin_email and me["role"] == "admin"
    assert me["organization"] == {"id": org.id, "name": f"Org {org.slug.removeprefix('org-')}", "slug": org.slug}


def test_create_read_update_delete(base_url, tokens):
    token = tokens["access_token"]
    created = api(
        base_url, "POST", "/todos", token, json={"title": "  Ship it  ", "notes": "n", "due_date": "2026-12-24"}
    )
    assert created.status_code == 201
    todo = created.json()
    assert todo["title"] == "Ship it" and todo["due_date"] == "2026-12-24" and todo["completed"] is False
    assert todo["created_by"]["name"] == "Ada Admin" and todo["created_at"].endswith("Z")
    fields = {"id", "title", "notes", "completed", "due_date", "created_at", "updated_at", "created_by"}
    assert set(todo) == fields | {"created_via", "updated_via"}
    assert api(base_url, "GET", f"/todos/{todo['id']}", token).json() == todo
    patched = api(base_url, "PATCH", f"/todos/{todo['id']}", token, json={"completed": True, "due_date": None}).json()
    assert patched["completed"] is True and patched["due_date"] is None and patched["title"] == "Ship it"
    assert api(base_url, "DELETE", f"/todos/{todo['id']}", token).status_code == 204
    assert api(base_url, "GET", f"/todos/{todo['id']}", token).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "\u3000\u00a0\ufeff"}, "title"),  # blank to a reader, not only to ASCII
        ({"title": " " + "x" * 200}, "title"),  # the length is the title's as sent
        ({"title": 5}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "notes": "x" * 5001}, "notes"),
        ({"title": "ok", "notes": 3}, "notes"),
        ({"title": "ok", "completed": "yes"}, "completed"),
        ({"title": "ok", "due_date": "tomorrow"}, "due_date"),
        ({"title": "ok", "due_date": "2026-02-30"}, "due_date"),
        ({"title": "ok", "due_date": ""}, "due_date"),  # null clears a date; openapi.yaml allows no ""
        ({"title": "ok", "owner": 1}, "owner"),
    ],
)
def test_a_validation_error_names_the_field(base_url, tokens, body, field):
    response = api(base_url, "POST", "/todos", tokens["access_token"], json=body)
    assert response.status_code == 422 and response.json()["field"] == field and response.json()["message"]


@pytest.mark.parametrize("data", ["not json", "[1, 2]", "null"])
def test_a_body_that_is_not_a_json_object_is_400(base_url, tokens, data):
    headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
    response = requests.post(f"{base_url}/api/todos", data=data, headers=headers)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_title_of_exactly_200_and_notes_of_5000_are_accepted(base_url, tokens):
    response = api(base_url, "POST", "/todos", tokens["access_token"], json={"title": "x" * 200, "notes": "y" * 5000})
    assert response.status_code == 201


def test_pagination_with_limit_cursor_and_completed(base_url, world, gpt):
    org = world.org()
    token = token_for(base_url, org.admin_email, gpt)
    ids = [
        api(base_url, "POST", "/todos", token, json={"title": f"t{i}", "completed": i % 2 == 0}).json()["id"]
        for i in range(25)
    ]
    first = api(base_url, "GET", "/todos", token).json()
    assert [t["id"] for t in first["todos"]] == ids[::-1][:20] and first["next_cursor"]
    second = api(base_url, "GET", "/todos", token, params={"cursor": first["next_cursor"]}).json()
    assert [t["id"] for t in second["todos"]] == ids[::-1][20:] and second["next_cursor"] is None
    # An empty cursor, or one above any id a todo can have (32-bit), is the first page.
    for cursor in ("", "2147483647", "2147483648", "9999999999"):
        page = api(base_url, "GET", "/todos", token, params={"cursor": cursor})
        assert page.status_code == 200 and page.json()["todos"] == first["todos"], cursor
    small = api(base_url, "GET", "/todos", token, params={"limit": 5, "completed": "true"}).json()
    assert len(small["todos"]) == 5 and all(t["completed"] for t in small["todos"])
    open_ones = api(base_url, "GET", "/todos", token, params={"completed": "false", "limit": 100}).json()
    assert len(open_ones["todos"]) == 12 and not any(t["completed"] for t in open_ones["todos"])


def test_postgresql_plans_each_todo_page_for_its_organization(app):
    """Organizations differ in size by orders of magnitude: a plan made once for any organization
    walked the primary key through every other organization's todos (connected_todos.postgresql_settings)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite picks the (organization_id, id) index for any organization")
        assert db.session.execute(sa.text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
        db.session.rollback()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "bogus!"}, "cursor"),
        ({"cursor": "0"}, "cursor"),
        ({"completed": "maybe"}, "completed"),
    ],
)
def test_bad_list_parameters_are_400(base_url, tokens, params, field):
    response = api(base_url, "GET", "/todos", tokens["access_token"], params=params)
    assert response.status_code == 400 and response.json()["field"] == field


# RFC 6750: where the token comes from and what a failure looks like.


def test_no_token_gets_401_with_a_challenge_and_no_error_code(base_url):
    response = requests.get(f"{base_url}/api/todos")
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and "error=" not in challenge  # RFC 6750 §3.1


def test_a_token_stops_working_when_its_member_is_removed(base_url, world, gpt):
    org = world.org()
    token = token_for(base_url, org.member_email, gpt)
    assert api(base_url, "GET", "/me", token).status_code == 200
    world.sql(sa.text("DELETE FROM member WHERE email = :e"), e=org.member_email)
    assert api(base_url, "GET", "/me", token).status_code == 401


def test_notes_may_be_null_and_titles_are_trimmed(base_url, tokens):
    body = {"title": "\u3000 Plan the offsite\t", "notes": None}
    created = api(base_url, "POST", "/todos", tokens["access_token"], json=body)
    assert (
        created.status_code == 201 and created.json()["title"] == "Plan the offsite" and created.json()["notes"] == ""
    )


def test_the_title_pattern_in_openapi_refuses_exactly_what_the_server_refuses():
    """A title the document allows is one the API accepts: blank characters and NUL, no more."""
    pattern = re.compile(TITLE_PATTERN)
    refused = {c for c in map(chr, range(0x110000)) if not pattern.fullmatch(c)}
    assert refused == set(BLANK) | {"\x00"}
    assert {c for c in map(chr, range(0x110000)) if c.isspace()} <= set(BLANK)
