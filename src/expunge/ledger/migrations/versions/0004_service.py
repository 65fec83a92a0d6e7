"""The deletion-request service: API tokens (stored hashed) and the job queue the worker drains.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("api_tokens",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("name", sa.String(64), nullable=False, unique=True),
                    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
                    sa.Column("scopes", sa.JSON(), nullable=False),
                    sa.Column("created_at", sa.String(32), nullable=False),
                    sa.Column("revoked_at", sa.String(32), nullable=True))
    op.create_table("jobs",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("request_id", sa.String(64), sa.ForeignKey("requests.request_id"), nullable=False,
                              unique=True),
                    sa.Column("route", sa.String(16), nullable=False),
                    sa.Column("request", sa.JSON(), nullable=False),
                    sa.Column("state", sa.String(16), nullable=False, index=True),
                    sa.Column("submitted_by", sa.String(64), nullable=False),
                    sa.Column("attempts", sa.Integer(), nullable=False),
                    sa.Column("lease_owner", sa.String(64), nullable=True),
                    sa.Column("lease_expires", sa.Float(), nullable=True),
                    sa.Column("result", sa.JSON(), nullable=True),
                    sa.Column("error", sa.Text(), nullable=True),
                    sa.Column("created_at", sa.String(32), nullable=False),
                    sa.Column("started_at", sa.String(32), nullable=True),
                    sa.Column("finished_at", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("api_tokens")
