"""CLI: the commands an operator runs with ``flask --app app …``, and the demo data.

Owns the command-line paths into the registry (clients, secrets, redirect URIs, organizations,
members, operators, unused registrations, pinned client metadata documents), key rotation, writing
``openapi.yaml``, and seeding an empty development database. Every change goes through the same
functions the pages use, so the same rules hold and the audit log records the command line as the
actor.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import BinaryIO

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from .api import OPENAPI_BASE_URL
from .api import openapi_yaml
from .client_metadata import DOCUMENT_MAX_BYTES
from .client_metadata import MetadataDocumentError
from .client_metadata import pin
from .client_metadata import unpin
from .keys import SealedKeyError
from .keys import reseal_signing_keys
from .keys import rotate_signing_key
from .models import Client
from .models import Member
from .models import Organization
from .models import Todo
from .models import db
from .models import utcnow
from .operators import PLAYGROUND_CLIENT_ID
from .registry import CLI_ACTOR
from .registry import add_redirect_uri
from .registry import create_member
from .registry import create_organization
from .registry import delete_client
from .registry import make_operator
from .registry import query_client
from .registry import register_client
from .registry import replace_client_secret
from .rules import DEFAULT_CLIENT_SCOPE
from .rules import ROLES
from .rules import ClientMetadataError
from .rules import check_client_metadata
from .rules import email_problem
from .rules import member_problem
from .rules import name_problem
from .rules import normalize_email

cli = AppGroup("commands", help="Connected Todos commands.")


def get_client_or_fail(client_id: str) -> Client:
    client = query_client(client_id)
    if client is None:
        raise click.ClickException(f"No client with client_id {client_id}.")
    return client


@cli.command("create-client")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--public", is_flag=True, help="A public client: no secret, PKCE required.")
@click.option("--first-party", is_flag=True, help="A first-party client: no consent page.")
@click.option("--scope", default=DEFAULT_CLIENT_SCOPE, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def create_client_command(
    name: str, redirect_uris: tuple[str, ...], public: bool, first_party: bool, scope: str, as_json: bool
) -> None:
    """Register a connected app and print its client_id (and secret, once)."""
    try:
        client, secret = register_client(name, list(redirect_uris), public=public, first_party=first_party, scope=scope)
    except ClientMetadataError as error:
        raise click.ClickException(error.sentence) from None
    result = {"client_id": client.client_id}
    if secret:
        result["client_secret"] = secret
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"client_id:     {client.client_id}")
    if secret:
        click.echo(f"client_secret: {secret}")
        click.echo("The secret is shown only now; it is stored as a hash.")


@cli.command("list-clients")
def list_clients_command() -> None:
    """List the connected apps."""
    for client in db.session.scalars(sa.select(Client).order_by(Client.id)):
        click.echo(f"{client.client_id}  {client.name}  ({client.client_type})  {' '.join(client.redirect_uris)}")


@cli.command("rotate-client-secret")
@click.argument("client_id")
def rotate_client_secret_command(client_id: str) -> None:
    """Give a confidential client a new secret; the old one stops working."""
    client = get_client_or_fail(client_id)
    try:
        secret = replace_client_secret(client)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"client_secret: {secret}")


@cli.command("add-redirect-uri")
@click.argument("client_id")
@click.argument("uri")
def add_redirect_uri_command(client_id: str, uri: str) -> None:
    """Register another redirect URI for a client."""
    client = get_client_or_fail(client_id)
    try:
        add_redirect_uri(client, uri)
    except ClientMetadataError as error:
        raise click.ClickException(error.sentence) from None
    click.echo(f"{client.name} redirect URIs: {' '.join(client.redirect_uris)}")


@cli.command("pin-client-metadata")
@click.argument("url")
@click.argument("file", type=click.File("rb"))
def pin_client_metadata_command(url: str, file: BinaryIO) -> None:
    """Use FILE as the metadata document at URL, for an app whose host turns servers away. It is
    checked as a fetched one would be, and used until unpinned."""
    content = file.read(DOCUMENT_MAX_BYTES + 1)
    if len(content) > DOCUMENT_MAX_BYTES:
        raise click.ClickException(f"{file.name} is larger than {DOCUMENT_MAX_BYTES} bytes.")
    try:
        client = pin(url, json.loads(content), CLI_ACTOR)
    except (ValueError, RecursionError):
        raise click.ClickException(f"{file.name} is not JSON.") from None
    except MetadataDocumentError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{client.name} ({url}) now uses the pinned document; redirects to {' '.join(client.redirect_uris)}")


@cli.command("unpin-client-metadata")
@click.argument("url")
def unpin_client_metadata_command(url: str) -> None:
    """Fetch the metadata document at URL from its host again, instead of the pinned copy."""
    client = get_client_or_fail(url)
    unpin(client, CLI_ACTOR)
    click.echo(f"{client.name} ({url}) is fetched from its host again.")


def member_or_fail(slug: str, email: str) -> Member:
    """One member, named by organization and email: an email is unique only within one."""
    member = db.session.scalar(
        sa.select(Member)
        .join(Organization, Organization.id == Member.organization_id)
        .where(Organization.slug == slug, Member.email == normalize_email(email))
    )
    if member is None:
        raise click.ClickException(f"{email} is not a member of the organization {slug}.")
    return member


@cli.command("make-operator")
@click.option("--org", "slug", required=True, help="The member's organization: an email is unique only within one.")
@click.argument("email")
def make_operator_command(slug: str, email: str) -> None:
    """Let one member, named by organization and email, open /setup and manage the connected apps."""
    make_operator(member_or_fail(slug, email))
    click.echo(f"{normalize_email(email)} of {slug} is an operator.")


@cli.command("revoke-operator")
@click.option("--org", "slug", required=True, help="The member's organization.")
@click.argument("email")
def revoke_operator_command(slug: str, email: str) -> None:
    """Take a member's operator rights away: /setup is closed to them from their next request."""
    make_operator(member_or_fail(slug, email), operator=False)
    click.echo(f"{normalize_email(email)} of {slug} is no longer an operator.")


