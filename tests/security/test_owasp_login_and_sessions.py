"""The login pages, after OWASP's Authentication, Session Management and Credential Stuffing cheat
sheets: throttling, no account enumeration, scrypt, a new session at login, and safe cookies."""

import hashlib
import re
import statistics
import time
import uuid

import pytest
import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Person
from conftest import csrf_of
from conftest import failed_login
from conftest import member_id
from conftest import setting
from werkzeug.security import generate_password_hash

from connected_todos.models import db
from connected_todos.registry import create_member
from connected_todos.registry import create_organization


@pytest.mark.parametrize("email_kind", ["known", "unknown"])
def test_login_failure_does_not_say_whether_the_email_exists(base_url, org, email_kind):
    email = org.member_email if email_kind == "known" else "nobody@nowhere.test"
    person = Person(base_url, email, password="wrong password")
    response = person.login()
    assert response.status_code == 200
    assert "That email and password do not match a member." in response.text


def test_logins_are_throttled_per_address(app, base_url):
    with setting(app, "LOGIN_RATE_LIMIT", "4 per minute"):
        statuses = [failed_login(base_url, f"user{i}@nowhere.test").status_code for i in range(5)]
    assert statuses[:4] == [200] * 4 and statuses[4] == 429


def test_repeated_failed_logins_for_one_account_are_throttled(app, base_url, org):
    with setting(app, "LOGIN_ACCOUNT_RATE_LIMIT", "3 per minute"):
        statuses = [failed_login(base_url, org.member_email).status_code for _ in range(3)]
        throttled = failed_login(base_url, org.member_email)
        # Even the right password waits: the account is being guessed at.
        right = failed_login(base_url, org.member_email, PASSWORD)
        other_account = failed_login(base_url, org.admin_email)
    assert statuses == [200, 200, 200] and throttled.status_code == 429 and right.status_code == 429
    assert "Too many requests" in throttled.text and int(throttled.headers["Retry-After"]) > 0
    assert other_account.status_code == 200  # another account is not locked out


def test_successful_logins_do_not_count_against_the_account(app, base_url, org):
    with setting(app, "LOGIN_ACCOUNT_RATE_LIMIT", "2 per minute"):
        assert all(Person(base_url, org.admin_email).login().status_code == 302 for _ in range(4))


def test_passwords_are_hashed_with_scrypt(world, org):
    stored = world.sql(sa.text("SELECT password_hash FROM member WHERE email = :e"), e=org.admin_email).scalar()
    assert stored.startswith("scrypt:")


def test_login_starts_a_new_session(base_url, org):
    person = Person(base_url, org.member_email)
    person.get("/login")
    before = person.http.cookies.get("session")
    person.login()
    after = person.http.cookies.get("session")
    assert before and after and before != after
    # The pre-login session cannot be replayed to act as the member.
    stale = requests.get(f"{base_url}/todos", cookies={"session": before}, allow_redirects=False)
    assert stale.status_code == 302


def test_nothing_from_before_login_survives_it(base_url, org):
    # OWASP Session Management: renew the session at login, so that what an attacker planted or
    # learned before it (here, the CSRF token of the login page) is worthless afterwards.
    person = Person(base_url, org.member_email)
    planted = csrf_of(person.get("/login").text)
    person.login()
    logout = person.post("/logout", {"csrf_token": planted})
    assert logout.status_code == 400 and person.get("/todos").status_code == 200  # still logged in
    assert person.post("/logout", {"csrf_token": csrf_of(person.get("/todos").text)}).status_code == 302


