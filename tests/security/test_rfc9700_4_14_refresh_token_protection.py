"""RFC 9700 §4.14: refresh tokens are bound to their client, never widen the scope, rotate with
replay detection for public clients, expire, are stored hashed, and die with the member's access."""

import time
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Client
from conftest import Person
from conftest import assert_cut_off
from conftest import bearer
from conftest import callback_params
from conftest import connected
from conftest import csrf_of
from conftest import exchange
from conftest import gpt_params
from conftest import in_parallel
from conftest import logged_in
from conftest import me_status
from conftest import member_id
from conftest import public_tokens
from conftest import refresh
from conftest import register
from conftest import setting


def test_refresh_tokens_are_stored_hashed(base_url, tokens, world):
    stored = world.sql(sa.text("SELECT token_hash FROM refresh_token")).scalars().all()
    assert tokens["refresh_token"] not in stored and len(tokens["refresh_token"]) >= 43


def test_a_refresh_token_is_bound_to_its_client(base_url, world, tokens):
    other = world.client(name="Other")
    response = refresh(base_url, other, tokens["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_refresh_can_narrow_but_never_widen_the_scope(base_url, org, gpt):
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt, scope="openid todos:read")))[
        "code"
    ]
    body = exchange(base_url, gpt, code).json()
    wider = refresh(base_url, gpt, body["refresh_token"], scope="openid todos:read todos:write")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrower = refresh(base_url, gpt, body["refresh_token"], scope="todos:read")
    assert narrower.status_code == 200 and narrower.json()["scope"] == "todos:read"


def test_public_refresh_tokens_rotate_and_a_replay_revokes_the_grant(base_url, org, world):
    client, body = public_tokens(base_url, org, world)
    first = refresh(base_url, client, body["refresh_token"], style="none")
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != body["refresh_token"]
    second = refresh(base_url, client, rotated["refresh_token"], style="none")
    assert second.status_code == 200
    # Replaying a rotated token: RFC 9700 §4.14.2 reuse detection revokes the whole grant.
    replay = refresh(base_url, client, body["refresh_token"], style="none")
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert me_status(base_url, second.json()["access_token"]) == 401
    assert refresh(base_url, client, second.json()["refresh_token"], style="none").json()["error"] == "invalid_grant"


def test_a_rejected_public_refresh_rotates_nothing(base_url, org, world):
    client, body = public_tokens(base_url, org, world)
    wider = refresh(base_url, client, body["refresh_token"], style="none", scope="openid todos:read admin")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    assert refresh(base_url, client, body["refresh_token"], style="none").status_code == 200


