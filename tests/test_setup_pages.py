"""/setup for operators, /settings/connected-apps for members, over HTTP."""

import re

import pytest
import requests
from conftest import Client
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import csrf_of
from conftest import exchange
from conftest import gpt_params
from conftest import mcp_client
from conftest import mcp_token
from conftest import token_request

CALLBACK = "https://chatgpt.com/aip/g-1bc9e788468a358cb5138906b5c6d706d0ecb2cc/oauth/callback"


def create_gpt(operator: Person, name: str = "My GPT") -> tuple[Client, str]:
    page = operator.get("/setup")
    response = operator.post("/setup/gpt", {"csrf_token": csrf_of(page.text), "name": name})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    client_id = re.search(r'id="client-id" readonly value="([^"]+)"', response.text).group(1)
    secret = re.search(r'id="client-secret" readonly value="([^"]+)"', response.text).group(1)
    return Client(client_id, secret, CALLBACK), response.text


def add_callback(operator: Person, client: Client, uri: str, confirm: bool = False) -> requests.Response:
    page = operator.get(f"/setup/clients/{client.client_id}")
    data = {"csrf_token": csrf_of(page.text), "redirect_uri": uri}
    if confirm:
        data["confirm"] = "yes"
    return operator.post(f"/setup/clients/{client.client_id}/redirect-uris", data)


def test_only_operators_open_setup(base_url, org):
    assert requests.get(f"{base_url}/setup", allow_redirects=False).status_code == 302  # to login
    member = Person(base_url, org.member_email)
    member.login()
    response = member.get("/setup")
    assert response.status_code == 403 and "make-operator" in response.text


def test_setup_leads_with_mcp_and_marks_the_gpt_path_as_legacy(base_url, operator, org, world):
    mcp_token(base_url, org.admin_email, mcp_client(world))  # an MCP client that registered itself
    page = operator.get("/setup").text
    mcp, gpt = page.index("Connect ChatGPT, Claude or another MCP client"), page.index("Connect a custom GPT")
    assert mcp < gpt and "(legacy)" in page and "11 December 2026" in page
    assert f'value="{base_url}/mcp"' in page and 'data-copy="mcp-url"' in page
    for host in ("ChatGPT:", "Claude:", "Claude Code:", "VS Code:", "Cursor:", "MCP Inspector:"):
        assert host in page
    clients = page[mcp:gpt]
    assert "Raw MCP client" in clients and "registered itself" in clients


def test_connect_a_custom_gpt_shows_every_value_once(base_url, operator):
    client, page = create_gpt(operator)
    for value in (
        f"{base_url}/idp",
        f"{base_url}/oauth/token",
        f"{base_url}/openapi.yaml",
        "openid profile email offline_access todos:read todos:write",
        "Default (POST request)",
    ):
        assert value in page
    detail = operator.get(f"/setup/clients/{client.client_id}")
    assert client.client_id in detail.text and client.client_secret not in detail.text
    assert "third-party confidential" in detail.text


def test_a_chatgpt_callback_is_added_and_the_gpt_can_connect(base_url, operator, org):
    client, _ = create_gpt(operator)
    response = add_callback(operator, client, CALLBACK)
    assert response.status_code == 302
    assert "ChatGPT&#39;s callback URL" in operator.get(response.headers["Location"]).text
    code = callback_params(Person(base_url, org.member_email).authorize(gpt_params(client)))["code"]
    assert exchange(base_url, client, code).status_code == 200


def test_another_https_callback_needs_an_explicit_confirmation(base_url, operator):
    client, _ = create_gpt(operator)
    asked = add_callback(operator, client, "https://example.com/oauth/callback")
    assert asked.status_code == 200 and "does not look like a ChatGPT callback URL" in asked.text
    assert (
        "<code>https://example.com/oauth/callback</code>\n"
        not in operator.get(f"/setup/clients/{client.client_id}").text
    )
    assert (
        "https://example.com/oauth/callback"
        not in operator.get(f"/setup/clients/{client.client_id}")
        .text.split("Callback URL")[-1]
        .split("No callback URL")[0]
    )
    add_callback(operator, client, "https://example.com/oauth/callback", confirm=True)
    detail = operator.get(f"/setup/clients/{client.client_id}").text
    assert "<code>https://example.com/oauth/callback</code>" in detail


