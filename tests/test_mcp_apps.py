"""The todo list inside ChatGPT and Claude: the MCP Apps view (SEP-1865, io.modelcontextprotocol/ui).

The server side is checked over /mcp: the ui:// resource, its MIME type and CSP, and the tools
that point at it. The view is checked in Chromium inside a real MCP Apps host: the official
@modelcontextprotocol/ext-apps AppBridge, bundled for the browser from tests/mcp_apps_host/.
"""

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import requests
from conftest import SCREENSHOTS
from conftest import bearer
from conftest import call
from conftest import rpc

HOST_DIR = Path(__file__).parent / "mcp_apps_host"
VIEW_URI = "ui://connected-todos/todos.html"
MCP_APPS = "io.modelcontextprotocol/ui"


def structured(response: requests.Response) -> dict:
    return response.json()["result"]["structuredContent"]


# The server side (MCP Apps §"UI Resource Format", §"Tool Metadata").


def test_the_view_is_a_ui_resource_listed_and_read_with_its_mime_type(base_url, mcp_access):
    listed = rpc(base_url, mcp_access, "resources/list").json()["result"]["resources"]
    view = next(r for r in listed if r["uri"] == VIEW_URI)
    assert view["mimeType"] == "text/html;profile=mcp-app"
    read = rpc(base_url, mcp_access, "resources/read", {"uri": VIEW_URI}).json()["result"]["contents"][0]
    assert (
        read["mimeType"] == "text/html;profile=mcp-app"
        and read["text"] == (Path(__file__).parent.parent / "static" / "todos-view.html").read_text()
    )
    # No outside domain: the view's script and styles are inline, and it talks only to its host.
    assert read["_meta"]["ui"]["csp"] == {"connectDomains": [], "resourceDomains": []}
    assert read["_meta"]["ui"]["prefersBorder"] is True
    assert "http://" not in read["text"].replace("http://www.w3.org", "") and "https://" not in read["text"]


def test_the_tools_that_show_todos_point_at_the_view(base_url, mcp_access):
    tools = {t["name"]: t for t in rpc(base_url, mcp_access, "tools/list").json()["result"]["tools"]}
    for name in ("list_todos", "add_todo", "complete_todo"):
        meta = tools[name]["_meta"]
        assert meta["ui"] == {"resourceUri": VIEW_URI, "visibility": ["model", "app"]}
        assert meta["openai/outputTemplate"] == VIEW_URI  # ChatGPT's older name for the same link
    assert "_meta" not in tools["delete_todo"] and "_meta" not in tools["search"]


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18", "2025-03-26"])
def test_the_extension_is_advertised_at_initialize(base_url, mcp_access, version):
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    answer = rpc(base_url, mcp_access, "initialize", params, headers={"MCP-Protocol-Version": version}).json()
    assert answer["result"]["capabilities"]["extensions"] == {MCP_APPS: {}}


def test_a_host_without_views_still_reads_a_useful_text(base_url, mcp_access):
    call(base_url, mcp_access, "add_todo", {"title": "Readable without a view"})
    text = call(base_url, mcp_access, "list_todos", {}).json()["result"]["content"][0]["text"]
    assert "Readable without a view" in json.loads(text)["todos"][0]["title"]


def test_an_unknown_resource_is_not_found_in_each_revision(base_url, mcp_access):
    legacy = rpc(base_url, mcp_access, "resources/read", {"uri": "ui://connected-todos/nope.html"}).json()
    assert legacy["error"]["code"] == -32002  # 2025-11-25's resource-not-found


# The view, inside the official host bridge.