def test_session_cookie_is_httponly_and_lax(base_url):
    response = requests.get(f"{base_url}/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_over_https_behind_a_proxy(base_url):
    response = requests.get(f"{base_url}/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["Set-Cookie"]


def test_hsts_over_https_only(base_url):
    """RFC 6797: behind a TLS proxy every answer pins https (RFC 6749 §10.9 requires TLS)."""
    secure = requests.get(f"{base_url}/login", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "Strict-Transport-Security" not in requests.get(f"{base_url}/login").headers


def test_an_unknown_email_costs_as_much_time_as_a_known_one(base_url, org):
    """Not a speed test: without a dummy password hash an unknown email answers many times sooner,
    which tells an attacker who is a member. Interleaved samples cancel the machine's noise."""
    timings: dict[str, list[float]] = {org.member_email: [], "nobody@nowhere.test": []}
    for _ in range(5):
        for email, samples in timings.items():
            person = Person(base_url, email, "wrong password")
            data = {"csrf_token": csrf_of(person.get("/login").text), "email": email, "password": "wrong password"}
            started = time.perf_counter()
            assert person.post("/login", data).status_code == 200
            samples.append(time.perf_counter() - started)
    known, unknown = (statistics.median(samples) for samples in timings.values())
    assert known / 2 < unknown < known * 2, (known, unknown)


def test_a_session_cookie_replayed_from_another_browser_is_dropped(base_url, org):
    # OWASP Session Management: Flask-Login's strong protection binds the session to its browser.
    person = Person(base_url, org.admin_email)
    person.login()
    assert person.get("/todos").status_code == 200
    thief = requests.Session()
    thief.cookies.update(person.http.cookies)
    stolen = thief.get(f"{base_url}/todos", headers={"User-Agent": "another-browser/1.0"}, allow_redirects=False)
    assert stolen.status_code == 302 and stolen.headers["Location"].startswith("/login")


def scrypt_calls_of_a_failed_login(app, monkeypatch, email: str) -> int:
    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"csrf_token": token, "email": email, "password": "wrong"}).status_code == 200
    monkeypatch.undo()
    return len(calls)


def test_a_failed_login_costs_one_scrypt_however_many_accounts_share_the_email(app, monkeypatch, world):
    # OWASP ASVS 2.2: the time of a failed login tells nothing about how many organizations an
    # email belongs to (it was one scrypt per account: 149 ms for four against 77 ms for one).
    shared = f"shared-{uuid.uuid4().hex[:8]}@example.test"
    alone = f"alone-{uuid.uuid4().hex[:8]}@example.test"
    with app.app_context():
        for n in range(4):
            create_member(create_organization(f"Shared {n} {shared}"), shared, "Sam", PASSWORD, "member")
        create_member(create_organization(f"Alone {alone}"), alone, "Al", PASSWORD, "member")
        db.session.commit()
    costs = [scrypt_calls_of_a_failed_login(app, monkeypatch, email) for email in (shared, alone, "no@one.test")]
    assert costs == [1, 1, 1]


def test_a_password_hash_from_before_email_salts_still_works_and_is_remade(base_url, world, org):
    legacy = generate_password_hash(PASSWORD)  # Werkzeug's random salt
    world.sql(sa.text("UPDATE member SET password_hash = :h WHERE email = :e"), h=legacy, e=org.member_email)
    assert Person(base_url, org.member_email).login().status_code == 302
    remade = world.sql(sa.text("SELECT password_hash FROM member WHERE email = :e"), e=org.member_email).scalar()
    assert remade != legacy and remade.startswith("scrypt:32768:8:1$email.")


def copied(person: Person) -> requests.Session:
    """Another HTTP session that presents the same session cookie, from the same browser."""
    thief = requests.Session()
    thief.cookies.update(person.http.cookies)
    return thief


def opens_todos(http: requests.Session, base_url: str, **headers) -> bool:
    return http.get(f"{base_url}/todos", headers=headers, allow_redirects=False).status_code == 200


def test_asvs_3_3_1_logout_ends_the_session_on_the_server(base_url, org):
    person = Person(base_url, org.member_email)
    person.login()
    thief = copied(person)
    assert opens_todos(thief, base_url)
    person.post("/logout", {"csrf_token": csrf_of(person.get("/todos").text)})
    assert not opens_todos(thief, base_url)


def test_asvs_3_3_3_a_new_password_ends_every_other_session(base_url, world):
    org = world.org()
    here, elsewhere = Person(base_url, org.member_email), Person(base_url, org.member_email)
    here.login()
    elsewhere.login()
    thief = copied(here)
    page = here.get("/settings/password")
    form = {"csrf_token": csrf_of(page.text), "current_password": PASSWORD, "new_password": PASSWORD + "!"}
    assert here.post("/settings/password", form).status_code == 302
    assert opens_todos(here.http, base_url)  # the browser that changed it stays in, with a new session
    assert not opens_todos(elsewhere.http, base_url) and not opens_todos(thief, base_url)


@pytest.mark.parametrize("change", ["role", "remove"])
def test_a_role_change_or_a_removal_ends_the_members_sessions(base_url, org, change):
    member = Person(base_url, org.member_email)
    member.login()
    admin = Person(base_url, org.admin_email)
    admin.login()
    page = admin.get("/members")
    target = member_id(page.text, org.member_email)
    form = {"csrf_token": csrf_of(page.text), "role": "admin"}
    assert admin.post(f"/members/{target}/{change}", form).status_code == 302
    assert not opens_todos(member.http, base_url)
    assert opens_todos(admin.http, base_url)


def test_a_forged_forwarded_for_cannot_carry_a_session_to_another_address(base_url, org):
    # Flask-Login hashed the first X-Forwarded-For entry, which the client writes: a thief who
    # named the victim's address there passed. Behind one trusted proxy, the proxy's entry counts.
    victim = Person(base_url, org.member_email)
    victim.http.headers["X-Forwarded-For"] = "198.51.100.7"
    victim.login()
    assert opens_todos(victim.http, base_url)
    thief = copied(victim)
    assert not opens_todos(thief, base_url, **{"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})


def two_organizations(world) -> str:
    """An email with an account, and the same password, in two organizations."""
    shared = f"twice-{uuid.uuid4().hex[:8]}@example.test"
    with world.app.app_context():
        for n in range(2):
            create_member(create_organization(f"Twice {n} {shared}"), shared, "Tess", PASSWORD, "member")
        db.session.commit()
    return shared


def test_the_organization_choice_is_kept_on_the_server_and_used_once(base_url, world):
    # It was the list of matched accounts in the signed cookie: a copy replayed from anywhere for
    # five minutes, after logout or a new password, and forged by whoever knew SECRET_KEY.
    email = two_organizations(world)
    person = Person(base_url, email)
    assert person.login().headers["Location"].startswith("/login/organization")
    chooser = person.get("/login/organization")
    member_ids = re.findall(r'name="member_id" value="(\d+)"', chooser.text)
    thief = copied(person)
    assert (
        thief.get(
            f"{base_url}/login/organization", headers={"User-Agent": "another"}, allow_redirects=False
        ).status_code
        == 302
    )
    chosen = person.post("/login/organization", {"csrf_token": csrf_of(chooser.text), "member_id": member_ids[0]})
    assert chosen.status_code == 302 and person.get("/todos").status_code == 200
    replay = thief.post(
        f"{base_url}/login/organization",
        data={"csrf_token": csrf_of(chooser.text), "member_id": member_ids[1]},
        allow_redirects=False,
    )
    assert replay.headers.get("Location", "").startswith("/login")  # used up


def test_a_forged_organization_choice_opens_nothing(app, base_url, org):
    # With SECRET_KEY in hand one can sign any cookie; the choice it names must exist on the server.
    from flask.sessions import SecureCookieSessionInterface

    signer = SecureCookieSessionInterface().get_signing_serializer(app)
    forged = signer.dumps({"org_choice": {"ids": [1, 2], "at": int(time.time())}})
    http = requests.Session()
    http.cookies.set("session", forged)
    assert http.get(f"{base_url}/login/organization", allow_redirects=False).headers["Location"].startswith("/login")


def test_one_ipv6_subscriber_network_is_one_address_to_the_login_throttle(app, base_url, world):
    org = world.org()
    with setting(app, "LOGIN_ACCOUNT_RATE_LIMIT", "2 per minute"):
        statuses = []
        for n in range(3):
            person = Person(base_url, org.member_email, "wrong")
            person.http.headers["X-Forwarded-For"] = f"2001:db8:1:2::{n + 1:x}"  # one /64
            statuses.append(person.login().status_code)
    assert statuses == [200, 200, 429]


def test_while_old_hashes_remain_every_failed_login_costs_the_same(app, monkeypatch, world):
    # An account whose hash predates email salts costs a second scrypt; until none remain, every
    # failed login pays for one, so that time does not single such accounts out.
    org = world.org()
    legacy = generate_password_hash(PASSWORD)
    world.sql(sa.text("UPDATE member SET password_hash = :h WHERE email = :e"), h=legacy, e=org.member_email)
    try:
        costs = [
            scrypt_calls_of_a_failed_login(app, monkeypatch, e)
            for e in (org.member_email, org.admin_email, "no@one.test")
        ]
    finally:
        Person(world.base_url, org.member_email).login()  # remade at login
    assert costs == [2, 2, 2]


def test_password_salts_are_keyed_by_the_deployment(app, world, org):
    # The salt is not the email's alone: no one can prepare guesses for an email before they hold
    # this deployment's database.
    stored = world.sql(sa.text("SELECT password_hash FROM member WHERE email = :e"), e=org.admin_email).scalar()
    unkeyed = "email." + hashlib.sha256(f"connected-todos:{org.admin_email}".encode()).hexdigest()[:32]
    assert stored.split("$")[1].startswith("email.") and stored.split("$")[1] != unkeyed