@pytest.mark.parametrize("uri", ["http://example.com/cb", "javascript:alert(1)", "https://a.test/cb#x"])
def test_unsafe_callbacks_are_refused_even_when_confirmed(base_url, operator, uri):
    client, _ = create_gpt(operator)
    add_callback(operator, client, uri, confirm=True)
    assert f"<code>{uri}</code>" not in operator.get(f"/setup/clients/{client.client_id}").text


def test_a_removed_callback_stops_working(base_url, operator, org):
    client, _ = create_gpt(operator)
    add_callback(operator, client, CALLBACK)
    page = operator.get(f"/setup/clients/{client.client_id}")
    operator.post(
        f"/setup/clients/{client.client_id}/redirect-uris/remove",
        {"csrf_token": csrf_of(page.text), "redirect_uri": CALLBACK},
    )
    response = requests.get(f"{base_url}/idp", params=gpt_params(client), allow_redirects=False)
    assert response.status_code == 400


def test_a_changed_callback_is_listed_and_an_operator_adds_it_from_the_error_page(base_url, operator):
    client, _ = create_gpt(operator)
    new_callback = "https://chatgpt.com/aip/g-0000000000000000000000000000000000000000/oauth/callback"
    error_page = operator.get("/idp?" + requests.compat.urlencode(gpt_params(client, redirect_uri=new_callback)))
    assert error_page.status_code == 400 and "is not registered for My GPT" in error_page.text
    assert client.client_secret not in error_page.text and "Add this callback URL" in error_page.text
    assert new_callback in operator.get(f"/setup/clients/{client.client_id}").text  # recently rejected
    operator.post(
        f"/setup/clients/{client.client_id}/redirect-uris",
        {"csrf_token": csrf_of(error_page.text), "redirect_uri": new_callback, "confirm": "yes"},
    )
    assert operator.get(
        "/idp?" + requests.compat.urlencode(gpt_params(client, redirect_uri=new_callback))
    ).status_code in (200, 302)


def test_the_error_page_offers_no_add_to_people_who_are_not_operators(base_url, org, gpt):
    member = Person(base_url, org.member_email)
    member.login()
    page = member.get(
        "/idp?" + requests.compat.urlencode(gpt_params(gpt, redirect_uri="https://chatgpt.com/aip/g-x/oauth/callback"))
    )
    assert page.status_code == 400 and "Add this callback URL" not in page.text


def test_secret_rotation_start_complete_and_cancel(base_url, operator):
    client, _ = create_gpt(operator)

    def works(secret: str) -> bool:
        return (
            requests.post(
                f"{base_url}/oauth/introspect", data={"token": "x"}, auth=(client.client_id, secret)
            ).status_code
            == 200
        )

    def rotate(action: str) -> requests.Response:
        page = operator.get(f"/setup/clients/{client.client_id}")
        return operator.post(
            f"/setup/clients/{client.client_id}/secret", {"csrf_token": csrf_of(page.text), "action": action}
        )

    started = rotate("start")
    new = re.search(r'id="client-secret" readonly value="([^"]+)"', started.text).group(1)
    assert started.headers["Cache-Control"] == "no-store"
    assert works(client.client_secret) and works(new)  # both, until the rotation completes
    rotate("complete")
    assert works(new) and not works(client.client_secret)
    cancelled = re.search(r'id="client-secret" readonly value="([^"]+)"', rotate("start").text).group(1)
    rotate("cancel")
    assert works(new) and not works(cancelled)


