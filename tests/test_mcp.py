"""The MCP endpoint over raw HTTP: transport rules, the 401/403 challenges (RFC 6750, RFC 9728),
audience binding (RFC 8707), tool results, Origin and CORS."""

import json

import pytest
import requests
from conftest import MCP_TOOLS
from conftest import MCP_VERSION
from conftest import bearer
from conftest import call
from conftest import mcp_client
from conftest import mcp_token
from conftest import rpc
from conftest import setting

# RFC 9728 protected resource metadata.


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
def test_protected_resource_metadata_names_the_mcp_endpoint(base_url, path):
    metadata = requests.get(base_url + path).json()
    assert metadata["resource"] == f"{base_url}/mcp"
    assert metadata["authorization_servers"] == [base_url]
    assert metadata["bearer_methods_supported"] == ["header"]
    assert set(metadata["scopes_supported"]) == {"todos:read", "todos:write"} and metadata["resource_name"]


def test_authorization_server_metadata_has_what_mcp_clients_need(base_url):
    metadata = requests.get(f"{base_url}/.well-known/oauth-authorization-server").json()
    assert metadata["registration_endpoint"] == f"{base_url}/oauth/register"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert "offline_access" in metadata["scopes_supported"]


# 401 challenges (RFC 6750 §3, RFC 9728 §5.1).


