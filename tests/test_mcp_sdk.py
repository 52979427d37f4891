"""The official MCP Python SDK connects to /mcp with nothing but its URL: protected resource
discovery, dynamic registration, PKCE, login and consent through the real forms, every tool, and a
refresh once the access token has expired, in each revision the client speaks."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import httpx2
import pytest
from conftest import CSRF
from conftest import MCP_TOOLS
from conftest import PASSWORD
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from pydantic import AnyUrl


class MemoryStorage:
    """The SDK's TokenStorage, kept in memory."""

    tokens = client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class Browser:
    """A logged-in person's browser: opens the authorization URL, allows, reads the redirect."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        self.http, self.result, self.consent_pages = http, None, []

    async def login(self, base_url: str, email: str) -> None:
        page = await self.http.get(f"{base_url}/login")
        data = {"csrf_token": CSRF.search(page.text).group(1), "email": email, "password": PASSWORD}
        assert (await self.http.post(f"{base_url}/login", data=data)).status_code == 302

    async def redirect(self, url: str) -> None:
        response = await self.http.get(url)
        if response.status_code == 200:
            self.consent_pages.append(response.text)
            data = {"csrf_token": CSRF.search(response.text).group(1), "decision": "allow"}
            response = await self.http.post(url, data=data)
        assert response.status_code == 302, response.text[:300]
        query = parse_qs(urlsplit(response.headers["location"]).query)
        self.result = AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query["iss"][0])

    async def callback(self) -> AuthorizationCodeResult:
        result, self.result = self.result, None
        return result


async def journey(base_url: str, email: str, mode: str) -> dict:
    storage = MemoryStorage()
    async with httpx2.AsyncClient(follow_redirects=False) as browser_http:
        browser = Browser(browser_http)
        await browser.login(base_url, email)
        oauth = OAuthClientProvider(
            server_url=f"{base_url}/mcp",
            client_metadata=OAuthClientMetadata(
                client_name="SDK test client", redirect_uris=[AnyUrl("http://127.0.0.1:3999/callback")]
            ),
            storage=storage,
            redirect_handler=browser.redirect,
            callback_handler=browser.callback,
        )
        async with (
            httpx2.AsyncClient(auth=oauth, timeout=30) as http,
            Client(streamable_http_client(f"{base_url}/mcp", http_client=http), mode=mode) as client,
        ):
            tools = {t.name: t for t in (await client.list_tools()).tools}
            me = (await client.call_tool("whoami", {})).structured_content
            added = (
                await client.call_tool("add_todo", {"title": "Buy milk", "due_date": "2026-12-01"})
            ).structured_content
            listed = (await client.call_tool("list_todos", {"limit": 5})).structured_content
            updated = (await client.call_tool("update_todo", {"id": added["id"], "notes": "oat"})).structured_content
            completed = (await client.call_tool("complete_todo", {"id": added["id"]})).structured_content
            bad = await client.call_tool("update_todo", {"id": added["id"], "title": ""})
            first_token = storage.tokens.access_token
            # The access token expires: the SDK refreshes it on the next call.
            oauth.context.token_expiry_time = time.time() - 1
            deleted = (await client.call_tool("delete_todo", {"id": added["id"]})).structured_content
            gone = await client.call_tool("complete_todo", {"id": added["id"]})
            version = client.protocol_version
    return {
        "tools": tools,
        "me": me,
        "added": added,
        "listed": listed,
        "updated": updated,
        "completed": completed,
        "bad": bad,
        "deleted": deleted,
        "gone": gone,
        "version": version,
        "first_token": first_token,
        "storage": storage,
        "consent": browser.consent_pages,
    }


@pytest.mark.parametrize(
    ("mode", "version"),
    [
        ("2026-07-28", "2026-07-28"),  # stateless: no handshake, the version in every request's _meta
        ("auto", "2026-07-28"),  # server/discover answers, so the client needs no handshake
        ("legacy", "2025-11-25"),  # the initialize handshake, as clients before 2026-07-28 do
    ],
)
def test_the_sdk_client_connects_and_manages_todos(base_url, org, mode, version):
    # A thread of its own: the browser tests' Playwright keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as worker:
        run = worker.submit(asyncio.run, journey(base_url, org.admin_email, mode)).result()
    assert set(run["tools"]) == MCP_TOOLS
    assert run["version"] == version
    assert run["me"]["email"] == org.admin_email
    assert run["added"]["title"] == "Buy milk" and run["added"]["due_date"] == "2026-12-01"
    assert run["added"]["id"] in [t["id"] for t in run["listed"]["todos"]]
    assert run["updated"]["notes"] == "oat" and run["completed"]["completed"] is True
    assert run["bad"].is_error and "title" in run["bad"].content[0].text
    assert run["deleted"] == {"deleted": True, "id": run["added"]["id"]}
    assert run["gone"].is_error and "no todo" in run["gone"].content[0].text
    # Dynamic registration happened, PKCE was used, and the token was refreshed.
    storage = run["storage"]
    assert storage.client_info.client_id and storage.tokens.access_token != run["first_token"]
    assert storage.tokens.refresh_token
    # A self-registered client is a third party and the consent page says it registered itself.
    assert len(run["consent"]) == 1 and "registered itself" in run["consent"][0]
