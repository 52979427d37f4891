"""Logins kept on the server, so that logout, a new password, a new role and a removal end them.

Revision ID: 0006_member_sessions
Revises: 0005_audit_lookups
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_member_sessions"
down_revision = "0005_audit_lookups"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "member_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("sid_hash", sa.String(length=64), nullable=False),
        sa.Column("binding", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sid_hash"),
    )
    with op.batch_alter_table("member_session") as batch_op:
        batch_op.create_index(batch_op.f("ix_member_session_member_id"), ["member_id"], unique=False)


def downgrade():
    op.drop_table("member_session")
