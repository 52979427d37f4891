"""RFC 9700 §2.3: an access token is good for its scopes (RFC 6750 §3.1 insufficient_scope) and its
audience (RFC 8707) only, and a client never gets more than it asked for and was granted."""

import base64
import json
from urllib.parse import urlencode

import requests
from conftest import Person
from conftest import api
from conftest import bearer
from conftest import call
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import mcp_client
from conftest import mcp_token
from conftest import pkce_pair
from conftest import rpc
from conftest import token_for


def test_a_read_only_token_cannot_write(base_url, org, gpt):
    token = token_for(base_url, org.admin_email, gpt, scope="openid todos:read")
    assert api(base_url, "GET", "/todos", token).status_code == 200
    for method, path in [("POST", "/todos"), ("PATCH", "/todos/1"), ("DELETE", "/todos/1")]:
        response = api(base_url, method, path, token, json={"title": "x"})
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert 'scope="todos:write"' in response.headers["WWW-Authenticate"]


def test_a_token_without_todos_read_cannot_read(base_url, org, gpt):
    token = token_for(base_url, org.admin_email, gpt, scope="openid profile")
    assert api(base_url, "GET", "/todos", token).status_code == 403
    assert api(base_url, "GET", "/me", token).status_code == 403


def test_a_tool_without_its_scope_gets_403_and_the_challenge_in_meta(base_url, org, world):
    token = mcp_token(base_url, org.admin_email, mcp_client(world), scope="todos:read")["access_token"]
    assert call(base_url, token, "list_todos", {}).json()["result"]["isError"] is False
    response = call(base_url, token, "add_todo", {"title": "nope"})
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="todos:write"' in challenge
    assert "resource_metadata=" in challenge
    result = response.json()["result"]
    assert result["isError"] is True and result["_meta"]["mcp/www_authenticate"] == [challenge]


def test_an_api_token_is_rejected_at_mcp_and_the_other_way_round(base_url, tokens, mcp_access):
    at_mcp = rpc(base_url, tokens["access_token"], "ping")
    assert at_mcp.status_code == 401 and 'error="invalid_token"' in at_mcp.headers["WWW-Authenticate"]
    at_api = requests.get(f"{base_url}/api/todos", headers=bearer(mcp_access))
    assert at_api.status_code == 401
    assert (
        f'resource_metadata="{base_url}/.well-known/oauth-protected-resource/api"' in at_api.headers["WWW-Authenticate"]
    )


def test_a_different_resource_at_the_token_endpoint_gets_invalid_target(base_url, org, world):
    client = mcp_client(world)
    verifier, challenge = pkce_pair()
    params = gpt_params(client, code_challenge=challenge, code_challenge_method="S256", resource=f"{base_url}/mcp")
    code = callback_params(Person(base_url, org.admin_email).authorize(params))["code"]
    response = exchange(base_url, client, code, style="none", code_verifier=verifier, resource=f"{base_url}/api")
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"


def test_an_unknown_resource_gets_invalid_target_at_idp(base_url, org, world):
    client = mcp_client(world)
    _, challenge = pkce_pair()
    params = gpt_params(
        client, code_challenge=challenge, code_challenge_method="S256", resource="https://evil.test/mcp"
    )
    cb = callback_params(Person(base_url, org.admin_email).authorize(params))
    assert cb["error"] == "invalid_target" and cb["iss"] == base_url and "state" in cb


def test_a_narrow_request_never_becomes_the_registered_scope(base_url, org, world):
    """A client registered for openid todos:* asks only for scopes it is not registered for."""
    client = world.client(scope="openid todos:read todos:write")
    person = Person(base_url, org.admin_email)
    callback_params(person.authorize(gpt_params(client, scope="openid")))  # consent for openid only
    response = person.get("/idp?" + urlencode(gpt_params(client, scope="email")))
    assert callback_params(response)["error"] == "invalid_scope"


def test_userinfo_and_the_id_token_hold_only_what_the_scope_allows(base_url, org, gpt):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="openid todos:read")))
    body = exchange(base_url, gpt, cb["code"]).json()
    info = requests.get(f"{base_url}/oauth/userinfo", headers=bearer(body["access_token"])).json()
    assert set(info) == {"sub"}
    claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "=="))
    assert "email" not in claims and "name" not in claims


def test_userinfo_needs_the_openid_scope(base_url, org, gpt):
    cb = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="todos:read")))
    token = exchange(base_url, gpt, cb["code"]).json()["access_token"]
    response = requests.get(f"{base_url}/oauth/userinfo", headers=bearer(token))
    assert response.status_code == 403 and 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