@pytest.fixture(scope="session")
def host_bundle(tmp_path_factory) -> Path:
    """The host page and the AppBridge bundle, built once per set of sources with npm and esbuild."""
    if shutil.which("npm") is None:
        pytest.skip("bundling the official AppBridge needs npm")
    sources = [HOST_DIR / name for name in ("package.json", "host.js", "host.html")]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:16]
    build = Path.home() / ".cache" / "connected-todos" / f"mcp-apps-host-{digest}"
    if not (build / "host.bundle.js").exists():
        # Built aside and renamed into place: CI's two passes may build it at the same moment.
        build.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{build.name}-", dir=build.parent))
        for path in sources:
            shutil.copy(path, work / path.name)
        npm = ["npm", "install", "--no-audit", "--no-fund", "--silent"]
        subprocess.run(npm, cwd=work, check=True, capture_output=True, timeout=600)
        esbuild = [str(work / "node_modules" / ".bin" / "esbuild"), "host.js", "--bundle", "--format=esm"]
        esbuild += ["--platform=browser", "--target=es2022", "--outfile=host.bundle.js"]
        subprocess.run(esbuild, cwd=work, check=True, capture_output=True, timeout=300)
        if build.exists() and not (build / "host.bundle.js").exists():
            shutil.rmtree(build, ignore_errors=True)  # a build an earlier run left unfinished
        try:
            work.rename(build)
        except OSError:  # the other pass renamed its build first
            build = work
    served = tmp_path_factory.mktemp("host")
    for name in ("host.html", "host.bundle.js"):
        shutil.copy(build / name, served / name)
    return served


@pytest.fixture(scope="session")
def host_url(host_bundle):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(host_bundle))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/host.html"
    server.shutdown()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_view_in_the_official_host_shows_todos_and_ticks_one_done(base_url, browser, host_url, world, theme):
    from conftest import mcp_client
    from conftest import mcp_token
    from playwright.sync_api import expect

    token = mcp_token(base_url, world.org().admin_email, mcp_client(world), resource=f"{base_url}/mcp")["access_token"]
    first = structured(call(base_url, token, "add_todo", {"title": "Water the plants", "due_date": "2026-12-01"}))
    structured(call(base_url, token, "add_todo", {"title": "Call the plumber"}))
    html = rpc(base_url, token, "resources/read", {"uri": VIEW_URI}).json()["result"]["contents"][0]["text"]
    listed = call(base_url, token, "list_todos", {}).json()["result"]

    def call_tool(params: dict) -> dict:
        """The host's side of tools/call: forwarded to /mcp with the host's token."""
        return call(base_url, token, params["name"], params.get("arguments") or {}).json()["result"]

    context = browser.new_context(viewport={"width": 600, "height": 480}, color_scheme=theme)
    page = context.new_page()
    page.expose_function("forwardToolCall", call_tool)  # Playwright exposes it in every frame
    page.goto(host_url)
    page.wait_for_function("typeof window.startHost === 'function'")
    page.evaluate("([html, result, theme]) => window.startHost(html, {}, result, theme)", [html, listed, theme])
    view = page.frame_locator("iframe#view")
    expect(view.locator("li .title")).to_contain_text(["Call the plumber", "Water the plants"], timeout=10_000)
    expect(view.locator(f'li[data-id="{first["id"]}"] .meta')).to_contain_text("via Raw MCP client")
    assert page.evaluate("window.host.initialized") is True

    view.locator(f'li[data-id="{first["id"]}"] button.tick').click()
    expect(view.locator(f'li[data-id="{first["id"]}"]')).to_have_class("done", timeout=10_000)
    assert {"name": "complete_todo", "arguments": {"id": first["id"]}} in page.evaluate("window.host.calls")
    done = requests.get(f"{base_url}/api/todos/{first['id']}", headers=bearer(token))
    assert done.status_code == 401  # an MCP token is for /mcp only (RFC 8707) ...
    again = structured(call(base_url, token, "list_todos", {"completed": True}))
    assert first["id"] in [t["id"] for t in again["todos"]]  # ... which says it is done on the server

    view.locator("#title").fill("Added in the view")
    view.locator("#add button").click()
    expect(view.locator("#status")).to_have_text("Added.", timeout=10_000)
    expect(view.locator("li .title").first).to_have_text("Added in the view")
    if theme == "light":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("iframe#view").screenshot(path=SCREENSHOTS / "mcp-view.png")
    context.close()
