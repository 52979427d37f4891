"""Private signing keys are sealed in the database with KEY_ENCRYPTION_KEY, which lives outside it:
a stolen copy of the database cannot mint tokens. The wrong key stops the app at start, and a new
key-encryption key can be brought in without a gap."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import app_config
from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken

from connected_todos import create_app
from connected_todos.keys import current_signing_key
from connected_todos.keys import forget_keys
from connected_todos.keys import load_keys
from connected_todos.models import SigningKey
from connected_todos.models import db
from connected_todos.models import utcnow


def test_no_private_key_material_is_in_the_database(app, world):
    rows = world.sql(sa.text("SELECT sealed_jwk FROM signing_key")).scalars().all()
    assert rows and all(row.startswith("gAAAA") and '"d"' not in row for row in rows)
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(rows[0].encode())  # only the key-encryption key opens it


def app_with(url: str, key_encryption_key: str):
    return create_app({**app_config(url), "KEY_ENCRYPTION_KEY": key_encryption_key})


def test_the_wrong_key_encryption_key_stops_the_app_and_says_why(tmp_path):
    url = f"sqlite:///{tmp_path}/keys.db"
    app_with(url, Fernet.generate_key().decode())
    with pytest.raises(SystemExit, match="KEY_ENCRYPTION_KEY cannot open the signing key"):
        app_with(url, Fernet.generate_key().decode())


def test_a_new_key_encryption_key_comes_in_by_resealing(tmp_path):
    url = f"sqlite:///{tmp_path}/keys.db"
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app_with(url, old)
    both = app_with(url, f"{new},{old}")  # the first seals, any opens
    result = both.test_cli_runner().invoke(args=["reseal-signing-keys"])
    assert result.exit_code == 0 and "1 signing key(s)" in result.output
    rotated = app_with(url, new)  # the old key-encryption key is no longer needed
    assert rotated.test_cli_runner().invoke(args=["rotate-keys"]).exit_code == 0
    app_with(url, new)


def test_production_needs_a_key_encryption_key(tmp_path):
    config = {**app_config(f"sqlite:///{tmp_path}/p.db"), "APP_ENV": "production", "SECRET_KEY": "s" * 40}
    config.update(PUBLIC_URL="https://todos.example.com", KEY_ENCRYPTION_KEY="")
    with pytest.raises(SystemExit, match="KEY_ENCRYPTION_KEY is not set"):
        create_app(config)
    with pytest.raises(SystemExit, match="must be Fernet keys"):
        create_app({**config, "KEY_ENCRYPTION_KEY": "not-a-key"})


def test_a_key_once_stored_unsealed_signs_nothing_and_goes_after_an_hour(tmp_path):
    # Copies of a key stored in the clear may outlive migration 0007 in backups, the write-ahead
    # log or dead rows: it verifies what it signed for one more hour, and a new sealed key signs.
    url = f"sqlite:///{tmp_path}/keys.db"
    app = app_with(url, Fernet.generate_key().decode())
    with app.app_context():
        exposed = current_signing_key().kid
        later = utcnow() + timedelta(hours=1)
        db.session.execute(sa.update(SigningKey).where(SigningKey.kid == exposed).values(retire_after=later))
        db.session.commit()
        forget_keys()
        signer = current_signing_key().kid
        assert signer != exposed and {exposed, signer} <= set(load_keys().kids)
        db.session.execute(sa.update(SigningKey).where(SigningKey.kid == exposed).values(retire_after=utcnow()))
        db.session.commit()
        assert (
            exposed not in load_keys(force=True).kids
            and db.session.scalar(sa.select(sa.func.count(SigningKey.id))) == 1
        )
