"""Real-browser journeys in headless Chromium (Playwright): an operator connects a GPT, ChatGPT's
authorization request goes through login and consent, the browser really follows the redirect
with the code, and a member cuts the GPT off; then the playground, step by step.

Screenshots of each page land in docs/screenshots/, which the README shows.
"""

import http.server
import os
import threading
import uuid
from typing import ClassVar
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
from conftest import CHROMIUM
from conftest import PASSWORD
from conftest import Person
from conftest import add_todo
from conftest import bearer
from conftest import shot
from playwright.sync_api import expect

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"
)


class Callbacks(http.server.BaseHTTPRequestHandler):
    """A stand-in for ChatGPT's callback endpoint: it records what the browser brings."""

    received: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Callbacks.received.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<h1>Stand-in callback</h1>")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def callback_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callbacks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/aip/g-standin/oauth/callback"
    server.shutdown()


def test_the_whole_gpt_journey_in_a_browser(app, base_url, world, browser, callback_server):
    email = f"founder-{uuid.uuid4().hex[:8]}@browser.test"
    operator = browser.new_context(viewport={"width": 1100, "height": 900})
    page = operator.new_page()

    # 1. Sign-up, then the todos page.
    page.goto(f"{base_url}/signup")
    page.get_by_label("Organization name").fill("Browser Org")
    page.get_by_label("Your name").fill("Bea Browser")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create organization").click()
    page.wait_for_url(f"{base_url}/todos")
    assert page.get_by_role("heading", name="Browser Org todos").is_visible()

    # 2. /setup creates a GPT client (the new admin is made an operator first).
    query = "SELECT o.slug FROM organization o JOIN member m ON m.organization_id = o.id WHERE m.email = :e"
    slug = world.sql(sa.text(query), e=email).scalar()
    assert app.test_cli_runner().invoke(args=["make-operator", "--org", slug, email]).exit_code == 0
    page.goto(f"{base_url}/setup")
    page.get_by_role("button", name="Create the GPT's credentials").click()
    client_id = page.locator("#client-id").input_value()
    client_secret = page.locator("#client-secret").input_value()
    assert client_id and client_secret
    page.get_by_label("Callback URL", exact=True).fill(callback_server)
    page.get_by_role("button", name="Add callback URL").click()
    page.get_by_label("I confirm this URL belongs to ChatGPT").check()  # not ChatGPT's shape: confirm
    page.get_by_role("button", name="Add it anyway").click()
    assert page.locator(f"code:text('{callback_server}')").first.is_visible()
    shot(page, "setup")

    # 3. An authorization request exactly as ChatGPT sends it: no PKCE, a UUID state, commas.
    state = str(uuid.uuid4())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": callback_server,
            "scope": "openid,profile,email,todos:read,todos:write",
            "state": state,
        }
    )
    member = browser.new_context(viewport={"width": 1100, "height": 900})
    visitor = member.new_page()
    visitor.goto(f"{base_url}/idp?{query}")

    # 4. Login, then consent.
    visitor.wait_for_url(lambda url: url.startswith(f"{base_url}/login"))
    shot(visitor, "login")
    visitor.get_by_label("Email").fill(email)
    visitor.get_by_label("Password").fill(PASSWORD)
    visitor.get_by_role("button", name="Log in").click()
    visitor.wait_for_url(lambda url: url.startswith(f"{base_url}/idp"))
    assert visitor.get_by_text("Browser Org").first.is_visible()
    shot(visitor, "consent")

    # 5. The browser really follows the redirect with the code (a CSP form-action could block it).
    visitor.get_by_role("button", name="Allow").click()
    visitor.wait_for_url(lambda url: url.startswith(f"{callback_server}"))
    # The browser may also ask the stand-in for /favicon.ico: take the callback itself.
    received = parse_qs(urlsplit(next(p for p in reversed(Callbacks.received) if "code=" in p)).query)
    assert received["state"] == [state] and received["iss"] == [base_url]

    # 5b. Consent is remembered: a second request goes from the login form straight on to the
    # callback, through two redirects that the login page's CSP form-action must allow.
    again = browser.new_context()
    second = again.new_page()
    second.goto(f"{base_url}/idp?{query}")
    second.wait_for_url(lambda url: url.startswith(f"{base_url}/login"))
    csp = second.evaluate("() => fetch(location.href).then(r => r.headers.get('content-security-policy'))")
    assert f"form-action 'self' {urlsplit(callback_server).scheme}://{urlsplit(callback_server).netloc}" in csp
    second.get_by_label("Email").fill(email)
    second.get_by_label("Password").fill(PASSWORD)
    second.get_by_role("button", name="Log in").click()
    second.wait_for_url(lambda url: url.startswith(callback_server))
    again.close()

    # 6. The code is exchanged.
    tokens = requests.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": received["code"][0],
            "redirect_uri": callback_server,
            "client_id": client_id,
            "client_secret": client_secret,
        },
    ).json()
    headers = bearer(tokens["access_token"])

    # 7. A todo created through the API appears on the web page.
    created = requests.post(f"{base_url}/api/todos", json={"title": "Made by the GPT"}, headers=headers)
    assert created.status_code == 201
    page.goto(f"{base_url}/todos")
    assert page.get_by_text("Made by the GPT").is_visible()
    shot(page, "todos")

    # 8. Revoking on the connected-apps page makes the API answer 401.
    visitor.goto(f"{base_url}/settings/connected-apps")
    assert visitor.get_by_text("ChatGPT").first.is_visible()
    shot(visitor, "connected-apps")
    visitor.get_by_role("button", name="Revoke").click()
    visitor.wait_for_url(f"{base_url}/settings/connected-apps")
    assert requests.get(f"{base_url}/api/todos", headers=headers).status_code == 401
    operator.close()
    member.close()


