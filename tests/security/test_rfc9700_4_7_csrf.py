"""RFC 9700 §4.7 (CSRF): the consent decision, login, logout and every state-changing form need the
session's own CSRF token; ``state`` is returned unchanged for the client's own check."""

import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from conftest import PASSWORD
from conftest import Person
from conftest import csrf_of
from conftest import gpt_params
from flask import Flask

from connected_todos import BLUEPRINTS
from connected_todos.web import ClientIdConverter


def test_consent_form_needs_its_csrf_token(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    page = person.authorize(gpt_params(gpt), decision=None)
    response = person.post(page.url, {"decision": "allow"})
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize("token_kind", ["wrong", "another session's"])
def test_a_consent_post_with_a_foreign_csrf_token_gets_no_code(base_url, org, gpt, token_kind):
    victim = Person(base_url, org.admin_email)
    page = victim.authorize(gpt_params(gpt, prompt="consent"), decision=None)
    if token_kind == "wrong":
        token = "not-a-token"
    else:
        attacker = Person(base_url, org.member_email)
        token = csrf_of(attacker.authorize(gpt_params(gpt, prompt="consent"), decision=None).text)
    response = victim.post(page.url, {"csrf_token": token, "decision": "allow"})
    assert response.status_code == 400 and "Location" not in response.headers


# Every form a person posts: all POST routes but the protocol endpoints, which carry no cookie
# session, and /idp, whose consent decision is tested above.
PROTOCOL_PATHS = ("/oauth/", "/api/", "/mcp", "/idp")


def routes() -> Flask:
    """The app's routes, without an app's database: its blueprints on a bare Flask."""
    site = Flask(__name__)
    site.url_map.converters["client_id"] = ClientIdConverter
    for blueprint in BLUEPRINTS:
        site.register_blueprint(blueprint)
    return site


FORM_PATHS = sorted(
    re.sub(r"<(?:\w+:)?\w+>", "1", rule.rule)
    for rule in routes().url_map.iter_rules()
    if "POST" in rule.methods and not rule.rule.startswith(PROTOCOL_PATHS)
)


def test_the_form_list_is_complete():
    assert len(FORM_PATHS) >= 18 and {"/login", "/logout", "/setup/clients/1/secret"} <= set(FORM_PATHS)


@pytest.mark.parametrize("path", FORM_PATHS)
def test_every_state_changing_form_needs_a_csrf_token(operator, org, path):
    response = operator.post(path, {"email": org.admin_email, "password": PASSWORD, "title": "x"})
    assert response.status_code == 400 and "The form expired" in response.text


def test_logout_is_a_post_with_csrf(base_url, org):
    person = Person(base_url, org.member_email)
    person.login()
    assert person.get("/logout").status_code == 405
    assert person.post("/logout", {}).status_code == 400  # no CSRF token
    page = person.get("/todos")
    assert person.post("/logout", {"csrf_token": csrf_of(page.text)}).status_code == 302
    assert person.get("/todos").status_code == 302


@pytest.mark.parametrize("token_kind", ["none", "another_browsers"])
def test_a_cross_site_login_with_the_attackers_password_is_refused(base_url, org, token_kind):
    """Login CSRF: a page elsewhere must not sign a person in as the attacker, whose todos and
    connected apps would then collect what the person types."""
    attacker = Person(base_url, org.member_email)
    data = {"email": org.member_email, "password": PASSWORD}
    if token_kind == "another_browsers":
        data["csrf_token"] = csrf_of(attacker.get("/login").text)
    victim = Person(base_url, "victim@example.com")
    response = victim.post("/login", data)
    assert response.status_code == 400
    assert victim.get("/todos").status_code == 302  # still signed out


@pytest.mark.parametrize("ask", [{"prompt": "login"}, {"max_age": "0"}])
def test_a_cross_site_request_for_a_fresh_login_logs_nobody_out(base_url, org, gpt, ask):
    # OIDC Core §3.1.2.1's prompt=login and max_age ask for the member to log in again; a link on
    # another site must not end their session with it. It ends when the new login succeeds.
    person = Person(base_url, org.admin_email)
    person.login()
    asked = person.get("/idp", params=gpt_params(gpt, **ask))
    assert asked.status_code == 302 and asked.headers["Location"].startswith("/login")
    assert person.get("/todos").status_code == 200  # still logged in
    return_to = parse_qs(urlsplit(asked.headers["Location"]).query)["returnTo"][0]
    assert "prompt=login" not in return_to and "max_age" not in return_to
    assert person.login(return_to).status_code == 302


def test_prompt_none_after_a_fresh_login_was_asked_for_answers_login_required(base_url, org, gpt):
    # OIDC Core §3.1.2.1: prompt=none shows no page; while a fresh login is pending it says so.
    person = Person(base_url, org.admin_email)
    person.login()
    person.get("/idp", params=gpt_params(gpt, prompt="login"))
    silent = person.get("/idp", params=gpt_params(gpt, prompt="none"))
    assert silent.status_code == 302 and "error=login_required" in silent.headers["Location"]


def test_a_max_age_of_thousands_of_digits_is_no_age(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    person.login()
    assert person.get("/idp", params=gpt_params(gpt, max_age="9" * 5000)).status_code < 500
