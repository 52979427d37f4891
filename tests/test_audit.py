"""The audit log: each security event is recorded with actor, client, IP address and time, never a
secret; operators read it at /setup/audit, filtered."""

import re

import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Person
from conftest import callback_params
from conftest import csrf_of
from conftest import exchange
from conftest import gpt_params

import app as todo_app
from app import db


def events(world, client_id=None) -> list[tuple]:
    query = "SELECT event, actor, client_id, ip_address, at, detail FROM audit_event"
    rows = world.sql(sa.text(query + (" WHERE client_id = :c" if client_id else "") + " ORDER BY id"), c=client_id)
    return rows.all()


def test_a_connection_is_audited_without_secrets(app, base_url, world, gpt, org):
    Person(base_url, org.member_email, "wrong password").login()
    person = Person(base_url, org.member_email)
    denied = callback_params(person.authorize(gpt_params(gpt), decision="deny"))
    assert denied["error"] == "access_denied"
    code = callback_params(person.authorize(gpt_params(gpt, prompt="consent")))["code"]
    tokens = exchange(base_url, gpt, code).json()
    exchange(base_url, gpt, code)  # a replay
    requests.post(
        f"{base_url}/oauth/revoke", data={"token": tokens["access_token"]}, auth=(gpt.client_id, gpt.client_secret)
    )
    recorded = events(world, gpt.client_id)
    names = [row[0] for row in recorded]
    for name in ("consent_denied", "consent_given", "token_issued", "code_reuse_detected", "token_revoked"):
        assert name in names
    assert all(row[1] == org.member_email and row[3] == "127.0.0.1" and row[4] for row in recorded)
    everything = " ".join(str(value) for row in events(world) for value in row)
    assert "login_failed" in everything and "login_succeeded" in everything
    for secret in (gpt.client_secret, code, tokens["access_token"], tokens["refresh_token"], PASSWORD):
        assert secret not in everything


def test_refresh_reuse_and_registration_are_audited(base_url, world, org):
    from test_mcp import mcp_client
    from test_mcp import mcp_token

    client = mcp_client(world)
    body = mcp_token(base_url, org.admin_email, client)
    data = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": client.client_id}
    requests.post(f"{base_url}/oauth/token", data=data)
    requests.post(f"{base_url}/oauth/token", data=data)  # the rotated token again
    names = [row[0] for row in events(world, client.client_id)]
    assert names[0] == "client_registered" and "refresh_reuse_detected" in names


def test_operators_read_and_filter_the_audit_log(app, base_url, org, gpt):
    assert app.test_cli_runner().invoke(args=["make-operator", org.admin_email]).exit_code == 0
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
    member = Person(base_url, org.member_email)
    member.login()
    assert member.get("/setup/audit").status_code == 403


def test_the_audit_log_filters_by_address_and_pages_back_in_time(app, base_url, org, world):
    assert app.test_cli_runner().invoke(args=["make-operator", org.admin_email]).exit_code == 0
    operator = Person(base_url, org.admin_email)
    operator.login()
    actor = f"pager-{org.slug}@example.test"
    with app.test_request_context(environ_base={"REMOTE_ADDR": "198.51.100.7"}):
        for n in range(105):  # a guesser at one address, more than a page of them
            todo_app.audit("login_failed", actor=actor, detail=f"attempt {n:03d}")
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
    assert app.test_cli_runner().invoke(args=["make-operator", org.admin_email]).exit_code == 0
    operator = Person(base_url, org.admin_email)
    operator.login()
    created = operator.post("/setup/gpt", {"csrf_token": csrf_of(operator.get("/setup").text), "name": "Audited"})
    client_id = created.text.split('id="client-id" readonly value="')[1].split('"')[0]
    page = operator.get(f"/setup/clients/{client_id}")
    operator.post(f"/setup/clients/{client_id}/secret", {"csrf_token": csrf_of(page.text), "action": "start"})
    operator.post(f"/setup/clients/{client_id}/delete", {"csrf_token": csrf_of(page.text)})
    names = [row[0] for row in events(world, client_id)]
    assert names == ["client_created", "client_secret_rotated", "client_deleted"]
