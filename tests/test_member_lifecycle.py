"""A new password, a new role or a removal ends the member's grants: the API answers 401 at once
and a refresh answers invalid_grant."""

import requests
from conftest import PASSWORD
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import csrf_of
from conftest import exchange
from conftest import gpt_params
from conftest import token_request


def connected(base_url, email, gpt) -> dict:
    person = Person(base_url, email)
    return exchange(base_url, gpt, callback_params(person.authorize(gpt_params(gpt)))["code"]).json()


def assert_cut_off(base_url, gpt, tokens) -> None:
    assert requests.get(f"{base_url}/api/me", headers=bearer(tokens["access_token"])).status_code == 401
    refresh = token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"


def admin(base_url, org) -> Person:
    person = Person(base_url, org.admin_email)
    person.login()
    return person


def member_id(page_html: str, email: str) -> str:
    row = page_html.split(email)[1]
    return row.split("/members/")[1].split("/")[0]


def test_a_password_change_cuts_every_app_off(base_url, world, gpt):
    org = world.org()
    tokens = connected(base_url, org.member_email, gpt)
    person = Person(base_url, org.member_email)
    person.login()
    page = person.get("/settings/password")
    wrong = person.post(
        "/settings/password",
        {"csrf_token": csrf_of(page.text), "current_password": "nope", "new_password": "another long one"},
    )
    assert "not right" in wrong.text
    assert requests.get(f"{base_url}/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    person.post(
        "/settings/password",
        {"csrf_token": csrf_of(page.text), "current_password": PASSWORD, "new_password": "another long one"},
    )
    assert_cut_off(base_url, gpt, tokens)
    assert Person(base_url, org.member_email, "another long one").login().status_code == 302


def test_a_role_change_cuts_every_app_off(base_url, world, gpt):
    org = world.org()
    tokens = connected(base_url, org.member_email, gpt)
    boss = admin(base_url, org)
    page = boss.get("/members")
    boss.post(
        f"/members/{member_id(page.text, org.member_email)}/role", {"csrf_token": csrf_of(page.text), "role": "admin"}
    )
    assert_cut_off(base_url, gpt, tokens)
    assert "admin" in boss.get("/members").text.split(org.member_email)[1].split("</tr>")[0]


def test_a_removed_member_is_cut_off_and_their_todos_stay(base_url, world, gpt):
    org = world.org()
    tokens = connected(base_url, org.member_email, gpt)
    todo = requests.post(f"{base_url}/api/todos", json={"title": "Left behind"}, headers=bearer(tokens["access_token"]))
    boss = admin(base_url, org)
    page = boss.get("/members")
    boss.post(f"/members/{member_id(page.text, org.member_email)}/remove", {"csrf_token": csrf_of(page.text)})
    assert_cut_off(base_url, gpt, tokens)
    assert f"<td>{org.member_email}</td>" not in boss.get("/members").text
    assert Person(base_url, org.member_email).login().status_code == 200  # cannot log in
    admin_tokens = connected(base_url, org.admin_email, gpt)
    kept = requests.get(
        f"{base_url}/api/todos/{todo.json()['id']}", headers=bearer(admin_tokens["access_token"])
    ).json()
    assert kept["title"] == "Left behind" and kept["created_by"] is None


def test_an_admin_cannot_touch_another_organizations_members(base_url, world):
    mine, theirs = world.org(), world.org()
    their_admin = admin(base_url, theirs)
    their_id = member_id(their_admin.get("/members").text, theirs.member_email)
    boss = admin(base_url, mine)
    token = csrf_of(boss.get("/members").text)
    assert boss.post(f"/members/{their_id}/remove", {"csrf_token": token}).status_code == 404
    assert boss.post(f"/members/{their_id}/role", {"csrf_token": token, "role": "admin"}).status_code == 404
    assert theirs.member_email in their_admin.get("/members").text


def test_members_cannot_manage_members(base_url, world):
    org = world.org()
    person = Person(base_url, org.member_email)
    person.login()
    page = person.get("/todos")
    assert person.post("/members/1/remove", {"csrf_token": csrf_of(page.text)}).status_code == 403
