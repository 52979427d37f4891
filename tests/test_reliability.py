"""No input reaches a 500: each case an operator's review found, with its protocol's answer, and
errors that say whose fault they are (server_error, temporarily_unavailable, JSON-RPC -32603)."""

import http.client
import secrets
from urllib.parse import urlsplit

import pytest
import requests
from conftest import Person
from conftest import bearer
from conftest import csrf_of
from conftest import in_parallel
from conftest import logged_in
from conftest import member_id
from conftest import rpc

from connected_todos.rules import JSON_DEPTH_MAX

DEEP = ("[" * 5000 + "]" * 5000).encode()
DEEPER_OBJECT = ('{"a":' * 3000 + "1" + "}" * 3000).encode()


@pytest.mark.parametrize("body", [DEEP, DEEPER_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/oauth/register"])
def test_deeply_nested_json_gets_a_400_at_every_oauth_endpoint(base_url, body, path):
    response = requests.post(f"{base_url}{path}", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:200]
    expected = "invalid_client_metadata" if path == "/oauth/register" else "invalid_request"
    assert response.json()["error"] == expected and "deeper than" in response.json()["error_description"]
    # Registration reads any content type as JSON (RFC 7591 clients differ), so a page can post it.
    plain = requests.post(f"{base_url}{path}", data=body, headers={"Content-Type": "text/plain"})
    assert 400 <= plain.status_code < 500 and "error" in plain.json()


def test_deeply_nested_json_gets_a_400_from_the_api_and_mcp(base_url, mcp_access, tokens):
    headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
    response = requests.post(f"{base_url}/api/todos", data=DEEP, headers=headers)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    headers = {**bearer(mcp_access), "Content-Type": "application/json", "MCP-Protocol-Version": "2025-11-25"}
    response = requests.post(f"{base_url}/mcp", data=DEEP, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32700  # parse error


def test_json_as_deep_as_the_bound_is_read(base_url, mcp_access):
    # The bound refuses nothing a real message needs: a todo's notes may hold nested JSON text.
    nested = "[" * (JSON_DEPTH_MAX - 6) + "]" * (JSON_DEPTH_MAX - 6)
    response = rpc(base_url, mcp_access, "tools/call", {"name": "whoami", "arguments": {"x": nested}})
    assert response.status_code == 200


@pytest.mark.parametrize("limit", ["9" * 5000, "-1", "0", "1e3", "١٢"])
def test_a_limit_out_of_bounds_is_a_400(base_url, tokens, limit):
    response = requests.get(f"{base_url}/api/todos", params={"limit": limit}, headers=bearer(tokens["access_token"]))
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_huge_max_age_is_no_age_oidc_core_3_1_2_1(base_url, org, gpt):
    from conftest import gpt_params

    response = Person(base_url, org.admin_email).authorize(gpt_params(gpt, max_age="9" * 5000))
    assert response.status_code == 302 and "code=" in response.headers["Location"]


def test_concurrent_sign_ups_with_one_organization_name_all_succeed(base_url):
    name = f"Race {secrets.token_hex(3)}"

    def sign_up():
        person = requests.Session()
        page = person.get(f"{base_url}/signup")
        data = {
            "csrf_token": csrf_of(page.text),
            "organization": name,
            "name": "Racer",
            "email": f"racer-{secrets.token_hex(4)}@example.com",
            "password": "correct horse battery",
        }
        return person.post(f"{base_url}/signup", data=data, allow_redirects=False)

    responses = in_parallel(8, sign_up)
    assert [r.status_code for r in responses] == [302] * 8  # eight organizations, eight slugs


def test_removing_a_member_answers_its_page(base_url, world):
    org = world.org()
    admin = logged_in(base_url, org.admin_email)
    page = admin.get("/members")
    target = member_id(page.text, org.member_email)
    response = admin.post(f"/members/{target}/remove", {"csrf_token": csrf_of(page.text)})
    assert response.status_code == 302
    after = admin.get("/members").text
    assert f"{org.member_email} was removed" in after and f"/members/{target}/" not in after


def test_a_long_email_at_sign_up_is_a_clear_error(base_url):
    person = requests.Session()
    page = person.get(f"{base_url}/signup")
    email = "a" * 250 + "@example.com"
    data = {"csrf_token": csrf_of(page.text), "organization": "Long", "name": "L", "email": email, "password": "x" * 12}
    response = person.post(f"{base_url}/signup", data=data)
    assert response.status_code == 200 and "valid email" in response.text


def test_a_long_forwarded_address_is_cut_before_it_is_stored(base_url, org):
    hop = "2001:db8:" + "1:" * 40 + "1"  # not an address at all, and far over the column's 64
    person = Person(base_url, org.admin_email)
    person.http.headers["X-Forwarded-For"] = hop
    response = person.login()
    assert response.status_code in (200, 302)


def test_the_mcp_body_limit_counts_the_bytes_read_whatever_the_encoding(base_url, mcp_access):
    def chunks():
        yield b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "'
        for _ in range(900):
            yield b"x" * 1024
        yield b'"}}'

    headers = {**bearer(mcp_access), "Content-Type": "application/json", "MCP-Protocol-Version": "2025-11-25"}
    response = requests.post(f"{base_url}/mcp", data=chunks(), headers=headers)  # Transfer-Encoding: chunked
    assert response.status_code == 413 and response.json()["error"]["code"] == -32600, response.text[:300]


def test_a_chunked_body_over_the_app_limit_is_refused_everywhere(base_url):
    host = urlsplit(base_url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    connection.putrequest("POST", "/oauth/register")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    piece = b"x" * 65536
    try:
        for _ in range(24):  # 1.5 MB, over MAX_CONTENT_LENGTH
            connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        connection.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may stop reading early
    assert connection.getresponse().status in (400, 413)
