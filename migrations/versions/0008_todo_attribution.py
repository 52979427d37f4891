"""Which app made a todo, and which app and member last changed it.

Revision ID: 0008_todo_attribution
Revises: 0007_sealed_signing_keys
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_todo_attribution"
down_revision = "0007_sealed_signing_keys"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("todo") as batch_op:
        batch_op.add_column(sa.Column("created_via_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("updated_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("updated_via_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_todo_created_via_id"), ["created_via_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_todo_updated_via_id"), ["updated_via_id"], unique=False)
        batch_op.create_foreign_key("fk_todo_created_via_id_client", "client", ["created_via_id"], ["id"], ondelete="SET NULL")
        batch_op.create_foreign_key("fk_todo_updated_by_id_member", "member", ["updated_by_id"], ["id"], ondelete="SET NULL")
        batch_op.create_foreign_key("fk_todo_updated_via_id_client", "client", ["updated_via_id"], ["id"], ondelete="SET NULL")


def downgrade():
    with op.batch_alter_table("todo") as batch_op:
        batch_op.drop_constraint("fk_todo_updated_via_id_client", type_="foreignkey")
        batch_op.drop_constraint("fk_todo_updated_by_id_member", type_="foreignkey")
        batch_op.drop_constraint("fk_todo_created_via_id_client", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_todo_updated_via_id"))
        batch_op.drop_index(batch_op.f("ix_todo_created_via_id"))
        batch_op.drop_column("updated_via_id")
        batch_op.drop_column("updated_by_id")
        batch_op.drop_column("created_via_id")
