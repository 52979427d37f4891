"""MCP 2026-07-28 on /mcp, rule by rule: server/discover, _meta on every request (SEP-2575), the
routing headers against the body (SEP-2243), caching hints (SEP-2549), the request's id on every
error, and the removed methods; and ChatGPT's search and fetch contract."""

import base64
import json

import pytest
import requests
from conftest import bearer

VERSION = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": VERSION, "io.modelcontextprotocol/clientCapabilities": {}}


def modern(base_url, token, method, params=None, message_id=7, headers=None, meta=META, name=None):
    body = {"jsonrpc": "2.0", "id": message_id, "method": method, "params": {**(params or {})}}
    if meta is not None:
        body["params"]["_meta"] = meta
    sent = {**bearer(token), "MCP-Protocol-Version": VERSION, "Mcp-Method": method}
    if name is not None:
        sent["Mcp-Name"] = name
    sent.update(headers or {})
    return requests.post(f"{base_url}/mcp", json=body, headers={k: v for k, v in sent.items() if v is not None})


def test_server_discover_names_the_version_capabilities_and_the_server(base_url, mcp_access):
    answer = modern(base_url, mcp_access, "server/discover")
    result = answer.json()["result"]
    assert answer.status_code == 200 and result["supportedVersions"] == [VERSION]
    assert result["resultType"] == "complete" and result["cacheScope"] in ("public", "private") and result["ttlMs"] >= 0
    assert {"tools", "resources", "prompts"} <= set(result["capabilities"])
    assert result["capabilities"]["extensions"] == {"io.modelcontextprotocol/ui": {}}
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "connected-todos"


@pytest.mark.parametrize(
    "meta",
    [None, {"io.modelcontextprotocol/clientCapabilities": {}}, {"io.modelcontextprotocol/protocolVersion": VERSION}],
)
def test_sep_2575_a_request_without_its_meta_is_invalid_params_with_its_id(base_url, mcp_access, meta):
    answer = modern(base_url, mcp_access, "tools/list", meta=meta, message_id="abc")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == -32602 and answer.json()["id"] == "abc"


def test_sep_2575_an_unsupported_version_names_the_supported_ones(base_url, mcp_access):
    meta = {**META, "io.modelcontextprotocol/protocolVersion": "v999.0.0"}
    answer = modern(base_url, mcp_access, "server/discover", meta=meta, headers={"MCP-Protocol-Version": "v999.0.0"})
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["code"] == -32022 and answer.json()["id"] == 7
    assert error["data"] == {"supported": [VERSION], "requested": "v999.0.0"}


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "resources/subscribe", "no/such"])
def test_sep_2575_removed_and_unknown_methods_are_404(base_url, mcp_access, method):
    answer = modern(base_url, mcp_access, method)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == -32601 and answer.json()["id"] == 7


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        ({"MCP-Protocol-Version": "2099-01-01"}, "whoami"),  # the header says one version, _meta another
        ({"Mcp-Method": "tools/list"}, "whoami"),  # the header says another method
        ({"Mcp-Method": None}, "whoami"),  # no Mcp-Method at all
        ({"Mcp-Method": "TOOLS/CALL"}, "whoami"),  # values are case-sensitive
        ({}, "list_todos"),  # Mcp-Name says another tool
        ({}, None),  # no Mcp-Name
        ({}, "=?base64?d2hvYW1p"),  # a malformed encoded value
    ],
)
def test_sep_2243_routing_headers_must_say_what_the_body_says(base_url, mcp_access, headers, name):
    answer = modern(base_url, mcp_access, "tools/call", {"name": "whoami", "arguments": {}}, headers=headers, name=name)
    assert answer.status_code == 400 and answer.json()["error"]["code"] in (-32020, -32022) and answer.json()["id"] == 7


@pytest.mark.parametrize("name", ["whoami \t", "=?base64?" + base64.b64encode(b"whoami").decode() + "?="])
def test_sep_2243_header_values_are_trimmed_and_decoded(base_url, mcp_access, name):
    answer = modern(base_url, mcp_access, "tools/call", {"name": "whoami", "arguments": {}}, name=name)
    assert answer.status_code == 200 and answer.json()["result"]["isError"] is False


