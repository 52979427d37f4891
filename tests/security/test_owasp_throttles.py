"""Every form that checks a secret or costs a password hash is throttled, and no throttle lets a
stranger lock the owner out (OWASP Authentication and Credential Stuffing cheat sheets); what an
anonymous request can make the server store is bounded."""

import json

import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Person
from conftest import csrf_of
from conftest import gpt_params
from conftest import idp
from conftest import setting


def sign_up(base_url: str, n: int) -> requests.Response:
    person = Person(base_url, f"founder{n}@signup.test")
    page = person.get("/signup")
    form = {"csrf_token": csrf_of(page.text), "organization": "", "name": "", "email": "x", "password": "x"}
    return person.post("/signup", form)  # refused by its rules, but each one could cost a hash


def test_signup_is_throttled_per_address(app, base_url):
    with setting(app, "SIGNUP_RATE_LIMIT", "2 per minute"):
        statuses = [sign_up(base_url, n).status_code for n in range(3)]
    assert statuses == [200, 200, 429]


def test_wrong_current_passwords_are_throttled_per_member(app, base_url, world):
    org = world.org()
    person = Person(base_url, org.member_email)
    person.login()

    def change(current: str) -> int:
        page = person.get("/settings/password")
        form = {"csrf_token": csrf_of(page.text), "current_password": current, "new_password": PASSWORD + "?"}
        return person.post("/settings/password", form).status_code

    with setting(app, "PASSWORD_RATE_LIMIT", "2 per minute"):
        guesses = [change("wrong guess") for _ in range(3)]
        right = change(PASSWORD)
    assert guesses == [200, 200, 429] and right == 429


def failed_login_from(base_url: str, email: str, address: str, password: str = "wrong") -> int:
    person = Person(base_url, email, password)
    person.http.headers["X-Forwarded-For"] = address  # behind the one trusted proxy the tests assume
    return person.login().status_code


def test_a_guesser_elsewhere_cannot_lock_the_owner_out(app, base_url, world):
    org = world.org()
    with setting(app, "LOGIN_ACCOUNT_RATE_LIMIT", "2 per minute"):
        guesses = [failed_login_from(base_url, org.member_email, "203.0.113.66") for _ in range(3)]
        owner = failed_login_from(base_url, org.member_email, "198.51.100.20", PASSWORD)
    assert guesses == [200, 200, 429] and owner == 302


def rejected_rows(world, client_id: str) -> list[tuple[str, int]]:
    query = sa.text(
        "SELECT r.redirect_uri, r.count FROM rejected_redirect r JOIN client c ON c.id = r.client_id "
        "WHERE c.client_id = :c"
    )
    return [(row[0], row[1]) for row in world.sql(query, c=client_id).all()]


def test_what_anonymous_idp_requests_store_is_bounded(base_url, world, gpt):
    for n in range(15):
        idp(base_url, gpt_params(gpt, redirect_uri=f"https://chatgpt.com/aip/g-{n}/oauth/callback"))
    idp(base_url, gpt_params(gpt, redirect_uri="https://chatgpt.com/aip/g-14/oauth/callback"))  # a repeat
    idp(base_url, gpt_params(gpt, redirect_uri="https://evil.example/" + "x" * 8000))  # junk nobody could register
    idp(base_url, gpt_params(gpt, client_id="no-such-client", redirect_uri="https://a.example/cb"))
    rows = rejected_rows(world, gpt.client_id)
    assert len(rows) == 10 and ("https://chatgpt.com/aip/g-14/oauth/callback", 2) in rows
    assert all(len(uri) < 100 for uri, _ in rows)
    assert (
        world.sql(sa.text("SELECT count(*) FROM rejected_redirect WHERE redirect_uri LIKE '%a.example%'")).scalar() == 0
    )
    registered = world.sql(sa.text("SELECT redirect_uris FROM client WHERE client_id = :c"), c=gpt.client_id).scalar()
    assert (json.loads(registered) if isinstance(registered, str) else registered) == [gpt.redirect_uri]
