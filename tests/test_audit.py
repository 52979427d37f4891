"""The audit log: each security event is recorded with actor, client, IP address and time, never a
secret; operators read it at /setup/audit, filtered."""

import json
import re
from datetime import datetime

import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Person
from conftest import callback_params
from conftest import csrf_of
from conftest import exchange
from conftest import gpt_params
from conftest import register

from connected_todos.models import db
from connected_todos.registry import audit


def events(world, client_id=None) -> list[tuple]:
    query = "SELECT event, actor, client_id, ip_address, at, detail FROM audit_event"
    rows = world.sql(sa.text(query + (" WHERE client_id = :c" if client_id else "") + " ORDER BY id"), c=client_id)
    return rows.all()


def test_a_connection_is_audited_without_secrets(app, base_url, world, gpt, org):
    Person(base_url, org.member_email, "a mistyped secret password").login()
    person = Person(base_url, org.member_email)
    denied = callback_params(person.authorize(gpt_params(gpt), decision="deny"))
    assert denied["error"] == "access_denied"
    code = callback_params(person.authorize(gpt_params(gpt, prompt="consent")))["code"]
    tokens = exchange(base_url, gpt, code).json()
    exchange(base_url, gpt, code)  # a replay
    requests.post(
        f"{base_url}/oauth/revoke", data={"token": tokens["access_token"]}, auth=(gpt.client_id, gpt.client_secret)
    )
    page = person.get("/settings/connected-apps")
    person.post(f"/settings/connected-apps/{gpt.client_id}/revoke", {"csrf_token": csrf_of(page.text)})
    created, *recorded = events(world, gpt.client_id)
    assert created[:2] == ("client_created", "command line")  # the fixture made the client
    names = [row[0] for row in recorded]
    for name in ("consent_denied", "consent_given", "token_issued", "code_reuse_detected", "token_revoked"):
        assert name in names
    assert names[-1] == "app_disconnected"
    assert all(row[1] == org.member_email and row[3] == "127.0.0.1" and row[4] for row in recorded)
    everything = " ".join(str(value) for row in events(world) for value in row)
    assert "login_failed" in everything and "login_succeeded" in everything
    secrets_used = [gpt.client_secret, code, tokens["access_token"], tokens["refresh_token"], PASSWORD]
    for secret in [*secrets_used, "a mistyped secret password"]:
        assert secret not in everything


def test_refresh_reuse_and_registration_are_audited(base_url, world, org):
    from test_mcp import mcp_client
    from test_mcp import mcp_token

    confidential = register(base_url, client_name="Confidential MCP client").json()
    client = mcp_client(world)
    body = mcp_token(base_url, org.admin_email, client)
    data = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": client.client_id}
    successor = requests.post(f"{base_url}/oauth/token", data=data).json()["refresh_token"]
    requests.post(f"{base_url}/oauth/token", data={**data, "refresh_token": successor})
    requests.post(f"{base_url}/oauth/token", data=data)  # the rotated token, once its successor was used
    names = [row[0] for row in events(world, client.client_id)]
    assert names[0] == "client_registered" and "refresh_reuse_detected" in names
    registered = events(world, confidential["client_id"])
    assert [row[0] for row in registered] == ["client_registered"]
    assert confidential["client_secret"] not in " ".join(str(value) for value in registered[0])


def test_operators_read_and_filter_the_audit_log(app, base_url, org, gpt):
    assert app.test_cli_runner().invoke(args=["make-operator", "--org", org.slug, org.admin_email]).exit_code == 0
    operator = Person(base_url, org.admin_email)
    operator.login()
    callback_params(Person(base_url, org.member_email).authorize(gpt_params(gpt)))
    page = operator.get(f"/setup/audit?client_id={gpt.client_id}")
    assert (
        page.status_code == 200
        and "<td>consent_given</td>" in page.text
        and page.headers["Cache-Control"] == "no-store"
    )
    assert "<td>login_succeeded</td>" not in page.text  # filtered to the client
    only = operator.get("/setup/audit?event=consent_denied&client_id=" + gpt.client_id)
    assert "Nothing matches" in only.text
    by_actor = operator.get(f"/setup/audit?client_id={gpt.client_id}&actor={org.member_email}")
    assert "<td>consent_given</td>" in by_actor.text and "<td>client_created</td>" not in by_actor.text
    member = Person(base_url, org.member_email)
    member.login()
    assert member.get("/setup/audit").status_code == 403


def test_the_audit_log_filters_by_address_and_pages_back_in_time(app, base_url, org, world):
    assert app.test_cli_runner().invoke(args=["make-operator", "--org", org.slug, org.admin_email]).exit_code == 0
    operator = Person(base_url, org.admin_email)
    operator.login()
    actor = f"pager-{org.slug}@example.test"
    with app.test_request_context(environ_base={"REMOTE_ADDR": "198.51.100.7"}):
        for n in range(105):  # a guesser at one address, more than a page of them
            audit("login_failed", actor=actor, detail=f"attempt {n:03d}")
        db.session.commit()
    first = operator.get(f"/setup/audit?actor={actor}&ip_address=198.51.100.7")
    assert first.text.count("<td>login_failed</td>") == 100 and "attempt 104" in first.text
    older = re.search(r'href="(/setup/audit\?[^"]+)">Older events', first.text).group(1).replace("&amp;", "&")
    assert "ip_address=198.51.100.7" in older and "actor=" in older  # the filters follow the pages
    second = operator.get(older)
    assert second.text.count("<td>login_failed</td>") == 5 and "attempt 000" in second.text
    assert "Older events" not in second.text
    elsewhere = operator.get(f"/setup/audit?actor={actor}&ip_address=203.0.113.9")
    assert "Nothing matches" in elsewhere.text
    bad_cursor = operator.get(f"/setup/audit?actor={actor}&cursor=not-a-cursor")
    assert bad_cursor.status_code == 302 and bad_cursor.headers["Location"] == f"/setup/audit?actor={actor}"