def test_sep_2243_header_names_are_case_insensitive(base_url, mcp_access):
    answer = modern(base_url, mcp_access, "tools/list", headers={"Mcp-Method": None, "mcp-method": "tools/list"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("method", "params"),
    [("tools/list", {}), ("prompts/list", {}), ("resources/list", {}), ("resources/templates/list", {})],
)
def test_sep_2549_list_results_carry_caching_hints(base_url, mcp_access, method, params):
    result = modern(base_url, mcp_access, method, params).json()["result"]
    assert result["resultType"] == "complete" and isinstance(result["ttlMs"], int) and result["cacheScope"] == "public"


def test_sep_2164_an_unknown_resource_is_invalid_params_with_its_uri(base_url, mcp_access):
    uri = "ui://connected-todos/missing.html"
    answer = modern(base_url, mcp_access, "resources/read", {"uri": uri}, name=uri)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == -32602
    assert answer.json()["error"]["data"] == {"uri": uri}


def test_an_unknown_tool_is_invalid_params_and_a_broken_rule_a_tool_error(base_url, mcp_access):
    unknown = modern(base_url, mcp_access, "tools/call", {"name": "nope", "arguments": {}}, name="nope")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == -32602
    broken = modern(
        base_url, mcp_access, "tools/call", {"name": "add_todo", "arguments": {"title": ""}}, name="add_todo"
    )
    assert broken.status_code == 200 and broken.json()["result"]["isError"] is True


def test_a_request_carrying_2026_meta_without_the_version_header_is_a_header_mismatch(base_url, mcp_access):
    answer = modern(base_url, mcp_access, "tools/list", headers={"MCP-Protocol-Version": None})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == -32020


def test_a_notification_is_accepted_and_answered_with_nothing(base_url, mcp_access):
    body = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"_meta": META}}
    headers = {**bearer(mcp_access), "MCP-Protocol-Version": VERSION, "Mcp-Method": "notifications/cancelled"}
    answer = requests.post(f"{base_url}/mcp", json=body, headers=headers)
    assert answer.status_code == 202 and answer.text == ""


def test_the_older_revisions_still_answer_ping_and_initialize(base_url, mcp_access):
    headers = {**bearer(mcp_access), "MCP-Protocol-Version": "2025-11-25"}
    ping = requests.post(f"{base_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
    assert ping.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}


# ChatGPT's search and fetch, for deep research and company knowledge.


def test_search_finds_todos_by_title_and_notes_and_fetch_gives_the_document(base_url, org, world, mcp_access):
    def tool(name, arguments):
        answer = modern(base_url, mcp_access, "tools/call", {"name": name, "arguments": arguments}, name=name)
        return answer.json()["result"]

    made = tool("add_todo", {"title": "Renew the car insurance", "notes": "Policy 4711 with Acme"})["structuredContent"]
    tool("add_todo", {"title": "Unrelated"})
    found = tool("search", {"query": "ACME policy"})
    results = json.loads(found["content"][0]["text"])["results"]  # one text item of JSON, as ChatGPT reads it
    assert results == [
        {"id": str(made["id"]), "title": "Renew the car insurance", "url": f"{base_url}/todos/{made['id']}/edit"}
    ]
    assert tool("search", {"query": "100%_literal"})["structuredContent"] == {"results": []}  # no wildcards
    document = json.loads(tool("fetch", {"id": str(made["id"])})["content"][0]["text"])
    assert set(document) == {"id", "title", "text", "url", "metadata"} and "Policy 4711 with Acme" in document["text"]
    assert document["metadata"]["created_via"]["name"] == "Raw MCP client"
    assert tool("fetch", {"id": "999999999"})["isError"] is True


def test_search_and_fetch_are_read_only_and_need_todos_read(base_url, mcp_access):
    tools = {t["name"]: t for t in modern(base_url, mcp_access, "tools/list").json()["result"]["tools"]}
    for name in ("search", "fetch"):
        annotations = tools[name]["annotations"]
        assert annotations["readOnlyHint"] is True and annotations["destructiveHint"] is False
        assert annotations["openWorldHint"] is False


def test_search_never_crosses_into_another_organization(base_url, world):
    from conftest import mcp_client
    from conftest import mcp_token

    client = mcp_client(world)
    mine = mcp_token(base_url, world.org().admin_email, client, resource=f"{base_url}/mcp")["access_token"]
    theirs = mcp_token(base_url, world.org().admin_email, client, resource=f"{base_url}/mcp")["access_token"]
    secret = modern(
        base_url,
        theirs,
        "tools/call",
        {"name": "add_todo", "arguments": {"title": "Their zebra plan"}},
        name="add_todo",
    )
    todo_id = secret.json()["result"]["structuredContent"]["id"]
    searched = modern(base_url, mine, "tools/call", {"name": "search", "arguments": {"query": "zebra"}}, name="search")
    assert searched.json()["result"]["structuredContent"] == {"results": []}
    fetched = modern(base_url, mine, "tools/call", {"name": "fetch", "arguments": {"id": str(todo_id)}}, name="fetch")
    assert fetched.json()["result"]["isError"] is True