def test_no_token_gets_401_with_resource_metadata_and_no_error(base_url):
    response = requests.post(f"{base_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    challenge = response.headers["WWW-Authenticate"]
    assert response.status_code == 401 and "error=" not in challenge
    assert f'resource_metadata="{base_url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="todos:read todos:write"' in challenge


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_an_invalid_token_gets_invalid_token(base_url, token):
    response = rpc(base_url, token, "ping")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "resource_metadata=" in response.headers["WWW-Authenticate"]


def test_an_expired_or_revoked_token_is_401(base_url, org, world):
    client = mcp_client(world)
    body = mcp_token(base_url, org.admin_email, client)
    assert rpc(base_url, body["access_token"], "ping").status_code == 200
    requests.post(f"{base_url}/oauth/revoke", data={"token": body["refresh_token"], "client_id": client.client_id})
    assert rpc(base_url, body["access_token"], "ping").status_code == 401


# RFC 8707 resource indicators.


def test_a_resource_names_the_audience(base_url, org, world):
    client = mcp_client(world)
    body = mcp_token(base_url, org.admin_email, client, resource=f"{base_url}/api")
    assert requests.get(f"{base_url}/api/me", headers=bearer(body["access_token"])).status_code == 200
    assert rpc(base_url, body["access_token"], "ping").status_code == 401


def test_without_a_resource_a_self_registered_client_gets_an_mcp_token(base_url, org, world):
    body = mcp_token(base_url, org.admin_email, mcp_client(world))
    assert rpc(base_url, body["access_token"], "ping").status_code == 200


def test_without_a_resource_an_operator_registered_client_gets_an_api_token(base_url, tokens):
    assert requests.get(f"{base_url}/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    assert rpc(base_url, tokens["access_token"], "ping").status_code == 401


def test_refresh_keeps_the_audience_and_checks_the_resource(base_url, org, world):
    client = mcp_client(world)
    body = mcp_token(base_url, org.admin_email, client, resource=f"{base_url}/mcp")
    data = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": client.client_id}
    wrong = requests.post(f"{base_url}/oauth/token", data={**data, "resource": "https://evil.test/"})
    assert wrong.json()["error"] == "invalid_target"
    refreshed = requests.post(f"{base_url}/oauth/token", data=data).json()
    assert rpc(base_url, refreshed["access_token"], "ping").status_code == 200


# The transport: one JSON-RPC message per POST.


def test_initialize_negotiates_the_protocol_version(base_url, mcp_access):
    for asked, answered in [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-01-01", "2025-11-25"),
    ]:
        result = rpc(
            base_url,
            mcp_access,
            "initialize",
            {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        ).json()
        assert result["result"]["protocolVersion"] == answered
        assert result["result"]["capabilities"]["tools"] and result["result"]["serverInfo"]["name"]


def test_notifications_get_202_and_no_body(base_url, mcp_access):
    response = rpc(base_url, mcp_access, "notifications/initialized", message_id=None)
    assert response.status_code == 202 and response.content == b""


def test_ping(base_url, mcp_access):
    assert rpc(base_url, mcp_access, "ping", message_id="p1").json() == {"jsonrpc": "2.0", "id": "p1", "result": {}}


def test_an_unknown_method_gets_32601(base_url, mcp_access):
    response = rpc(base_url, mcp_access, "server/discover")
    assert response.json()["error"]["code"] == -32601


@pytest.mark.parametrize(
    ("data", "code", "status", "answer_id"),
    [
        (b"{not json", -32700, 400, None),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', -32600, 400, None),
        (b'{"id": 1, "method": "ping"}', -32600, 400, None),
        (b'"ping"', -32600, 400, None),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', -32600, 400, 1),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}', -32600, 400, 1),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "x": "' + b"a" * 70000 + b'"}', -32600, 413, None),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', -32600, 400, None),
        (b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', -32600, 400, None),  # MCP: never null
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', -32600, 400, None),
    ],
)
def test_malformed_messages_get_a_json_rpc_error(base_url, mcp_access, data, code, status, answer_id):
    headers = {**bearer(mcp_access), **MCP_VERSION, "Content-Type": "application/json"}
    response = requests.post(f"{base_url}/mcp", data=data, headers=headers)
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert response.json()["id"] == answer_id  # JSON-RPC 2.0 §5: null when the id cannot be read


@pytest.mark.parametrize("text", [r"\u0000", r"\ud800"])  # JSON escapes: valid JSON, unstorable text
def test_unstorable_text_in_params_is_refused_with_the_requests_id(base_url, mcp_access, text):
    # JSON-RPC 2.0 §5: the message parsed, so the error answers its id and the client is not left waiting.
    data = '{"jsonrpc": "2.0", "id": "add-1", "method": "tools/call",'
    data += ' "params": {"name": "add_todo", "arguments": {"title": "a' + text + 'b"}}}'
    headers = {**bearer(mcp_access), **MCP_VERSION, "Content-Type": "application/json"}
    response = requests.post(f"{base_url}/mcp", data=data.encode(), headers=headers)
    assert response.status_code == 400 and response.json()["id"] == "add-1"
    assert response.json()["error"]["code"] == -32602


@pytest.mark.parametrize("params", [{"name": "nope"}, {"name": "list_todos", "arguments": [1]}, {}])
def test_invalid_tool_call_params_get_32602(base_url, mcp_access, params):
    assert rpc(base_url, mcp_access, "tools/call", params).json()["error"]["code"] == -32602


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_405(base_url, mcp_access, method):
    assert requests.request(method, f"{base_url}/mcp", headers=bearer(mcp_access)).status_code == 405


def test_the_path_is_exactly_mcp_without_a_trailing_slash_redirect(base_url, mcp_access):
    response = requests.post(f"{base_url}/mcp/", json={}, headers=bearer(mcp_access), allow_redirects=False)
    assert response.status_code == 404


def test_an_unsupported_protocol_version_header_is_400(base_url, mcp_access):
    response = rpc(base_url, mcp_access, "ping", headers={"MCP-Protocol-Version": "1999-01-01"})
    assert response.status_code == 400


def test_a_disallowed_origin_gets_403_and_an_allowed_one_passes(base_url, mcp_access):
    assert rpc(base_url, mcp_access, "ping", headers={"Origin": "https://evil.test"}).status_code == 403
    assert rpc(base_url, mcp_access, "ping", headers={"Origin": "https://chatgpt.com"}).status_code == 200
    assert rpc(base_url, mcp_access, "ping", headers={"Origin": base_url}).status_code == 200


def test_allowed_origins_are_configurable(app, base_url, mcp_access):
    with setting(app, "MCP_ALLOWED_ORIGINS", ["https://inspector.example.com"]):
        assert rpc(base_url, mcp_access, "ping", headers={"Origin": "https://chatgpt.com"}).status_code == 403
        assert rpc(base_url, mcp_access, "ping", headers={"Origin": "https://inspector.example.com"}).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/mcp",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/oauth/token",
        "/oauth/register",
    ],
)
def test_cors_lets_browser_clients_in(base_url, path):
    preflight = requests.options(
        base_url + path,
        headers={
            "Origin": "http://localhost:6274",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()


def test_cors_exposes_the_challenge(base_url):
    response = requests.post(f"{base_url}/mcp", json={}, headers={"Origin": "http://localhost:6274"})
    exposed = response.headers["Access-Control-Expose-Headers"].lower()
    assert "www-authenticate" in exposed and "mcp-session-id" in exposed


# Tools.


def test_tools_list_describes_each_tool(base_url, mcp_access):
    tools = {t["name"]: t for t in rpc(base_url, mcp_access, "tools/list").json()["result"]["tools"]}
    assert set(tools) == MCP_TOOLS
    for tool in tools.values():
        assert tool["inputSchema"]["type"] == "object" and tool["outputSchema"]["type"] == "object"
        assert {"readOnlyHint", "destructiveHint", "idempotentHint"} <= set(tool["annotations"])
    assert tools["list_todos"]["annotations"]["readOnlyHint"] is True
    assert tools["delete_todo"]["annotations"]["destructiveHint"] is True
    assert tools["add_todo"]["annotations"]["idempotentHint"] is False


def test_a_tool_result_has_structured_content(base_url, mcp_access):
    result = call(base_url, mcp_access, "add_todo", {"title": "Through MCP"}).json()["result"]
    assert result["isError"] is False and result["structuredContent"]["title"] == "Through MCP"
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]


@pytest.mark.parametrize(
    ("name", "arguments", "hint"),
    [
        ("add_todo", {}, "title"),
        ("add_todo", {"title": "x" * 201}, "200"),
        ("add_todo", {"title": "ok", "due_date": "soon"}, "due_date"),
        ("add_todo", {"title": "ok", "colour": "red"}, "colour"),
        ("update_todo", {"id": "one", "title": "x"}, "list_todos"),
        ("update_todo", {"id": 1}, "at least one"),
        ("complete_todo", {"id": 999999}, "no todo"),
        ("list_todos", {"limit": 1000}, "limit"),
        ("list_todos", {"cursor": "bogus!"}, "cursor"),
        ("list_todos", {"completed": "yes"}, "completed"),
    ],
)
def test_an_invalid_argument_is_a_tool_error_that_helps(base_url, mcp_access, name, arguments, hint):
    response = call(base_url, mcp_access, name, arguments)
    result = response.json()["result"]
    assert response.status_code == 200 and result["isError"] is True and hint in result["content"][0]["text"]


@pytest.mark.parametrize("origin", ["https://chatgpt.com.evil.test", "https://evil.test/https://chatgpt.com"])
def test_an_origin_that_only_looks_allowed_gets_403(base_url, mcp_access, origin):
    # MCP transports: servers MUST validate Origin to stop DNS rebinding; an exact match, not a prefix.
    assert rpc(base_url, mcp_access, "ping", headers={"Origin": origin}).status_code == 403
    own = base_url + ".evil.test"
    assert rpc(base_url, mcp_access, "ping", headers={"Origin": own}).status_code == 403


def test_an_unknown_argument_stops_a_tool_before_it_acts(base_url, mcp_access):
    todo = call(base_url, mcp_access, "add_todo", {"title": "keep me"}).json()["result"]["structuredContent"]
    refused = call(base_url, mcp_access, "delete_todo", {"id": todo["id"], "dry_run": True}).json()["result"]
    assert refused["isError"] is True and "dry_run" in refused["content"][0]["text"]
    listed = call(base_url, mcp_access, "list_todos", {}).json()["result"]["structuredContent"]["todos"]
    assert todo["id"] in [t["id"] for t in listed]
