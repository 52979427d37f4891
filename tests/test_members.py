"""Members on the web: sign-up, login, organization choice, returnTo, and managing members."""

import re

import pytest
import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Person
from conftest import csrf_of
from conftest import logged_in


def signup(base_url: str, email: str, org_name: str = "Acme") -> Person:
    person = Person(base_url, email)
    page = person.get("/signup")
    response = person.post(
        "/signup",
        {
            "csrf_token": csrf_of(page.text),
            "organization": org_name,
            "name": "Sam",
            "email": email,
            "password": PASSWORD,
        },
    )
    assert response.status_code == 302 and response.headers["Location"] == "/todos"
    return person


def test_signup_creates_an_organization_and_its_admin(base_url):
    person = signup(base_url, "founder@signup.test", "Founders Inc")
    page = person.get("/todos")
    assert page.status_code == 200 and "Founders Inc todos" in page.text
    assert person.get("/members").status_code == 200  # the first member is an admin


def test_signup_rejects_a_short_password(base_url):
    person = Person(base_url, "short@signup.test")
    page = person.get("/signup")
    data = {"csrf_token": csrf_of(page.text), "organization": "X", "name": "X", "email": "short@signup.test"}
    response = person.post("/signup", {**data, "password": "short"})
    assert response.status_code == 200 and "at least 8 characters" in response.text


def test_signup_refuses_names_that_could_pass_for_someone_else(base_url):
    # The same rule as for app names (RFC 7591 §5): nothing hidden in a name people read.
    person = Person(base_url, "hidden@signup.test")
    data = {"email": "hidden@signup.test", "password": PASSWORD}
    for field, value, message in [
        ("organization", "Acme \u202eInc", "The organization name must not contain control"),
        ("name", "Sam\u200b", "The name must not contain control"),
        ("name", "x" * 101, "The name must be at most 100 characters"),
    ]:
        form = {"organization": "Acme", "name": "Sam", **data, field: value}
        response = person.post("/signup", {**form, "csrf_token": csrf_of(person.get("/signup").text)})
        assert response.status_code == 200 and message in response.text


def test_login_lands_on_todos(base_url, org):
    response = Person(base_url, org.member_email).login()
    assert response.status_code == 302 and response.headers["Location"] == "/todos"


def test_an_email_in_two_organizations_chooses_after_the_password(base_url, world):
    first, second = world.org(), world.org()
    shared = "shared@two-orgs.test"
    from connected_todos.models import Organization
    from connected_todos.models import db
    from connected_todos.registry import create_member

    with world.app.app_context():
        for org in (first, second):
            create_member(db.session.get(Organization, org.id), shared, "Shared", PASSWORD, "member")
        db.session.commit()
    person = Person(base_url, shared)
    response = person.login(return_to="/todos?show=open")
    assert response.headers["Location"].startswith("/login/organization")
    chooser = person.get(response.headers["Location"])
    assert f"Org {first.slug.removeprefix('org-')}" in chooser.text
    member_ids = re.findall(r'name="member_id" value="(\d+)"', chooser.text)
    assert len(member_ids) == 2
    chosen = person.post(
        response.headers["Location"],
        {"csrf_token": csrf_of(chooser.text), "member_id": member_ids[1], "returnTo": "/todos?show=open"},
    )
    assert chosen.headers["Location"] == "/todos?show=open"
    assert f"Org {second.slug.removeprefix('org-')} todos" in person.get("/todos").text


def test_the_organization_chooser_needs_the_password_first(base_url):
    assert Person(base_url, "x@y.test").get("/login/organization").headers["Location"] == "/login"


def test_login_follows_next_and_returnto_paths(base_url, org):
    person = Person(base_url, org.member_email)
    page = person.get("/login?next=/members")
    data = {"csrf_token": csrf_of(page.text), "email": org.member_email, "password": PASSWORD}
    assert person.post("/login?next=/members", data).headers["Location"] == "/members"
    assert Person(base_url, org.member_email).login("/idp?a=1&b=%2F").headers["Location"] == "/idp?a=1&b=%2F"


def test_an_admin_adds_a_member_who_can_then_log_in(base_url, org):
    admin = Person(base_url, org.admin_email)
    admin.login()
    page = admin.get("/members")
    data = {"csrf_token": csrf_of(page.text), "name": "New", "email": "new@added.test", "password": PASSWORD}
    response = admin.post("/members", {**data, "role": "member"})
    assert response.status_code == 302
    assert "new@added.test" in admin.get("/members").text
    assert Person(base_url, "new@added.test").login().headers["Location"] == "/todos"
    again = admin.post("/members", {**data, "csrf_token": csrf_of(admin.get("/members").text), "role": "member"})
    assert "already a member" in again.text


