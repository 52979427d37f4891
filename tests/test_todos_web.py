"""Todos on the web: the organization's list, add, edit, complete, delete."""

import re

from conftest import Person
from conftest import csrf_of


def logged_in(base_url, email) -> Person:
    person = Person(base_url, email)
    person.login()
    return person


def add(person: Person, title: str, **fields) -> None:
    page = person.get("/todos")
    response = person.post("/todos", {"csrf_token": csrf_of(page.text), "title": title, **fields})
    assert response.status_code == 302


def todo_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r"/todos/(\d+)/edit", html)]


def test_members_of_an_organization_share_its_todos(base_url, org):
    admin, member = logged_in(base_url, org.admin_email), logged_in(base_url, org.member_email)
    add(admin, "Quarterly report", notes="Numbers from finance", due_date="2026-12-31")
    page = member.get("/todos").text
    assert "Quarterly report" in page and "Numbers from finance" in page and "2026-12-31" in page
    assert "Ada Admin" in page  # created by


def test_edit_complete_and_delete(base_url, org):
    person = logged_in(base_url, org.admin_email)
    add(person, "Draft")
    todo_id = todo_ids(person.get("/todos").text)[0]
    edit = person.get(f"/todos/{todo_id}/edit")
    data = {"csrf_token": csrf_of(edit.text), "title": "Final", "notes": "done soon", "due_date": ""}
    assert person.post(f"/todos/{todo_id}/edit", data).status_code == 302
    assert "Final" in person.get("/todos").text
    token = csrf_of(person.get("/todos").text)
    person.post(f"/todos/{todo_id}/toggle", {"csrf_token": token})
    assert 'class="completed"' in person.get("/todos?show=done").text
    assert "Final" not in person.get("/todos?show=open").text
    person.post(f"/todos/{todo_id}/delete", {"csrf_token": token})
    assert todo_id not in todo_ids(person.get("/todos").text)


def test_a_form_error_is_shown_and_nothing_is_saved(base_url, org):
    person = logged_in(base_url, org.admin_email)
    page = person.get("/todos")
    person.post("/todos", {"csrf_token": csrf_of(page.text), "title": "x" * 201})
    page = person.get("/todos").text
    assert "title must be at most 200 characters" in page and "x" * 201 not in page


def test_another_organizations_todo_is_not_found(base_url, world):
    mine, theirs = world.org(), world.org()
    owner = logged_in(base_url, theirs.admin_email)
    add(owner, "Secret plan")
    todo_id = todo_ids(owner.get("/todos").text)[0]
    stranger = logged_in(base_url, mine.admin_email)
    assert "Secret plan" not in stranger.get("/todos").text
    assert stranger.get(f"/todos/{todo_id}/edit").status_code == 404
    token = csrf_of(stranger.get("/todos").text)
    assert stranger.post(f"/todos/{todo_id}/delete", {"csrf_token": token}).status_code == 404
    assert stranger.post(f"/todos/{todo_id}/toggle", {"csrf_token": token}).status_code == 404
    assert "Secret plan" in owner.get("/todos").text