def test_the_playground_journey_in_a_browser(base_url, browser, org):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(f"{base_url}/")
    page.get_by_role("link", name="playground").first.click()
    page.wait_for_url(f"{base_url}/playground")
    page.get_by_role("button", name="Build it and go to /idp").click()
    page.wait_for_url(lambda url: url.startswith(f"{base_url}/login"))
    page.get_by_label("Email").fill(org.member_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(
        lambda url: url.startswith(f"{base_url}/idp")
    )  # prompt=consent shows the page even to a first-party client
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(lambda url: url.startswith(f"{base_url}/playground/callback"))
    assert "state matches: true" in page.locator("#out-authorize").inner_text()
    assert "iss is this server: true" in page.locator("#out-authorize").inner_text()

    page.get_by_role("button", name="Exchange the code").click()
    page.locator("#out-token", has_text="access_token").wait_for()
    page.get_by_role("button", name="Decode and verify").click()
    page.locator("#out-verify", has_text='"signature": "valid"').wait_for()
    assert "INVALID" not in page.locator("#out-verify").inner_text()
    page.get_by_role("button", name="GET /api/todos").click()
    page.locator("#out-api", has_text="→ 200").wait_for()
    page.get_by_role("button", name="Refresh").click()
    page.locator("#out-refresh", has_text="→ 200").wait_for()
    page.get_by_role("button", name="Revoke").click()
    page.locator("#out-refresh", has_text="→ 401").wait_for()
    shot(page, "playground")

    # 6. MCP: a token for /mcp, tools/list, tools/call list_todos, and the todos view, rendered as a
    # host renders it; ticking a todo there calls complete_todo on /mcp through the page.
    member = Person(base_url, org.member_email)
    member.login()
    add_todo(member, "Seen in the playground's view")
    page.get_by_role("button", name="Get a token for /mcp").click()
    page.wait_for_url(lambda url: url.startswith(f"{base_url}/playground/callback"))
    page.locator("#out-mcp", has_text="→ 200").wait_for()
    page.get_by_role("button", name="tools/list").click()
    page.locator("#out-mcp", has_text='"list_todos"').wait_for()
    page.get_by_role("button", name="tools/call list_todos").click()
    view = page.frame_locator("#mcp-view iframe")
    row = view.locator("li", has_text="Seen in the playground's view")
    row.locator("button.tick").click()
    expect(row).to_have_class("done")
    page.locator("#out-mcp", has_text="complete_todo").wait_for()
    assert "Seen in the playground's view" not in member.get("/todos?show=open").text
    page.locator("#mcp-view").scroll_into_view_if_needed()
    shot(page, "playground-mcp")
    context.close()


def test_an_app_described_by_its_metadata_document_in_a_browser(app, base_url, browser, documents, operator, org):
    """CIMD: the consent page names the document's host and warns about a redirect to this
    computer; /setup lists the app under the MCP clients, by name and URL."""
    path = f"/oauth/{uuid.uuid4().hex[:8]}/client.json"
    client_id = documents.url(path)
    document = {
        "client_id": client_id,
        "client_name": "Desktop Agent",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none",
    }
    documents.put(path, document, Cache_Control="max-age=300")
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "http://127.0.0.1:8765/callback",
            "scope": "todos:read todos:write",
            "state": "s",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
    )
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(f"{base_url}/idp?{query}")
    page.get_by_label("Email").fill(org.member_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: url.startswith(f"{base_url}/idp"))
    expect(page.get_by_text("described itself")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("a program on your own computer")
    shot(page, "consent-metadata-document")
    with page.expect_request(lambda request: request.url.startswith("http://127.0.0.1:8765/callback")):
        page.get_by_role("button", name="Allow").click()

    setup_page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    setup_page.goto(f"{base_url}/login")
    setup_page.get_by_label("Email").fill(operator.email)  # a login is bound to its browser
    setup_page.get_by_label("Password").fill(PASSWORD)
    setup_page.get_by_role("button", name="Log in").click()
    setup_page.wait_for_url(lambda url: not url.startswith(f"{base_url}/login"))
    setup_page.goto(f"{base_url}/setup")
    expect(setup_page.get_by_role("link", name="Desktop Agent")).to_be_visible()
    expect(setup_page.get_by_text(client_id)).to_be_visible()
    shot(setup_page, "setup-mcp")


def test_the_audit_log_fits_its_column_and_leaves_empty_cells_empty(browser, base_url, operator, world):
    # A self-registered app with a long name and a long redirect URI: the widest rows the log has.
    requests.post(
        f"{base_url}/oauth/register",
        json={"client_name": "W" * 100, "redirect_uris": ["https://example.com/" + "p" * 400]},
    )
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(operator.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: not url.startswith(f"{base_url}/login"))
    page.goto(f"{base_url}/setup/audit")
    widths = page.evaluate(
        "() => [document.querySelector('table.audit').scrollWidth, document.querySelector('main').clientWidth]"
    )
    assert widths[0] <= widths[1], widths
    overflowing = page.evaluate(
        "() => [...document.querySelectorAll('table.audit td')].filter(c => c.scrollWidth > c.clientWidth + 1).length"
    )
    assert overflowing == 0
    empty_client_cells = page.evaluate(
        "() => [...document.querySelectorAll('table.audit tbody tr')].map(r => r.children[3])"
        ".filter(c => !c.textContent.trim()).map(c => c.innerHTML.trim())"
    )
    assert empty_client_cells and set(empty_client_cells) == {""}  # no empty code pill
    shot(page, "audit")
