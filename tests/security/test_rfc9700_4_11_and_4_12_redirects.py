"""RFC 9700 §4.11 (open redirection) and §4.12 (307): the app redirects only to its own pages or to a
registered redirect URI, and answers a POST with 302 or 303, never 307."""

from urllib.parse import urlencode

import pytest
from conftest import Person
from conftest import csrf_of
from conftest import gpt_params
from conftest import idp


@pytest.mark.parametrize(
    "target",
    [
        "//evil.test/",
        "/\\evil.test/",
        "\\\\evil.test",
        "https://evil.test/",
        "javascript:alert(1)",
        "/%2F%2Fevil.test/",
        "/%252F%252Fevil.test/",
        "/%5Cevil.test",
        "/\t/evil.test",
        "%2F%2Fevil.test",
        "evil.test",
    ],
)
def test_login_ignores_a_returnto_that_is_not_a_same_origin_path(base_url, org, target):
    response = Person(base_url, org.member_email).login(return_to=target)
    assert response.headers["Location"] == "/todos"


def test_the_consent_post_answers_302_or_303_never_307(base_url, org, gpt):
    """RFC 9700 §4.12: a 307 would make the browser re-send the form, password fields included."""
    for decision in ("allow", "deny"):
        response = Person(base_url, org.admin_email).authorize(gpt_params(gpt, prompt="consent"), decision=decision)
        assert response.status_code in (302, 303)


@pytest.mark.parametrize("target", ["https://evil.test/", "//evil.test/", "/\\evil.test", "javascript:alert(1)"])
def test_logout_never_redirects_off_site(base_url, org, target):
    person = Person(base_url, org.member_email)
    person.login()
    token = csrf_of(person.get("/todos").text)
    response = person.post("/logout?" + urlencode({"next": target, "returnTo": target}), {"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"


@pytest.mark.parametrize("redirect_uri", ["https://evil.test/cb", "//evil.test/cb"])
def test_authorization_errors_for_an_unverified_redirect_uri_are_shown_not_redirected(base_url, gpt, redirect_uri):
    """§4.11.2: the authorization endpoint must not become an open redirector through its errors."""
    for extra in ({"response_type": "token"}, {"scope": "nonsense"}, {"client_id": "no-such-client"}, {}):
        response = idp(base_url, gpt_params(gpt, redirect_uri=redirect_uri, **extra))
        assert response.status_code == 400 and "Location" not in response.headers
