"""Operators, secret rotation and the record of rejected redirect URIs.

Revision ID: 0003_operators_and_rotation
Revises: 0002_self_registered_clients
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_operators_and_rotation"
down_revision = "0002_self_registered_clients"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("member") as batch_op:
        batch_op.add_column(sa.Column("is_operator", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("client") as batch_op:
        batch_op.add_column(sa.Column("pending_secret_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "rejected_redirect",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rejected_redirect") as batch_op:
        batch_op.create_index(batch_op.f("ix_rejected_redirect_client_id"), ["client_id"], unique=False)


def downgrade():
    with op.batch_alter_table("rejected_redirect") as batch_op:
        batch_op.drop_index(batch_op.f("ix_rejected_redirect_client_id"))
    op.drop_table("rejected_redirect")
    with op.batch_alter_table("client") as batch_op:
        batch_op.drop_column("pending_secret_hash")
    with op.batch_alter_table("member") as batch_op:
        batch_op.drop_column("is_operator")
