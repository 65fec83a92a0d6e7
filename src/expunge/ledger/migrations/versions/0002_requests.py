"""Deletion requests and their lifecycle state; the verifications recorded against them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("requests",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("corpus", sa.String(64), nullable=False),
                    sa.Column("targets", sa.JSON(), nullable=False),
                    sa.Column("documents_sha256", sa.String(64), nullable=False),
                    sa.Column("state", sa.String(16), nullable=False),
                    sa.Column("created_at", sa.String(32), nullable=False),
                    sa.Column("updated_at", sa.String(32), nullable=False))
    op.create_table("verifications",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("request_id", sa.String(64), sa.ForeignKey("requests.request_id"), nullable=False,
                              index=True),
                    sa.Column("model_sha256", sa.String(64), nullable=False),
                    sa.Column("original_sha256", sa.String(64), nullable=False),
                    sa.Column("oracle_sha256", sa.String(64), nullable=True),
                    sa.Column("forgotten", sa.String(16), nullable=False),
                    sa.Column("summary", sa.JSON(), nullable=False),
                    sa.Column("created_at", sa.String(32), nullable=False))


def downgrade() -> None:
    op.drop_table("verifications")
    op.drop_table("requests")