@cli.command("create-org")
@click.option("--name", required=True)
@click.option("--slug")
def create_org_command(name: str, slug: str | None) -> None:
    """Create an organization."""
    if problem := name_problem(name):
        raise click.ClickException(f"The name {problem}.")
    org = create_organization(name, slug)
    db.session.commit()
    click.echo(org.slug)


@cli.command("create-member")
@click.option("--org", "slug", required=True)
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name")
@click.option("--role", type=click.Choice(ROLES), default="member")
def create_member_command(slug: str, email: str, password: str, name: str | None, role: str) -> None:
    """Add a member to an organization."""
    org = db.session.scalar(sa.select(Organization).where(Organization.slug == slug))
    if org is None:
        raise click.ClickException(f"No organization with slug {slug}.")
    name = name or email.split("@")[0]  # the name that is stored is the one checked
    if problem := member_problem(normalize_email(email), name, password, role):
        raise click.ClickException(problem)
    try:
        member = create_member(org, email, name, password, role, f"by the {CLI_ACTOR}")
        db.session.commit()
    except sa.exc.IntegrityError:
        raise click.ClickException(f"{email} is already a member of {slug}.") from None
    click.echo(f"{member.email} is a{'n' if role == 'admin' else ''} {role} of {org.slug}")


@cli.command("check-registry")
def check_registry_command() -> None:
    """Report apps and members recorded before today's rules that break them: an app's name,
    redirect URIs or scope; a member's email."""
    problems = 0
    for member in db.session.scalars(sa.select(Member).order_by(Member.id)):
        problem = email_problem(member.email)
        if problem or member.email != normalize_email(member.email):
            problems += 1
            click.echo(
                f"member {member.id} {member.email!r}: {problem or 'is not in its normal form (NFKC, lower-case)'}"
            )
    for client in db.session.scalars(sa.select(Client).order_by(Client.id)):
        uris = [u for u in client.redirect_uris if client.client_id != PLAYGROUND_CLIENT_ID]  # its own paths
        parts = [{"name": client.name, "scope": client.scope}] + [{"redirect_uris": [u]} for u in uris]
        for part in parts:
            try:
                check_client_metadata(**part)
            except ClientMetadataError as error:
                problems += 1
                click.echo(f"{client.client_id}  {client.name[:40]!r}: {error.sentence}")
    if problems:
        raise click.ClickException(f"{problems} problem(s). Fix each with /setup or the commands above.")
    click.echo("Every registered app follows the rules.")


@cli.command("prune-clients")
@click.option("--days", default=7, show_default=True, help="Only registrations at least this old.")
@click.option("--delete", is_flag=True, help="Delete them; without it, only list them.")
def prune_clients_command(days: int, delete: bool) -> None:
    """List self-registered clients that were never used, and delete them with --delete."""
    cutoff = utcnow() - timedelta(days=days)
    unused = db.session.scalars(
        sa.select(Client).where(
            Client.self_registered,
            Client.token_endpoint_auth_method.is_(None),  # described apps have their own bound
            Client.last_used_at.is_(None),
            Client.created_at <= cutoff,
        )
    ).all()
    for client in unused:
        click.echo(f"{client.client_id}  {client.name}  registered {client.created_at:%Y-%m-%d}")
    if delete:
        for client in unused:
            delete_client(client, detail=f"{client.name}, registered and never used")
    click.echo(f"{len(unused)} unused registration(s){' deleted' if delete else ''}.")


@cli.command("rotate-keys")
def rotate_keys_command() -> None:
    """Sign with a new key; the previous one stays published so that its tokens still verify."""
    row = rotate_signing_key()
    click.echo(f"New signing key: {row.kid}")


@cli.command("reseal-signing-keys")
def reseal_signing_keys_command() -> None:
    """Seal every signing key with the first key of KEY_ENCRYPTION_KEY (set it to NEW,OLD first)."""
    try:
        count = reseal_signing_keys()
    except SealedKeyError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{count} signing key(s) sealed with the first key-encryption key; the others may go.")


@cli.command("openapi")
@click.option("--output", default="openapi.yaml", show_default=True)
def openapi_command(output: str) -> None:
    """Write openapi.yaml from the API views."""
    text = openapi_yaml(OPENAPI_BASE_URL)  # built before the file is opened, so an error keeps the old one
    with open(output, "w") as f:
        f.write(text)
    click.echo(f"Wrote {output}")


def seed_demo() -> None:
    """On an empty database, create a demo organization and admin and say how to connect."""
    if db.session.scalar(sa.select(Organization.id).limit(1)):
        return
    password = secrets.token_urlsafe(12)
    try:
        org = create_organization("Demo Organization", "demo")
        admin = create_member(org, "admin@example.com", "Demo Admin", password, "admin")
        admin.is_operator = True
        db.session.add(Todo(organization_id=org.id, title="Connect an AI agent to Connected Todos"))
        db.session.commit()
    except sa.exc.IntegrityError:  # another worker seeded it first
        db.session.rollback()
        return
    click.echo(
        "\n  Demo organization created.\n"
        "  Log in at /login as admin@example.com with the password: " + password + "\n"
        "  Connect a custom GPT or an MCP client at /setup; try the flow at /playground.\n",
        err=True,
    )
