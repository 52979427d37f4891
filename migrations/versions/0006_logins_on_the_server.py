"""Logins kept on the server (so that logout, a new password, a new role and a removal end them),
logins waiting for their organization, and the deployment's password salt seed.

Revision ID: 0006_logins_on_the_server
Revises: 0005_audit_lookups
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_logins_on_the_server"
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
    op.create_table(
        "login_choice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("binding", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("password_salt_seed", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("deployment")
    op.drop_table("login_choice")
    op.drop_table("member_session")
