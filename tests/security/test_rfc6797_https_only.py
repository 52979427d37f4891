"""With an https PUBLIC_URL, the app is served over https only (RFC 6749 §3.1 and §3.2 require TLS):
plain http is redirected or refused, cookies are always Secure, and HSTS is always sent (RFC 6797)."""

import pytest
import requests
from conftest import PASSWORD
from conftest import csrf_of
from conftest import setting

PUBLIC = "https://todos.example.com"
HTTP = {"X-Forwarded-Proto": "http"}  # what the one trusted proxy says of a plain-http request
HTTPS = {"X-Forwarded-Proto": "https"}


@pytest.fixture
def https_only(app):
    with setting(app, "PUBLIC_URL", PUBLIC):
        yield


def test_a_page_asked_for_over_http_is_sent_to_https(base_url, https_only):
    response = requests.get(f"{base_url}/login?returnTo=/todos", headers=HTTP, allow_redirects=False)
    assert response.status_code == 308 and response.headers["Location"] == f"{PUBLIC}/login?returnTo=/todos"
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    ("path", "kind"), [("/oauth/token", "oauth"), ("/api/todos", "api"), ("/mcp", "mcp"), ("/login", "page")]
)
def test_a_request_with_a_body_over_http_is_refused_in_its_protocols_format(base_url, https_only, path, kind):
    # Its secrets already crossed the network in the clear; a redirect would only send them again.
    response = requests.post(base_url + path, data={"x": "y"}, headers=HTTP, allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "https" in response.text
    if kind != "page":
        assert response.headers["Content-Type"].startswith("application/json")


def test_behind_a_proxy_that_strips_the_scheme_http_is_refused_not_looped(base_url, https_only):
    response = requests.get(f"{base_url}/login", allow_redirects=False)  # no X-Forwarded-Proto at all
    assert response.status_code == 400 and "X-Forwarded-Proto" in response.text


def test_over_https_cookies_are_secure_and_hsts_is_sent(base_url, https_only):
    response = requests.get(f"{base_url}/login", headers=HTTPS)
    assert response.status_code == 200 and "Secure" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_health_checks_answer_over_plain_http_with_hsts(base_url, https_only):
    # Platforms check health over http inside their network; RFC 6797 §8.1 has browsers ignore
    # HSTS over http, so sending it always costs nothing.
    response = requests.get(f"{base_url}/livez", headers=HTTP)
    assert response.status_code == 200 and "Strict-Transport-Security" in response.headers


def login_over_https(base_url: str, email: str, referer: str) -> requests.Response:
    http = requests.Session()
    http.headers.update({**HTTPS, "Referer": referer})
    page = http.get(f"{base_url}/login")
    for cookie in http.cookies:
        cookie.secure = False  # the test reaches the app over http, as its TLS-terminating proxy does
    form = {"csrf_token": csrf_of(page.text), "email": email, "password": PASSWORD}
    return http.post(f"{base_url}/login", data=form, allow_redirects=False)


def test_a_form_posted_over_https_works_as_a_browser_sends_it(base_url, https_only, org):
    # Flask-WTF checks the Referer of a form posted over https; a browser sends one only if the
    # page's Referrer-Policy lets it (same-origin does; no-referrer did not, and every login failed).
    assert requests.get(f"{base_url}/login", headers=HTTPS).headers["Referrer-Policy"] == "same-origin"
    own_page = f"https://{base_url.removeprefix('http://')}/login"
    assert login_over_https(base_url, org.admin_email, own_page).status_code == 302
    assert login_over_https(base_url, org.admin_email, "https://evil.example/").status_code == 400
