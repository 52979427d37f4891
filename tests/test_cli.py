"""CLI commands for scripting: clients, organizations and members."""

import json

import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Person

from connected_todos.models import Organization
from connected_todos.models import db
from connected_todos.registry import create_member


def run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    return result


def test_create_client_prints_id_and_secret_once_as_json(app):
    result = run(
        app,
        "create-client",
        "--name",
        "ChatGPT",
        "--redirect-uri",
        "https://chat.openai.com/aip/g-abc/oauth/callback",
        "--json",
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert set(created) == {"client_id", "client_secret"}
    listing = run(app, "list-clients").output
    assert created["client_id"] in listing and created["client_secret"] not in listing
    assert "third-party confidential" in listing


def test_create_a_public_first_party_client_with_two_uris(app):
    result = run(
        app,
        "create-client",
        "--name",
        "CLI",
        "--public",
        "--first-party",
        "--scope",
        "openid,todos:read",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--redirect-uri",
        "com.example.app:/cb",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) == {"client_id"}
    assert "first-party public" in run(app, "list-clients").output


def test_create_client_refuses_unsafe_redirect_uris_and_unknown_scopes(app):
    for uri in ["javascript:alert(1)", "http://example.com/cb", "https://example.com/cb#x"]:
        result = run(app, "create-client", "--name", "Bad", "--redirect-uri", uri)
        assert result.exit_code != 0 and "redirect" in result.output.lower()
    result = run(app, "create-client", "--name", "Bad", "--redirect-uri", "https://ok.test/cb", "--scope", "admin")
    assert result.exit_code != 0


def test_names_with_hidden_characters_are_refused(app):
    for command in (["create-org", "--slug", "hidden"], ["create-client", "--redirect-uri", "https://ok.test/cb"]):
        result = run(app, *command, "--name", "Acme\u202e")
        assert result.exit_code != 0 and "must not contain control" in result.output
        result = run(app, *command, "--name", "x" * 101)
        assert result.exit_code != 0 and "at most 100 characters" in result.output


def test_rotate_client_secret_replaces_the_old_one(app, base_url):
    created = json.loads(
        run(app, "create-client", "--name", "R", "--redirect-uri", "https://ok.test/cb", "--json").output
    )
    result = run(app, "rotate-client-secret", created["client_id"])
    new_secret = result.output.split()[-1]
    assert result.exit_code == 0 and new_secret != created["client_secret"]

    def auth_status(secret):
        return requests.post(
            f"{base_url}/oauth/introspect", data={"token": "x"}, auth=(created["client_id"], secret)
        ).status_code

    assert auth_status(created["client_secret"]) == 401 and auth_status(new_secret) == 200


def test_add_redirect_uri(app):
    created = json.loads(
        run(app, "create-client", "--name", "A", "--redirect-uri", "https://ok.test/cb", "--json").output
    )
    result = run(app, "add-redirect-uri", created["client_id"], "https://chatgpt.com/aip/g-new/oauth/callback")
    assert result.exit_code == 0 and "https://chatgpt.com/aip/g-new/oauth/callback" in result.output
    assert run(app, "add-redirect-uri", created["client_id"], "javascript:x").exit_code != 0
    assert run(app, "add-redirect-uri", "no-such-client", "https://ok.test/x").exit_code != 0


def test_create_org_and_member_then_log_in(app, base_url):
    slug = run(app, "create-org", "--name", "Scripted Org").output.strip()
    result = run(
        app, "create-member", "--org", slug, "--email", "ops@scripted.test", "--password", PASSWORD, "--role", "admin"
    )
    assert result.exit_code == 0, result.output
    assert Person(base_url, "ops@scripted.test").login().headers["Location"] == "/todos"
    again = run(app, "create-member", "--org", slug, "--email", "ops@scripted.test", "--password", PASSWORD)
    assert again.exit_code != 0 and "already a member" in again.output
    assert run(app, "create-member", "--org", "nope", "--email", "a@b.test", "--password", PASSWORD).exit_code != 0


def test_create_member_checks_the_name_it_stores(app):
    slug = run(app, "create-org", "--name", "Named Org").output.strip()
    long_local_part = "a" * 95 + "@named.test"  # the stored name is the 95-character local part
    result = run(app, "create-member", "--org", slug, "--email", long_local_part, "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    hidden = run(
        app, "create-member", "--org", slug, "--email", "b@named.test", "--password", PASSWORD, "--name", "B\u202e"
    )
    assert hidden.exit_code != 0 and "must not contain control" in hidden.output


def test_rotate_client_secret_also_ends_a_rotation_under_way(app, base_url, gpt, tokens):
    from conftest import Client
    from conftest import introspect

    from connected_todos.registry import query_client
    from connected_todos.registry import start_secret_rotation

    with app.app_context():
        pending = start_secret_rotation(query_client(gpt.client_id))  # as /setup starts one
    result = run(app, "rotate-client-secret", gpt.client_id)
    replaced = result.output.split("client_secret: ")[1].strip()
    assert introspect(base_url, Client(gpt.client_id, pending, ""), tokens["access_token"]).status_code == 401
    assert introspect(base_url, Client(gpt.client_id, replaced, ""), tokens["access_token"]).status_code == 200


def test_make_operator_names_one_member_by_organization_and_email(app, world):
    # An email is unique only within an organization, and sign-up is open: a stranger may hold
    # the same email elsewhere, and must not become an operator with the intended member.
    intended, stranger = world.org(), world.org()
    email = f"bob-{intended.slug}@acme.test"
    with app.app_context():
        for org in (intended, stranger):
            create_member(db.session.get(Organization, org.id), email, "Bob", PASSWORD, "member")
        db.session.commit()
    assert run(app, "make-operator", email).exit_code != 0  # which Bob? --org is required
    promoted = run(app, "make-operator", "--org", intended.slug, email)
    assert promoted.exit_code == 0, promoted.output
    rows = world.sql(
        sa.text(
            "SELECT o.slug, m.is_operator FROM member m JOIN organization o ON o.id = m.organization_id "
            "WHERE m.email = :e"
        ),
        e=email,
    ).all()
    assert {slug: bool(flag) for slug, flag in rows} == {intended.slug: True, stranger.slug: False}
    assert run(app, "make-operator", "--org", "no-such-org", email).exit_code != 0


def test_setup_lists_the_operators(operator, org):
    page = operator.get("/setup").text
    assert "Operators" in page and org.admin_email in page


def test_revoke_operator_closes_setup_to_the_member(app, base_url, world):
    org = world.org()
    assert run(app, "make-operator", "--org", org.slug, org.admin_email).exit_code == 0
    person = Person(base_url, org.admin_email)
    person.login()
    assert person.get("/setup").status_code == 200
    assert run(app, "revoke-operator", "--org", org.slug, org.admin_email).exit_code == 0
    assert person.get("/setup").status_code == 403
    events = world.sql(sa.text("SELECT event FROM audit_event WHERE actor = :a"), a=org.admin_email).scalars().all()
    assert "operator_revoked" in events
