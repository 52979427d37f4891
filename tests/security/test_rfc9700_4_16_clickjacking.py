"""RFC 9700 §4.16 (clickjacking): no page of the app can be framed, by CSP frame-ancestors and
X-Frame-Options; the CSP also keeps scripts, styles and forms to the app's own origin."""

from urllib.parse import urlencode

import pytest
import requests
from conftest import gpt_params

PUBLIC_PAGES = ["/", "/login", "/signup", "/idp?client_id=x", "/no-such-page", "/playground"]
SIGNED_IN_PAGES = ["/todos", "/members", "/settings/password", "/settings/connected-apps", "/setup", "/setup/audit"]


def assert_unframeable(response: requests.Response) -> None:
    policy = response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy


@pytest.mark.parametrize("path", PUBLIC_PAGES)
def test_public_pages_cannot_be_framed(base_url, path):
    assert_unframeable(requests.get(base_url + path))


def test_signed_in_pages_setup_and_the_consent_page_cannot_be_framed(operator, gpt):
    for path in SIGNED_IN_PAGES:
        response = operator.get(path)
        assert response.status_code == 200, path
        assert_unframeable(response)
    consent = operator.get("/idp?" + urlencode(gpt_params(gpt)))
    assert 'name="decision"' in consent.text
    assert_unframeable(consent)


@pytest.mark.parametrize("path", ["/", "/login", "/.well-known/jwks.json", "/api/me", "/openapi.yaml"])
def test_no_answer_may_be_sniffed_into_another_type(base_url, path):
    assert requests.get(base_url + path).headers["X-Content-Type-Options"] == "nosniff"
