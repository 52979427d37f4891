"""RFC 9700 §4.1 and §2.1: redirect URIs are compared exactly (RFC 6749 §3.1.2.3), and without a known
client and a registered redirect URI the authorization endpoint never redirects (RFC 6749 §4.1.2.1)."""

import json
from urllib.parse import urlencode

import pytest
import requests
import sqlalchemy as sa
from conftest import GPT_CALLBACK
from conftest import Person
from conftest import csrf_of
from conftest import gpt_params
from conftest import idp
from conftest import pkce_pair
from conftest import register


def test_unknown_client_gets_an_html_error_page_not_a_redirect(base_url, gpt):
    response = idp(base_url, gpt_params(gpt, client_id="no-such-client"))
    assert response.status_code == 400 and "Location" not in response.headers
    assert "text/html" in response.headers["Content-Type"]
    assert "No app with the client_id" in response.text


def test_missing_client_id_gets_an_html_error_page(base_url, gpt):
    response = idp(base_url, gpt_params(gpt, client_id=None))
    assert response.status_code == 400 and "no client_id" in response.text


def test_repeated_client_id_gets_an_error_page(base_url, gpt):
    query = urlencode(gpt_params(gpt)) + "&client_id=other"
    response = requests.get(f"{base_url}/idp?{query}", allow_redirects=False)
    assert response.status_code == 400 and "more than one client_id" in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        GPT_CALLBACK + "/extra",  # suffix
        GPT_CALLBACK[:-1],  # prefix
        GPT_CALLBACK.upper(),  # case
        GPT_CALLBACK.replace("https", "http"),
        GPT_CALLBACK + "?x=1",
        GPT_CALLBACK + "#x",  # fragment (RFC 6749 §3.1.2)
        GPT_CALLBACK.replace("/oauth/", "/oauth/../oauth/"),
        GPT_CALLBACK.replace("https://", "https://user@"),
        GPT_CALLBACK.replace("/aip/", "/aip%2F"),
        "https://evil.test/callback",
    ],
)
def test_an_unregistered_redirect_uri_gets_an_html_error_page(base_url, gpt, redirect_uri):
    response = idp(base_url, gpt_params(gpt, redirect_uri=redirect_uri))
    assert response.status_code == 400 and "Location" not in response.headers
    assert "is not registered for ChatGPT" in response.text


def test_errors_are_checked_after_the_client_even_with_a_bad_response_type(base_url, gpt):
    response = idp(base_url, gpt_params(gpt, redirect_uri="https://evil.test/", response_type="token"))
    assert response.status_code == 400 and "Location" not in response.headers


def test_several_registered_uris_and_none_in_the_request_gets_an_error_page(base_url, world):
    client = world.client(redirect_uris=(GPT_CALLBACK, "https://chatgpt.com/aip/g-1/oauth/callback"))
    response = idp(base_url, gpt_params(client, redirect_uri=None))
    assert response.status_code == 400 and "several redirect URIs" in response.text


@pytest.mark.parametrize("port", ["", ":1", ":51004"])
def test_a_loopback_redirect_uri_matches_on_any_port(base_url, org, world, port):
    client = world.client(redirect_uris=("http://127.0.0.1/callback",), public=True)
    _verifier, challenge = pkce_pair()
    params = gpt_params(client, redirect_uri=f"http://127.0.0.1{port}/callback", code_challenge=challenge)
    params["code_challenge_method"] = "S256"
    response = Person(base_url, org.admin_email).authorize(params)
    assert response.headers["Location"].startswith(f"http://127.0.0.1{port}/callback?code=")


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8080/other",
        "http://127.0.0.2:8080/callback",
        "http://localhost:80@evil.test/callback",
        "http://127.0.0.1:8080@evil.test/callback",
        "http://user@127.0.0.1:8080/callback",  # userinfo on the loopback host itself
        "http://user:pass@127.0.0.1:8080/callback",
        "http://evil.test\\@127.0.0.1:8080/callback",  # parsers disagree on where the host starts
        "http://127.0.0.1:8080/callback/..%2Fother",
        "https://127.0.0.1:8080/callback",
        "http://127.0.0.1:8080/callback#frag",
    ],
)
def test_loopback_matching_still_checks_host_path_and_userinfo(base_url, world, uri):
    client = world.client(redirect_uris=("http://127.0.0.1/callback",), public=True)
    response = idp(base_url, gpt_params(client, redirect_uri=uri))
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "ws://evil.test/cb",
        "wss://evil.test/cb",
        "ftp://evil.test/cb",
        "https:///evil.test/cb",  # no host
        "https:evil.test/cb",
        "https://a.test/" + "x" * 600,  # longer than a client can register
        "http://example.com/cb",
        "https://example.com/cb#fragment",
        "https://user:pw@example.com/cb",
        "/relative",
        "",
    ],
)
def test_unsafe_redirect_uris_are_refused(base_url, uri):
    response = register(base_url, redirect_uris=[uri])
    assert response.status_code == 400 and response.json()["error"] == "invalid_redirect_uri"