def test_setup_changes_are_audited(app, base_url, org, world):
    assert app.test_cli_runner().invoke(args=["make-operator", "--org", org.slug, org.admin_email]).exit_code == 0
    operator = Person(base_url, org.admin_email)
    operator.login()
    created = operator.post("/setup/gpt", {"csrf_token": csrf_of(operator.get("/setup").text), "name": "Audited"})
    client_id = created.text.split('id="client-id" readonly value="')[1].split('"')[0]
    shown = [created.text.split('id="client-secret" readonly value="')[1].split('"')[0]]
    page = operator.get(f"/setup/clients/{client_id}")
    callback = "https://chatgpt.com/aip/g-audited/oauth/callback"
    operator.post(
        f"/setup/clients/{client_id}/redirect-uris", {"csrf_token": csrf_of(page.text), "redirect_uri": callback}
    )
    for finish in ("complete", "cancel"):
        started = operator.post(
            f"/setup/clients/{client_id}/secret", {"csrf_token": csrf_of(page.text), "action": "start"}
        )
        shown.append(started.text.split('id="client-secret" readonly value="')[1].split('"')[0])
        operator.post(f"/setup/clients/{client_id}/secret", {"csrf_token": csrf_of(page.text), "action": finish})
    operator.post(f"/setup/clients/{client_id}/delete", {"csrf_token": csrf_of(page.text)})
    recorded = events(world, client_id)
    assert [(row[0], row[5]) for row in recorded] == [
        ("client_created", "third-party confidential"),
        ("redirect_uri_added", callback),
        ("client_secret_rotated", "started"),
        ("client_secret_rotated", "completed"),
        ("client_secret_rotated", "started"),
        ("client_secret_rotated", "cancelled"),
        ("client_deleted", "Audited"),
    ]
    assert all(row[1] == org.admin_email and row[3] == "127.0.0.1" for row in recorded)
    for secret in shown:
        assert secret not in " ".join(str(value) for row in events(world) for value in row)


def test_changes_made_at_the_command_line_are_audited_too(app, world):
    def run(*args: str) -> str:
        result = app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output
        return result.output

    created = json.loads(run("create-client", "--name", "Scripted", "--redirect-uri", "https://ok.test/cb", "--json"))
    client_id = created["client_id"]
    run("add-redirect-uri", client_id, "https://ok.test/other")
    rotated = run("rotate-client-secret", client_id).split("client_secret: ")[1].strip()
    recorded = events(world, client_id)
    assert [(row[0], row[1]) for row in recorded] == [
        ("client_created", "command line"),
        ("redirect_uri_added", "command line"),
        ("client_secret_rotated", "command line"),
    ]
    everything = " ".join(str(value) for row in events(world) for value in row)
    assert created["client_secret"] not in everything and rotated not in everything
    # Members and operators made at the command line are on the record too.
    slug = run("create-org", "--name", "Scripted Org").strip()
    email = f"scripted@{slug}.test"
    run("create-member", "--org", slug, "--email", email, "--password", PASSWORD, "--role", "admin")
    run("make-operator", "--org", slug, email)
    rows = world.sql(sa.text("SELECT event, detail FROM audit_event WHERE actor = :a ORDER BY id"), a=email).all()
    assert [tuple(row) for row in rows] == [
        ("member_added", "as admin, by the command line"),
        ("operator_granted", "by the command line"),
    ]
    assert PASSWORD not in " ".join(str(value) for row in events(world) for value in row)


def test_pruned_registrations_are_audited(app, base_url, world):
    client_id = register(base_url, client_name="Never used").json()["client_id"]
    world.sql(
        sa.text("UPDATE client SET created_at = :old WHERE client_id = :c"),
        old=datetime(2020, 1, 1),
        c=client_id,
    )
    assert app.test_cli_runner().invoke(args=["prune-clients", "--delete"]).exit_code == 0
    deleted = events(world, client_id)[-1]
    assert deleted[:2] == ("client_deleted", "command line") and "never used" in deleted[5]


def test_exactly_one_page_of_events_offers_no_older_page(app, base_url, org):
    assert app.test_cli_runner().invoke(args=["make-operator", "--org", org.slug, org.admin_email]).exit_code == 0
    operator = Person(base_url, org.admin_email)
    operator.login()
    actor = f"exact-{org.slug}@example.test"
    with app.test_request_context():
        for _ in range(100):
            audit("login_failed", actor=actor)
        db.session.commit()
    page = operator.get(f"/setup/audit?actor={actor}")
    assert page.text.count("<td>login_failed</td>") == 100 and "Older events" not in page.text
