"""Seal the private signing keys with KEY_ENCRYPTION_KEY, which is kept outside the database.

A key stored unsealed until now may survive in backups, the write-ahead log or dead rows, so it
signs nothing more: it verifies the tokens it signed for one more hour (their lifetime), and the
app then removes it and signs with a new, sealed key.

Revision ID: 0007_sealed_signing_keys
Revises: 0006_logins_on_the_server
"""

import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet
from cryptography.fernet import MultiFernet
from flask import current_app

revision = "0007_sealed_signing_keys"
down_revision = "0006_logins_on_the_server"
branch_labels = None
depends_on = None


def key_encryption_keys() -> MultiFernet:
    value = current_app.config["KEY_ENCRYPTION_KEY"]
    return MultiFernet([Fernet(key.strip()) for key in value.split(",") if key.strip()])


def upgrade():
    with op.batch_alter_table("signing_key") as batch_op:
        batch_op.add_column(sa.Column("sealed_jwk", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("retire_after", sa.DateTime(), nullable=True))
    keys = key_encryption_keys()
    connection = op.get_bind()
    retire_after = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)  # an access token's lifetime
    for key_id, private_jwk in connection.execute(sa.text("SELECT id, private_jwk FROM signing_key")).all():
        jwk = private_jwk if isinstance(private_jwk, dict) else json.loads(private_jwk)
        sealed = keys.encrypt(json.dumps(jwk).encode()).decode()
        connection.execute(
            sa.text("UPDATE signing_key SET sealed_jwk = :s, retire_after = :r WHERE id = :i"),
            {"s": sealed, "r": retire_after, "i": key_id},
        )
    with op.batch_alter_table("signing_key") as batch_op:
        batch_op.alter_column("sealed_jwk", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("private_jwk")


def downgrade():
    with op.batch_alter_table("signing_key") as batch_op:
        batch_op.add_column(sa.Column("private_jwk", sa.JSON(), nullable=True))
    keys = key_encryption_keys()
    connection = op.get_bind()
    for key_id, sealed in connection.execute(sa.text("SELECT id, sealed_jwk FROM signing_key")).all():
        jwk = keys.decrypt(sealed.encode()).decode()
        connection.execute(sa.text("UPDATE signing_key SET private_jwk = :j WHERE id = :i"), {"j": jwk, "i": key_id})
    with op.batch_alter_table("signing_key") as batch_op:
        batch_op.alter_column("private_jwk", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("retire_after")
        batch_op.drop_column("sealed_jwk")