def test_parallel_refreshes_of_a_public_token_all_get_the_one_successor(base_url, org, world):
    # RFC 9700 §4.14.2 with a grace window: racing uses of one token are one exchange, retried.
    client, body = public_tokens(base_url, org, world)
    data = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": client.client_id}
    responses = in_parallel(20, lambda: requests.post(f"{base_url}/oauth/token", data=data))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert len({r.text for r in responses}) == 1  # one successor pair, to the byte
    pair = responses[0].json()
    assert me_status(base_url, pair["access_token"]) == 200
    renewed = requests.post(f"{base_url}/oauth/token", data={**data, "refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200
    # Once the successor has been used, the old token is a reuse, grace window or not.
    assert requests.post(f"{base_url}/oauth/token", data=data).json()["error"] == "invalid_grant"
    assert me_status(base_url, renewed.json()["access_token"]) == 401


def test_a_retry_within_the_grace_window_gets_the_same_pair(base_url, org, world):
    client, body = public_tokens(base_url, org, world)
    first = refresh(base_url, client, body["refresh_token"], style="none")
    time.sleep(1)  # the response was lost; the client tries again
    retry = refresh(base_url, client, body["refresh_token"], style="none")
    assert first.status_code == retry.status_code == 200 and first.json() == retry.json()
    assert me_status(base_url, retry.json()["access_token"]) == 200
    assert refresh(base_url, client, retry.json()["refresh_token"], style="none").status_code == 200


def test_reuse_after_the_grace_window_revokes_the_grant(base_url, org, world, clock):
    client, body = public_tokens(base_url, org, world)
    first = refresh(base_url, client, body["refresh_token"], style="none")
    assert first.status_code == 200
    clock.shift(31)  # REFRESH_TOKEN_GRACE_SECONDS is 30
    replay = refresh(base_url, client, body["refresh_token"], style="none")
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert refresh(base_url, client, first.json()["refresh_token"], style="none").json()["error"] == "invalid_grant"


def test_no_grace_when_the_window_is_zero(app, base_url, org, world):
    client, body = public_tokens(base_url, org, world)
    with setting(app, "REFRESH_TOKEN_GRACE_SECONDS", 0):
        assert refresh(base_url, client, body["refresh_token"], style="none").status_code == 200
        time.sleep(1.1)
        assert refresh(base_url, client, body["refresh_token"], style="none").json()["error"] == "invalid_grant"


def test_tokens_of_a_grant_revoked_while_they_are_issued_are_never_answered(base_url, org, world, monkeypatch):
    from connected_todos import oauth
    from connected_todos.registry import revoke_grants

    client, body = public_tokens(base_url, org, world)
    original = oauth.insert_once

    def revoked_meanwhile(model, **values):  # the member cuts the app off at this very moment
        if model is oauth.AccessToken:
            revoke_grants("app_disconnected", grant=oauth.db.session.get(oauth.Grant, values["grant_id"]))
        return original(model, **values)

    monkeypatch.setattr(oauth, "insert_once", revoked_meanwhile)
    response = refresh(base_url, client, body["refresh_token"], style="none")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_confidential_refresh_tokens_are_not_rotated(base_url, gpt, tokens):
    for _ in range(3):
        response = refresh(base_url, gpt, tokens["refresh_token"])
        assert response.status_code == 200 and "refresh_token" not in response.json()
        assert response.headers["Cache-Control"] == "no-store"
    assert me_status(base_url, tokens["access_token"]) == 200  # earlier access tokens stay valid


def test_confidential_refresh_slides_the_lifetime(base_url, gpt, tokens, clock):
    """Each use renews the 90 days, so a GPT in use never has to ask the member again."""
    clock.shift(timedelta(days=89))
    assert refresh(base_url, gpt, tokens["refresh_token"]).status_code == 200
    clock.shift(timedelta(days=89))  # 178 days after it was issued: renewed for 90 days at day 89
    assert refresh(base_url, gpt, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize("public", [False, True])
def test_an_unused_refresh_token_expires_after_90_days(base_url, org, gpt, world, clock, public):
    client, tokens = public_tokens(base_url, org, world) if public else (gpt, connected(base_url, org.admin_email, gpt))
    clock.shift(timedelta(days=90, seconds=1))
    response = refresh(base_url, client, tokens["refresh_token"], style="none" if public else "post")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_password_change_cuts_every_app_off(base_url, world, gpt):
    org = world.org()
    tokens = connected(base_url, org.member_email, gpt)
    person = Person(base_url, org.member_email)
    person.login()
    page = person.get("/settings/password")
    wrong = person.post(
        "/settings/password",
        {"csrf_token": csrf_of(page.text), "current_password": "nope", "new_password": "another long one"},
    )
    assert "not right" in wrong.text
    assert requests.get(f"{base_url}/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    person.post(
        "/settings/password",
        {"csrf_token": csrf_of(page.text), "current_password": PASSWORD, "new_password": "another long one"},
    )
    assert_cut_off(base_url, gpt, tokens)
    assert Person(base_url, org.member_email, "another long one").login().status_code == 302


def test_a_removed_member_is_cut_off_and_their_todos_stay(base_url, world, gpt):
    org = world.org()
    tokens = connected(base_url, org.member_email, gpt)
    todo = requests.post(f"{base_url}/api/todos", json={"title": "Left behind"}, headers=bearer(tokens["access_token"]))
    boss = logged_in(base_url, org.admin_email)
    page = boss.get("/members")
    boss.post(f"/members/{member_id(page.text, org.member_email)}/remove", {"csrf_token": csrf_of(page.text)})
    assert_cut_off(base_url, gpt, tokens)
    assert f"<td>{org.member_email}</td>" not in boss.get("/members").text
    assert Person(base_url, org.member_email).login().status_code == 200  # cannot log in
    admin_tokens = connected(base_url, org.admin_email, gpt)
    kept = requests.get(
        f"{base_url}/api/todos/{todo.json()['id']}", headers=bearer(admin_tokens["access_token"])
    ).json()
    assert kept["title"] == "Left behind" and kept["created_by"] is None


def test_a_role_change_cuts_every_app_off(base_url, world, gpt):
    org = world.org()
    tokens = connected(base_url, org.member_email, gpt)
    boss = logged_in(base_url, org.admin_email)
    page = boss.get("/members")
    boss.post(
        f"/members/{member_id(page.text, org.member_email)}/role", {"csrf_token": csrf_of(page.text), "role": "admin"}
    )
    assert_cut_off(base_url, gpt, tokens)
    assert "admin" in boss.get("/members").text.split(org.member_email)[1].split("</tr>")[0]


def registered_client(base_url, **metadata):
    """A client as an app registers itself (RFC 7591), confidential unless it asks otherwise."""
    body = register(base_url, grant_types=["authorization_code", "refresh_token"], **metadata).json()
    return Client(body["client_id"], body.get("client_secret"), body["redirect_uris"][0])


@pytest.mark.parametrize(
    ("scope", "lasting"),
    [
        ("openid todos:read", False),  # OpenID Connect Core §11: no offline_access, no refresh token
        ("openid offline_access todos:read", True),
        ("todos:read todos:write", True),  # an OAuth client, as MCP clients are: it says so at consent
    ],
)
def test_oidc_core_11_a_refresh_token_only_with_lasting_access_and_the_consent_page_says_which(
    base_url, org, scope, lasting
):
    client = registered_client(base_url, client_name="Self-registered")
    person = Person(base_url, org.admin_email)
    consent = person.authorize(gpt_params(client, scope=scope), decision=None)
    assert ("stay connected until you cut it off" in consent.text) is lasting
    assert ("ends within an hour" in consent.text) is not lasting
    answer = person.post(consent.url, {"csrf_token": csrf_of(consent.text), "decision": "allow"})
    body = exchange(base_url, client, callback_params(answer)["code"]).json()
    assert ("refresh_token" in body) is lasting


def test_a_gpt_action_stays_connected_without_asking_for_offline_access(base_url, org, gpt):
    # GPT Actions never ask for offline_access, yet must refresh: an operator-registered
    # confidential client gets lasting access, and the consent page says so.
    person = Person(base_url, org.admin_email)
    consent = person.authorize(gpt_params(gpt, scope="openid todos:read"), decision=None)
    assert "stay connected until you cut it off" in consent.text
    answer = person.post(consent.url, {"csrf_token": csrf_of(consent.text), "decision": "allow"})
    assert exchange(base_url, gpt, callback_params(answer)["code"]).json()["refresh_token"]
