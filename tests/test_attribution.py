"""Which agent did what: a todo records the app that made it and the app that last changed it, and
the member sees it on the todos page and on their connected apps."""

import requests
from conftest import add_todo
from conftest import api
from conftest import call
from conftest import logged_in
from conftest import mcp_client
from conftest import mcp_token
from conftest import token_for


def test_the_api_says_which_app_made_and_changed_a_todo(base_url, org, world, gpt):
    token = token_for(base_url, org.admin_email, gpt)
    made = api(base_url, "POST", "/todos", token, json={"title": "From the GPT"}).json()
    assert made["created_via"] == {"client_id": gpt.client_id, "name": "ChatGPT"} and made["updated_via"] is None
    other = world.client(name="Claude")
    changed = api(
        base_url, "PATCH", f"/todos/{made['id']}", token_for(base_url, org.admin_email, other), json={"completed": True}
    ).json()
    assert changed["created_via"]["client_id"] == gpt.client_id
    assert changed["updated_via"] == {"client_id": other.client_id, "name": "Claude"}


def test_mcp_tools_record_their_app_too(base_url, org, world):
    client = mcp_client(world)
    token = mcp_token(base_url, org.admin_email, client, resource=f"{base_url}/mcp")["access_token"]
    made = call(base_url, token, "add_todo", {"title": "From MCP"}).json()["result"]["structuredContent"]
    assert made["created_via"] == {"client_id": client.client_id, "name": "Raw MCP client"}
    done = call(base_url, token, "complete_todo", {"id": made["id"]}).json()["result"]["structuredContent"]
    assert done["updated_via"]["client_id"] == client.client_id


def test_a_todo_made_on_the_web_names_no_app(base_url, org, gpt):
    person = logged_in(base_url, org.admin_email)
    add_todo(person, "By hand")
    token = token_for(base_url, org.admin_email, gpt)
    by_hand = next(t for t in api(base_url, "GET", "/todos", token).json()["todos"] if t["title"] == "By hand")
    assert by_hand["created_via"] is None and by_hand["updated_via"] is None


def test_the_member_sees_which_app_did_what(base_url, world, gpt):
    org = world.org()
    token = token_for(base_url, org.member_email, gpt)
    todo = api(base_url, "POST", "/todos", token, json={"title": "Agent's todo"}).json()
    api(base_url, "PATCH", f"/todos/{todo['id']}", token, json={"notes": "done by the agent"})
    person = logged_in(base_url, org.member_email)
    page = person.get("/todos").text
    assert "Agent&#39;s todo" in page and "via ChatGPT" in page
    apps = person.get("/settings/connected-apps").text
    assert "Made 1 todo" in apps and "Changed 1 todo" in apps
    assert requests.get(f"{base_url}/settings/connected-apps", allow_redirects=False).status_code == 302
