"""RFC 9700 §4.2 and §4.3: codes and tokens do not leak through the Referer header, the browser's
history or a cache, and access tokens are never taken from a URL (RFC 6750 §2.3, §5.3)."""

import logging

import pytest
import requests
from conftest import Person
from conftest import callback_params
from conftest import csrf_of
from conftest import gpt_params


def test_a_token_in_the_query_string_is_ignored(base_url, tokens):
    response = requests.get(f"{base_url}/api/todos", params={"access_token": tokens["access_token"]})
    assert response.status_code == 401


def test_token_parameters_come_from_the_body_only_and_only_once(base_url, org, gpt):
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt)))["code"]
    creds = {"client_id": gpt.client_id, "client_secret": gpt.client_secret}
    in_query = requests.post(
        f"{base_url}/oauth/token?grant_type=authorization_code&code={code}",
        data={**creds, "redirect_uri": gpt.redirect_uri},
    )
    assert in_query.status_code == 400 and in_query.json()["error"] in ("unsupported_grant_type", "invalid_request")
    twice = requests.post(
        f"{base_url}/oauth/token",
        data=[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", gpt.redirect_uri),
            ("redirect_uri", "x"),
            *creds.items(),
        ],
    )
    assert twice.status_code == 400 and twice.json()["error"] == "invalid_request"


def test_the_consent_page_and_the_redirect_with_the_code_give_no_other_origin_a_referer(base_url, org, gpt):
    """§4.2.4: the callback URL holds the code, so neither it nor the page before it may be a
    Referer anywhere else. Same-origin: the app's own forms keep theirs, which the CSRF check over
    https needs."""
    person = Person(base_url, org.admin_email)
    consent = person.authorize(gpt_params(gpt), decision=None)
    assert consent.headers["Referrer-Policy"] == "same-origin"
    redirect = person.post(consent.url, {"csrf_token": csrf_of(consent.text), "decision": "allow"})
    assert "code=" in redirect.headers["Location"] and redirect.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/", "/login", "/signup", "/idp?client_id=x", "/playground", "/no-such-page"])
def test_no_page_gives_another_origin_a_referer(base_url, path):
    assert requests.get(base_url + path).headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect"])
def test_a_token_sent_twice_is_refused_at_revocation_and_introspection(base_url, gpt, tokens, path):
    # RFC 6749 §3.2, which RFC 7009 §2.1 and RFC 7662 §2.1 inherit: parameters MUST NOT repeat.
    credentials = [("client_id", gpt.client_id), ("client_secret", gpt.client_secret)]
    sent = [("token", "decoy"), ("token", tokens["access_token"]), *credentials]
    response = requests.post(f"{base_url}{path}", data=sent)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_repeated_parameter_is_named_in_error_description_syntax(base_url):
    # RFC 6749 §5.2: error_description is printable ASCII without " and \.
    response = requests.post(f"{base_url}/oauth/token", data=[('a"\\é', "1"), ('a"\\é', "2"), ("grant_type", "x")])
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in response.json()["error_description"])


def test_the_development_server_logs_no_query_string_and_names_no_version(base_url, caplog):
    # The README's tunnel recipe runs the development server: a code or secret a client put in a
    # URL must not reach its log, and its Server header must not name Werkzeug's and Python's versions.
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        response = requests.get(f"{base_url}/livez?code=secret-code-value&client_secret=hunter2")
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("GET /livez HTTP/1.1" in line for line in lines)
    assert not any("secret" in line or "hunter2" in line for line in lines)
    assert response.headers["Server"] == "Werkzeug"
