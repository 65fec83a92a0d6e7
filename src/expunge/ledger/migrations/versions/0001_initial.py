"""The first ledger schema: corpora, subjects, documents, runs, model versions, the event log and
its signed tree heads.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("expunge_meta",
                    sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text(), nullable=False))
    op.bulk_insert(sa.table("expunge_meta", sa.column("key", sa.String), sa.column("value", sa.Text)),
                   [{"key": "application", "value": "expunge-ledger"}])
    op.create_table("corpora",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
                    sa.Column("source", sa.String(128), nullable=False),
                    sa.Column("path", sa.Text(), nullable=False),
                    sa.Column("created_at", sa.String(32), nullable=False))
    op.create_table("subjects",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("corpus_id", sa.Integer(), sa.ForeignKey("corpora.id"), nullable=False),
                    sa.Column("subject_id", sa.String(128), nullable=False, index=True),
                    sa.Column("kind", sa.String(32), nullable=False),
                    sa.UniqueConstraint("corpus_id", "subject_id"))
    op.create_table("documents",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("corpus_id", sa.Integer(), sa.ForeignKey("corpora.id"), nullable=False),
                    sa.Column("document_id", sa.String(128), nullable=False),
                    sa.Column("sha256", sa.String(64), nullable=False),
                    sa.Column("split", sa.String(16), nullable=False),
                    sa.UniqueConstraint("corpus_id", "document_id"))
    op.create_table("document_subjects",
                    sa.Column("document", sa.Integer(), sa.ForeignKey("documents.id"), primary_key=True),
                    sa.Column("subject", sa.Integer(), sa.ForeignKey("subjects.id"), primary_key=True, index=True))
    op.create_table("runs",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("corpus_id", sa.Integer(), sa.ForeignKey("corpora.id"), nullable=True),
                    sa.Column("parent_sha256", sa.String(64), nullable=True),
                    sa.Column("request_id", sa.String(64), nullable=True),
                    sa.Column("recipe", sa.JSON(), nullable=False),
                    sa.Column("documents_sha256", sa.String(64), nullable=False),
                    sa.Column("created_at", sa.String(32), nullable=False))
    op.create_table("run_documents",
                    sa.Column("run", sa.Integer(), sa.ForeignKey("runs.id"), primary_key=True),
                    sa.Column("document", sa.Integer(), sa.ForeignKey("documents.id"), primary_key=True, index=True),
                    sa.Column("role", sa.String(16), primary_key=True))
    op.create_table("model_versions",
                    sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
                    sa.Column("path", sa.Text(), nullable=False),
                    sa.Column("parent_sha256", sa.String(64), nullable=True, index=True),
                    sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id"), nullable=True),
                    sa.Column("created_at", sa.String(32), nullable=False))
    op.create_table("events",
                    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
                    sa.Column("kind", sa.String(64), nullable=False),
                    sa.Column("ref", sa.String(256), nullable=False),
                    sa.Column("body", sa.LargeBinary(), nullable=False),
                    sa.Column("prev", sa.String(64), nullable=False),
                    sa.Column("hash", sa.String(64), nullable=False))
    op.create_table("tree_heads",
                    sa.Column("size", sa.Integer(), primary_key=True, autoincrement=False),
                    sa.Column("root", sa.String(64), nullable=False),
                    sa.Column("created_at", sa.String(32), nullable=False),
                    sa.Column("key_id", sa.String(32), nullable=False),
                    sa.Column("signature", sa.Text(), nullable=False))


def downgrade() -> None:
    for table in ("tree_heads", "events", "model_versions", "run_documents", "runs", "document_subjects",
                  "documents", "subjects", "corpora", "expunge_meta"):
        op.drop_table(table)
