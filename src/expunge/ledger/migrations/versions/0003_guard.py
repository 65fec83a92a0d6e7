"""The output guard's monitor log: one row per blocked generation (hashes and ids, never text).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("guard_events",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("created_at", sa.String(32), nullable=False),
                    sa.Column("request_id", sa.String(64), nullable=True, index=True),
                    sa.Column("guard_sha256", sa.String(64), nullable=False),
                    sa.Column("stage", sa.String(16), nullable=False),
                    sa.Column("matcher", sa.String(16), nullable=False),
                    sa.Column("target", sa.String(256), nullable=False),
                    sa.Column("score", sa.Float(), nullable=False),
                    sa.Column("prompt_sha256", sa.String(64), nullable=False),
                    sa.Column("output_sha256", sa.String(64), nullable=False))


def downgrade() -> None:
    op.drop_table("guard_events")