def test_a_member_who_is_not_an_admin_cannot_add_members(base_url, org):
    person = Person(base_url, org.member_email)
    person.login()
    assert person.get("/members").status_code == 403


def test_pages_that_need_login_redirect_to_it(base_url):
    response = requests.get(f"{base_url}/todos", allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_members_cannot_manage_members(base_url, world):
    org = world.org()
    person = Person(base_url, org.member_email)
    person.login()
    page = person.get("/todos")
    assert person.post("/members/1/remove", {"csrf_token": csrf_of(page.text)}).status_code == 403


def test_the_organization_choice_expires_after_five_minutes(base_url, world, clock):
    from connected_todos.models import Organization
    from connected_todos.models import db
    from connected_todos.registry import create_member

    first, second = world.org(), world.org()
    shared = f"late-{first.slug}@two-orgs.test"
    with world.app.app_context():
        for org in (first, second):
            create_member(db.session.get(Organization, org.id), shared, "Shared", PASSWORD, "member")
        db.session.commit()
    person = Person(base_url, shared)
    chooser_url = person.login().headers["Location"]
    chooser = person.get(chooser_url)
    member_id = re.findall(r'name="member_id" value="(\d+)"', chooser.text)[0]
    clock.shift(301)  # the password was checked more than five minutes ago
    late = person.post(chooser_url, {"csrf_token": csrf_of(chooser.text), "member_id": member_id})
    assert late.headers["Location"] == "/login"


def test_only_the_two_roles_exist(base_url, org):
    person = Person(base_url, org.admin_email)
    person.login()
    email = f"owner-{org.slug}@example.test"
    form = {"email": email, "name": "O", "password": PASSWORD, "role": "owner"}
    response = person.post("/members", {**form, "csrf_token": csrf_of(person.get("/members").text)})
    assert "Choose the role admin or member." in response.text and email not in person.get("/members").text


def test_an_admin_cannot_change_their_own_role(base_url, org, world):
    import sqlalchemy as sa

    person = Person(base_url, org.admin_email)
    person.login()
    me = world.sql(sa.text("SELECT id FROM member WHERE email = :e"), e=org.admin_email).scalar()
    response = person.post(
        f"/members/{me}/role", {"csrf_token": csrf_of(person.get("/members").text), "role": "member"}
    )
    assert response.status_code == 400 and person.get("/members").status_code == 200  # still an admin


@pytest.mark.parametrize(
    "email",
    [
        "eve\u202e@example.com",  # a right-to-left override
        "ad\u200bmin@example.com",  # a zero-width space
        "ad\u200dmin@example.com",  # a joiner: welcome in a name, never in an address
        "admin@exa\u00admple.com",  # a soft hyphen
        "x" * 250 + "@example.com",
    ],
)
def test_an_email_that_hides_characters_is_refused_everywhere(app, base_url, org, email):
    admin = logged_in(base_url, org.admin_email)
    page = admin.get("/members")
    form = {"csrf_token": csrf_of(page.text), "email": email, "name": "Eve", "password": PASSWORD, "role": "member"}
    admin.post("/members", form)
    assert email not in admin.get("/members").text
    founder = Person(base_url, email)
    signup = founder.get("/signup")
    form = {"csrf_token": csrf_of(signup.text), "organization": "Eve Inc", "name": "Eve", "email": email}
    assert founder.post("/signup", {**form, "password": PASSWORD}).status_code == 200  # the form again
    cli = app.test_cli_runner().invoke(
        args=["create-member", "--org", org.slug, "--email", email, "--password", PASSWORD]
    )
    assert cli.exit_code != 0


def test_fullwidth_letters_are_the_plain_address(base_url, org):
    # NFKC: "ａdmin" in fullwidth letters is the admin's own address, so it cannot be a look-alike
    # account, and it logs the admin in.
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in org.admin_email.split("@")[0])
    admin = Person(base_url, fullwidth + "@" + org.admin_email.split("@")[1])
    assert admin.login().status_code == 302
    page = admin.get("/members")
    form = {"csrf_token": csrf_of(page.text), "email": admin.email, "name": "Twin", "password": PASSWORD}
    assert "already a member" in admin.post("/members", form).text


def test_check_registry_reports_an_email_from_before_the_rules(app, world):
    org = world.org()
    world.sql(sa.text("UPDATE member SET email = :e WHERE email = :old"), e="ＯＬＤ@example.com", old=org.member_email)
    result = app.test_cli_runner().invoke(args=["check-registry"])
    assert result.exit_code != 0 and "ＯＬＤ@example.com" in result.output
    world.sql(sa.text("UPDATE member SET email = :e WHERE email = :old"), e=org.member_email, old="ＯＬＤ@example.com")
