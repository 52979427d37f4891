"""MCP clients register themselves (RFC 7591), and a replayed code is marked.

Revision ID: 0002_self_registered_clients
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_self_registered_clients"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("client") as batch_op:
        batch_op.add_column(sa.Column("self_registered", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("client_uri", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("logo_uri", sa.String(length=500), nullable=True))
    with op.batch_alter_table("authorization_code") as batch_op:
        batch_op.add_column(sa.Column("replayed_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("authorization_code") as batch_op:
        batch_op.drop_column("replayed_at")
    with op.batch_alter_table("client") as batch_op:
        batch_op.drop_column("logo_uri")
        batch_op.drop_column("client_uri")
        batch_op.drop_column("self_registered")
