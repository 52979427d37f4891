"""Todos on the web: the organization's list, add, edit, complete, delete."""

from conftest import add_todo
from conftest import csrf_of
from conftest import logged_in
from conftest import todo_ids


def test_members_of_an_organization_share_its_todos(base_url, org):
    admin, member = logged_in(base_url, org.admin_email), logged_in(base_url, org.member_email)
    add_todo(admin, "Quarterly report", notes="Numbers from finance", due_date="2026-12-31")
    page = member.get("/todos").text
    assert "Quarterly report" in page and "Numbers from finance" in page and "2026-12-31" in page
    assert "Ada Admin" in page  # created by


def test_edit_complete_and_delete(base_url, org):
    person = logged_in(base_url, org.admin_email)
    add_todo(person, "Draft")
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
