"""Organizations are tenants: a member's token, tools and pages reach their own organization's data
only. Another organization's todo or member does not exist for them (404), on every endpoint."""

from conftest import add_todo
from conftest import api
from conftest import call
from conftest import csrf_of
from conftest import logged_in
from conftest import mcp_client
from conftest import mcp_token
from conftest import member_id
from conftest import todo_ids
from conftest import token_for


def test_organizations_are_isolated_on_every_endpoint(base_url, world, gpt):
    mine, theirs = world.org(), world.org()
    their_token = token_for(base_url, theirs.admin_email, gpt)
    my_token = token_for(base_url, mine.admin_email, gpt)
    secret = api(base_url, "POST", "/todos", their_token, json={"title": "Their secret"}).json()
    listed = api(base_url, "GET", "/todos", my_token, params={"limit": 100}).json()["todos"]
    assert secret["id"] not in [t["id"] for t in listed]
    assert api(base_url, "GET", f"/todos/{secret['id']}", my_token).status_code == 404
    assert api(base_url, "PATCH", f"/todos/{secret['id']}", my_token, json={"title": "mine now"}).status_code == 404
    assert api(base_url, "DELETE", f"/todos/{secret['id']}", my_token).status_code == 404
    assert api(base_url, "GET", f"/todos/{secret['id']}", their_token).json()["title"] == "Their secret"
    # The organization comes from the token alone: naming another one changes nothing.
    override = {"org_id": theirs.id, "organization_id": theirs.id}
    listed = api(base_url, "GET", "/todos", my_token, params={**override, "limit": 100}).json()["todos"]
    assert secret["id"] not in [t["id"] for t in listed]
    created = api(base_url, "POST", "/todos", my_token, json={"title": "Mine", "organization_id": theirs.id})
    assert created.status_code == 422 and created.json()["field"] == "organization_id"
    assert api(base_url, "GET", "/me", my_token, params=override).json()["organization"]["id"] == mine.id


def test_tools_never_cross_organizations(base_url, world):
    mine, theirs = world.org(), world.org()
    client = mcp_client(world)
    their_token = mcp_token(base_url, theirs.admin_email, client)["access_token"]
    my_token = mcp_token(base_url, mine.admin_email, client)["access_token"]
    secret = call(base_url, their_token, "add_todo", {"title": "Their secret"}).json()["result"]["structuredContent"]
    listed = call(base_url, my_token, "list_todos", {"limit": 100}).json()["result"]["structuredContent"]["todos"]
    assert secret["id"] not in [t["id"] for t in listed]
    for name, arguments in [
        ("update_todo", {"id": secret["id"], "title": "mine"}),
        ("complete_todo", {"id": secret["id"]}),
        ("delete_todo", {"id": secret["id"]}),
    ]:
        result = call(base_url, my_token, name, arguments).json()["result"]
        assert result["isError"] is True and "no todo" in result["content"][0]["text"]
    assert (
        call(base_url, their_token, "list_todos", {}).json()["result"]["structuredContent"]["todos"][0]["title"]
        == "Their secret"
    )


def test_another_organizations_todo_is_not_found(base_url, world):
    mine, theirs = world.org(), world.org()
    owner = logged_in(base_url, theirs.admin_email)
    add_todo(owner, "Secret plan")
    todo_id = todo_ids(owner.get("/todos").text)[0]
    stranger = logged_in(base_url, mine.admin_email)
    assert "Secret plan" not in stranger.get("/todos").text
    assert stranger.get(f"/todos/{todo_id}/edit").status_code == 404
    token = csrf_of(stranger.get("/todos").text)
    assert stranger.post(f"/todos/{todo_id}/delete", {"csrf_token": token}).status_code == 404
    assert stranger.post(f"/todos/{todo_id}/toggle", {"csrf_token": token}).status_code == 404
    assert "Secret plan" in owner.get("/todos").text


def test_an_admin_cannot_touch_another_organizations_members(base_url, world):
    mine, theirs = world.org(), world.org()
    their_admin = logged_in(base_url, theirs.admin_email)
    their_id = member_id(their_admin.get("/members").text, theirs.member_email)
    boss = logged_in(base_url, mine.admin_email)
    token = csrf_of(boss.get("/members").text)
    assert boss.post(f"/members/{their_id}/remove", {"csrf_token": token}).status_code == 404
    assert boss.post(f"/members/{their_id}/role", {"csrf_token": token, "role": "admin"}).status_code == 404
    assert theirs.member_email in their_admin.get("/members").text
