"""Indexes for the audit page's filters by IP address and by actor.

Revision ID: 0005_audit_lookups
Revises: 0004_audit_log
"""

from alembic import op

revision = "0005_audit_lookups"
down_revision = "0004_audit_log"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("audit_event") as batch_op:
        batch_op.create_index("ix_audit_event_ip_address_id", ["ip_address", "id"], unique=False)
        batch_op.create_index("ix_audit_event_actor_id", ["actor", "id"], unique=False)


def downgrade():
    with op.batch_alter_table("audit_event") as batch_op:
        batch_op.drop_index("ix_audit_event_actor_id")
        batch_op.drop_index("ix_audit_event_ip_address_id")