CSP_INJECTIONS = [
    "https://x.example;frame-ancestors *;/cb",  # a directive in the host: framing allowed again
    "https://x.example;frame-ancestors%20*/cb",
    "https://x.example\tframe-ancestors/cb",
    "https://x.example\r\nSet-Cookie: a=b/cb",
    "https://*.example/cb",  # a wildcard is not a host
    "https://x.example /cb",
    "https://b\u00fccher.example/cb",  # IDNs register in their xn-- form
    "https://x.example/c%zz",
    "https://-x.example/cb",
    "https://x..example/cb",
    "https://999.1.1.1/cb",
    "https://x.example:0/cb",
    "https://x.example:99999/cb",
    "cursor://bad host/cb",
    "https://[fe80::1%25;sandbox;]/cb",  # an IPv6 zone id carries anything
    "https://[v1.x]/cb",  # IPvFuture, written into a header as another host
]


@pytest.mark.parametrize("uri", CSP_INJECTIONS)
def test_rfc3986_3_2_2_only_a_valid_host_is_registered_by_any_path(app, base_url, world, operator, uri):
    assert register(base_url, redirect_uris=[uri]).json()["error"] == "invalid_redirect_uri"
    cli = app.test_cli_runner().invoke(args=["create-client", "--name", "X", "--redirect-uri", uri])
    assert cli.exit_code != 0
    page = operator.get("/setup")
    created = operator.post("/setup/gpt", {"csrf_token": csrf_of(page.text), "name": "X"})
    client_id = created.text.split('id="client-id" readonly value="')[1].split('"')[0]
    form = {"csrf_token": csrf_of(page.text), "redirect_uri": uri, "confirm": "yes"}
    refused = operator.post(f"/setup/clients/{client_id}/redirect-uris", form)
    assert refused.status_code == 302 and "must" in operator.get(refused.headers["Location"]).text
    registered = world.sql(sa.text("SELECT redirect_uris FROM client WHERE client_id = :c"), c=client_id).scalar()
    assert (json.loads(registered) if isinstance(registered, str) else registered) == []


def test_a_header_gets_the_origin_from_parsed_parts_even_for_a_row_from_before_the_rules(base_url, org, world):
    # A client stored before the rules (or written straight into the database) still cannot
    # put a directive into the consent page's CSP: form-action is serialized from checked parts.
    client = world.client(redirect_uris=("https://ok.example/cb",))
    bad = CSP_INJECTIONS[0]
    update = sa.text("UPDATE client SET redirect_uris = :u WHERE client_id = :c")
    world.sql(update, u=json.dumps([bad]), c=client.client_id)
    person = Person(base_url, org.admin_email)
    page = person.authorize(gpt_params(client, redirect_uri=bad), decision=None)
    assert page.status_code == 200 and 'name="decision"' in page.text
    policy = page.headers["Content-Security-Policy"]
    directives = [d.split()[0] for d in policy.split(";") if d.strip()]
    assert directives.count("frame-ancestors") == 1 and "frame-ancestors 'none'" in policy and "*" not in policy
    world.sql(sa.text("DELETE FROM client WHERE client_id = :c"), c=client.client_id)


def test_check_registry_reports_apps_that_break_todays_rules(app, world):
    client = world.client(redirect_uris=("https://ok.example/cb",), name="Old app")
    world.sql(
        sa.text("UPDATE client SET redirect_uris = :u WHERE client_id = :c"),
        u=json.dumps(["https://*.example/cb"]),
        c=client.client_id,
    )
    result = app.test_cli_runner().invoke(args=["check-registry"])
    assert result.exit_code != 0 and client.client_id in result.output and "*.example" in result.output
    world.sql(sa.text("DELETE FROM client WHERE client_id = :c"), c=client.client_id)
