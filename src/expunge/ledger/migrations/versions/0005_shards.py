"""Sharded models: which shard of a model version holds which subject, and each shard's adapter.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("model_shards",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("model_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False, index=True),
                    sa.Column("shard", sa.Integer(), nullable=False),
                    sa.Column("subject_id", sa.String(128), nullable=False, index=True),
                    sa.Column("adapter_sha256", sa.String(64), nullable=True),
                    sa.UniqueConstraint("model_id", "subject_id"))


def downgrade() -> None:
    op.drop_table("model_shards")
