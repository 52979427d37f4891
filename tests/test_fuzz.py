"""Hypothesis-driven fuzzing of the protocol endpoints over HTTP: whatever arrives, the answer is
never a 5xx, and every error is in the protocol's own format."""

import json
import os

import requests
from conftest import bearer
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
NAMES = [
    "client_id",
    "client_secret",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code",
    "grant_type",
    "code_verifier",
    "code_challenge",
    "code_challenge_method",
    "refresh_token",
    "token",
    "token_type_hint",
    "resource",
    "prompt",
    "nonce",
    "max_age",
]
# Any text an HTTP client can send in a form (lone surrogates cannot be encoded; JSON bodies try them).
SENDABLE = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
SPECIAL = ["", "openid", "code", "S256", "plain", "authorization_code", "refresh_token", "\x00", "%00", "javascript:x"]
TEXT = SENDABLE | st.sampled_from(SPECIAL)
PARAMS = st.lists(
    st.tuples(st.sampled_from(NAMES) | st.text(st.characters(exclude_categories=("Cs",)), max_size=20), TEXT),
    max_size=8,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=4),
    max_leaves=15,
)


def assert_oauth_error(response: requests.Response) -> None:
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"], str) and "\n" not in body.get("error_description", "")


@FUZZ
@given(params=PARAMS)
def test_the_authorization_endpoint_never_fails(base_url, params):
    response = requests.get(f"{base_url}/idp", params=params, allow_redirects=False)
    assert response.status_code < 500, response.text[:300]
    if response.status_code == 302:  # only ever to a registered client's URI, never elsewhere
        assert response.headers["Location"].startswith("/login")


@FUZZ
@given(
    path=st.sampled_from(["/oauth/token", "/oauth/revoke", "/oauth/introspect"]),
    params=PARAMS,
    basic=st.none() | st.tuples(st.text(max_size=20), st.text(max_size=20)),
)
def test_token_revocation_and_introspection_never_fail(base_url, path, params, basic):
    try:
        response = requests.post(base_url + path, data=params, auth=basic)
    except UnicodeEncodeError:  # requests itself cannot send such Basic credentials
        return
    assert_oauth_error(response)


@FUZZ
@given(path=st.sampled_from(["/oauth/token", "/oauth/register"]), body=JSON)
def test_json_bodies_never_fail(base_url, path, body):
    response = requests.post(base_url + path, data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert_oauth_error(response)


@FUZZ
@given(message=JSON)
def test_mcp_never_fails_and_answers_json_rpc(base_url, tokens_for_fuzz, message):
    headers = {**bearer(tokens_for_fuzz), "Content-Type": "application/json", "MCP-Protocol-Version": "2025-11-25"}
    response = requests.post(f"{base_url}/mcp", data=json.dumps(message), headers=headers)
    assert response.status_code < 500, response.text[:300]
    if response.content:
        assert response.json()["jsonrpc"] == "2.0"


TOOLS = ["whoami", "list_todos", "add_todo", "update_todo", "complete_todo", "delete_todo"]
METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "prompts/list",
    "notifications/initialized",
    "notifications/cancelled",
    "no/such/method",
]
# Well-formed JSON-RPC envelopes, so that the fuzzing reaches the methods and tools behind them.
ENVELOPES = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": st.sampled_from(METHODS)},
    optional={
        "id": st.integers(min_value=-(2**53), max_value=2**53) | st.text(max_size=20) | JSON,
        "params": JSON
        | st.fixed_dictionaries(
            {"name": st.sampled_from(TOOLS) | st.text(max_size=10)}, optional={"arguments": JSON, "_meta": JSON}
        ),
    },
)


@FUZZ
@given(message=ENVELOPES)
def test_every_mcp_method_answers_in_json_rpc(base_url, tokens_for_fuzz, message):
    headers = {**bearer(tokens_for_fuzz), "MCP-Protocol-Version": "2025-11-25"}
    response = requests.post(f"{base_url}/mcp", json=message, headers=headers)
    assert response.status_code < 500, response.text[:300]
    if not response.content:  # a notification is acknowledged with 202 and no body
        assert response.status_code == 202 and "id" not in message
        return
    body = response.json()
    assert body["jsonrpc"] == "2.0" and ("result" in body) != ("error" in body)
    if "error" in body:
        assert isinstance(body["error"]["code"], int) and isinstance(body["error"]["message"], str)
    if type(message.get("id")) in (int, str):  # the answer names the request it answers
        assert body["id"] == message["id"]
    else:  # MCP: an id is a string or an integer; JSON-RPC answers anything else with a null id
        assert body["id"] is None and body["error"]["code"] == -32600


@FUZZ
@given(
    name=st.sampled_from(TOOLS),
    arguments=st.dictionaries(
        st.sampled_from(["id", "title", "notes", "completed", "due_date", "limit", "cursor"]) | st.text(max_size=10),
        JSON,
        max_size=4,
    ),
)
def test_mcp_tools_never_fail(base_url, tokens_for_fuzz, name, arguments):
    headers = {**bearer(tokens_for_fuzz), "MCP-Protocol-Version": "2025-11-25"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    response = requests.post(f"{base_url}/mcp", json=body, headers=headers)
    assert response.status_code in (200, 400), response.text[:300]  # 400: text no database can store
    assert "result" in response.json() or response.json()["error"]["code"] == -32602


def nested(depth: int, leaf: object, kind: str) -> bytes:
    """``leaf`` inside ``depth`` arrays or objects, as JSON text: deep enough to exhaust any
    recursive walk (and Python's own encoder, so it is written out by hand)."""
    opening, closing = ("[", "]") if kind == "array" else ('{"k":', "}")
    return (opening * depth + json.dumps(leaf) + closing * depth).encode()


# Bodies of every shape: JSON of any depth (the JSON strategy above stays shallow), text that is
# not JSON, and bytes that are not UTF-8, under each content type a client might claim.
BODIES = st.one_of(
    st.builds(
        nested,
        depth=st.integers(min_value=0, max_value=3000),
        leaf=st.none() | st.integers() | st.text(max_size=10),
        kind=st.sampled_from(["array", "object"]),
    ),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
    SENDABLE.map(str.encode),
)
ENDPOINTS = [
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("POST", "/oauth/introspect"),
    ("POST", "/oauth/register"),
    ("POST", "/oauth/userinfo"),
    ("POST", "/idp"),
    ("POST", "/api/todos"),
    ("PATCH", "/api/todos/1"),
    ("POST", "/mcp"),
    ("POST", "/login"),
    ("POST", "/signup"),
]


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=BODIES,
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
def test_any_body_to_any_endpoint_is_never_a_5xx(base_url, tokens_for_fuzz, endpoint, body, content_type):
    method, path = endpoint
    headers = {**bearer(tokens_for_fuzz), "MCP-Protocol-Version": "2025-11-25"}
    if content_type:
        headers["Content-Type"] = content_type
    response = requests.request(method, base_url + path, data=body, headers=headers)
    assert response.status_code < 500, (path, response.status_code, response.text[:300])