def test_deleting_a_client_revokes_its_tokens(base_url, operator, org):
    client, _ = create_gpt(operator)
    add_callback(operator, client, CALLBACK)
    code = callback_params(Person(base_url, org.member_email).authorize(gpt_params(client)))["code"]
    body = exchange(base_url, client, code).json()
    assert "My GPT" in operator.get("/setup").text
    page = operator.get(f"/setup/clients/{client.client_id}")
    operator.post(f"/setup/clients/{client.client_id}/delete", {"csrf_token": csrf_of(page.text)})
    assert requests.get(f"{base_url}/api/me", headers=bearer(body["access_token"])).status_code == 401
    refresh = token_request(base_url, client, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert refresh.status_code == 401


def test_setup_lists_apps_with_type_dates_and_members(base_url, operator, org):
    client, _ = create_gpt(operator, "Listed GPT")
    add_callback(operator, client, CALLBACK)
    callback_params(Person(base_url, org.member_email).authorize(gpt_params(client)))
    row = operator.get("/setup").text.split(">Listed GPT</a>")[-1].split("</tr>")[0]
    assert "third-party confidential" in row and "never" in row and "<td>1</td>" in row


def test_a_member_sees_and_revokes_a_connected_app(base_url, org, gpt):
    person = Person(base_url, org.member_email)
    body = exchange(base_url, gpt, callback_params(person.authorize(gpt_params(gpt)))["code"]).json()
    page = person.get("/settings/connected-apps")
    assert "ChatGPT" in page.text and "See your organization&#39;s todos" in page.text
    person.post(f"/settings/connected-apps/{gpt.client_id}/revoke", {"csrf_token": csrf_of(page.text)})
    assert requests.get(f"{base_url}/api/me", headers=bearer(body["access_token"])).status_code == 401
    refresh = token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    assert "No app can act for you" in person.get("/settings/connected-apps").text
    # The next authorization asks for consent again.
    again = person.get("/idp?" + requests.compat.urlencode(gpt_params(gpt)))
    assert again.status_code == 200 and 'name="decision"' in again.text


def test_revoking_for_one_member_leaves_the_others_connected(base_url, org, gpt):
    admin, member = Person(base_url, org.admin_email), Person(base_url, org.member_email)
    admin_tokens = exchange(base_url, gpt, callback_params(admin.authorize(gpt_params(gpt)))["code"]).json()
    callback_params(member.authorize(gpt_params(gpt)))
    page = member.get("/settings/connected-apps")
    member.post(f"/settings/connected-apps/{gpt.client_id}/revoke", {"csrf_token": csrf_of(page.text)})
    assert requests.get(f"{base_url}/api/me", headers=bearer(admin_tokens["access_token"])).status_code == 200


def test_the_playground_is_a_first_party_public_client_with_this_deployments_callback(base_url):
    page = requests.get(f"{base_url}/playground")
    assert page.status_code == 200 and f'data-redirect-uri="{base_url}/playground/callback"' in page.text
    assert "connected-todos-playground" in page.text


def test_the_playground_is_not_managed_from_setup(base_url, operator):
    from connected_todos.operators import PLAYGROUND_CLIENT_ID

    assert operator.get(f"/setup/clients/{PLAYGROUND_CLIENT_ID}").status_code == 404
    assert PLAYGROUND_CLIENT_ID not in operator.get("/setup").text


def test_a_rejected_url_is_added_only_after_an_explicit_confirmation(base_url, operator):
    # Anyone can fill the list of rejected callbacks, ChatGPT-shaped ones included: adding one
    # from the list asks the operator to confirm it belongs to the app.
    client, _ = create_gpt(operator)
    planted = "https://chatgpt.com/aip/g-1111111111111111111111111111111111111111/oauth/callback"
    requests.get(f"{base_url}/idp", params=gpt_params(client, redirect_uri=planted))
    page = operator.get(f"/setup/clients/{client.client_id}")
    form = {"csrf_token": csrf_of(page.text), "redirect_uri": planted, "from": "rejected"}
    asked = operator.post(f"/setup/clients/{client.client_id}/redirect-uris", form)
    assert asked.status_code == 200 and 'name="confirm"' in asked.text
    assert requests.get(f"{base_url}/idp", params=gpt_params(client, redirect_uri=planted)).status_code == 400
