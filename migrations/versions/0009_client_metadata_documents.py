"""Apps described by a metadata document at their client_id URL, and private_key_jwt.

Revision ID: 0009_client_metadata_documents
Revises: 0008_todo_attribution
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_client_metadata_documents"
down_revision = "0008_todo_attribution"
branch_labels = None
depends_on = None


def upgrade():
    # A client_id may now be the URL of the app's metadata document.
    with op.batch_alter_table("client") as batch_op:
        batch_op.alter_column("client_id", existing_type=sa.String(64), type_=sa.String(255), existing_nullable=False)
        batch_op.add_column(sa.Column("token_endpoint_auth_method", sa.String(30), nullable=True))
        batch_op.add_column(sa.Column("blocked_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("audit_event") as batch_op:
        batch_op.alter_column("client_id", existing_type=sa.String(64), type_=sa.String(255), existing_nullable=True)
    op.create_table(
        "client_metadata_document",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(), nullable=False),
        sa.Column("fresh_until", sa.DateTime(), nullable=False),
        sa.Column("etag", sa.String(200), nullable=True),
        sa.Column("attempted_at", sa.DateTime(), nullable=True),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("jwks_fetched_at", sa.DateTime(), nullable=True),
        sa.Column("jwks_fresh_until", sa.DateTime(), nullable=True),
        sa.Column("jwks_attempted_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id"),
    )
    op.create_table(
        "used_client_assertion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("jti_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "jti_hash"),
    )
    op.create_index("ix_used_client_assertion_expires_at", "used_client_assertion", ["expires_at"])


def downgrade():
    op.drop_index("ix_used_client_assertion_expires_at", table_name="used_client_assertion")
    op.drop_table("used_client_assertion")
    op.drop_table("client_metadata_document")
    op.execute("DELETE FROM client WHERE client_id LIKE 'https://%'")  # they cannot fit back
    op.execute("UPDATE audit_event SET client_id = substr(client_id, 1, 64) WHERE length(client_id) > 64")
    with op.batch_alter_table("audit_event") as batch_op:
        batch_op.alter_column("client_id", existing_type=sa.String(255), type_=sa.String(64), existing_nullable=True)
    with op.batch_alter_table("client") as batch_op:
        batch_op.drop_column("blocked_at")
        batch_op.drop_column("token_endpoint_auth_method")
        batch_op.alter_column("client_id", existing_type=sa.String(255), type_=sa.String(64), existing_nullable=False)
