"""Migrations: the models and the migrations agree, and an upgrade keeps the data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import KEY_ENCRYPTION_KEY
from cryptography.fernet import Fernet
from joserfc.jwk import RSAKey

from connected_todos.models import db

ROOT = Path(__file__).parent.parent


def test_the_models_and_the_migrations_agree(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"render_as_batch": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == [], "run `flask --app app db migrate` and commit the migration"


def newest_revision() -> str:
    return ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def flask_db(database_url: str, *args: str) -> subprocess.CompletedProcess:
    # As a deployment runs it, in its release phase: production, which never upgrades by itself.
    env = {**os.environ, "DATABASE_URL": database_url, "SEED_DEMO": "0", "SECRET_KEY": "k" * 40}
    env.update(
        APP_ENV="production",
        PUBLIC_URL="https://todos.example.com",
        KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY,
        RATELIMIT_STORAGE_URI="memory://",
    )
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def upgrade_url(tmp_path):
    """A database of this test's own, on the same kind of server the suite runs on, dropped after."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path}/upgrade.db"
        return
    name = f"upgrade_{os.getpid()}"
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_an_upgrade_from_the_previous_schema_keeps_the_data(upgrade_url):
    url = upgrade_url
    assert flask_db(url, "upgrade", "0001_foundation").returncode == 0
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as c:
        c.execute(
            sa.text("INSERT INTO organization (id, name, slug, created_at) VALUES (1, 'Old', 'old', '2026-01-01')")
        )
        c.execute(
            sa.text(
                "INSERT INTO member (id, organization_id, email, name, role, password_hash, created_at) "
                "VALUES (1, 1, 'a@old.test', 'A', 'admin', 'scrypt:x', '2026-01-01')"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO todo (id, organization_id, title, notes, completed, created_by_id, created_at, "
                "updated_at) VALUES (1, 1, 'Kept', 'n', false, 1, '2026-01-01', '2026-01-01')"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO client (id, client_id, name, first_party, redirect_uris, scope, grant_types, "
                "created_at) VALUES (1, 'old-client', 'GPT', false, '[\"https://a.test/cb\"]', 'openid', "
                "'[\"authorization_code\"]', '2026-01-01')"
            )
        )
    result = flask_db(url, "upgrade")
    assert result.returncode == 0, result.stderr
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT title, notes FROM todo")).all() == [("Kept", "n")]
        assert c.execute(sa.text("SELECT email FROM member")).scalar() == "a@old.test"
        client = c.execute(sa.text("SELECT client_id, self_registered, redirect_uris FROM client")).one()
        assert client[0] == "old-client" and not client[1] and "a.test" in str(client[2])
        assert c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == newest_revision()
    engine.dispose()


def test_the_upgrade_seals_the_signing_keys_and_the_downgrade_opens_them(upgrade_url):
    url = upgrade_url
    assert flask_db(url, "upgrade", "0006_logins_on_the_server").returncode == 0
    jwk = RSAKey.generate_key(2048, parameters={"kid": "old-key"}).as_dict(private=True)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as c:
        c.execute(
            sa.text("INSERT INTO signing_key (kid, private_jwk, created_at) VALUES ('old-key', :j, '2026-01-01')"),
            {"j": json.dumps(jwk)},
        )
    result = flask_db(url, "upgrade")
    assert result.returncode == 0, result.stderr
    with engine.connect() as c:
        sealed, retire_after = c.execute(
            sa.text("SELECT sealed_jwk, retire_after FROM signing_key WHERE kid = 'old-key'")
        ).one()
        columns = {column["name"] for column in sa.inspect(c).get_columns("signing_key")}
    assert "private_jwk" not in columns and jwk["d"] not in sealed
    assert retire_after is not None  # it was stored unsealed: it signs nothing more, and goes in an hour
    assert json.loads(Fernet(KEY_ENCRYPTION_KEY).decrypt(sealed.encode())) == jwk
    assert flask_db(url, "downgrade", "0006_logins_on_the_server").returncode == 0
    with engine.connect() as c:
        opened = c.execute(sa.text("SELECT private_jwk FROM signing_key WHERE kid = 'old-key'")).scalar()
    assert (opened if isinstance(opened, dict) else json.loads(opened)) == jwk
    engine.dispose()
