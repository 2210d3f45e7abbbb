"""cases: an index for the materials still to fetch

Revision ID: cases_0002
Revises: cases_0001
Create Date: 2026-12-02

The material fetcher asks, after every case that arrives, which files have not arrived yet
(`present` false, a node to fetch them from). Without an index that read every row of
`case_materials`: a node's work per case grew with the number of cases it had ever had.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "cases_0002"
down_revision: str | Sequence[str] | None = "cases_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("case_materials", schema=None) as batch_op:
        batch_op.create_index("ix_case_materials_wanted", ["present", "fetch_from"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("case_materials", schema=None) as batch_op:
        batch_op.drop_index("ix_case_materials_wanted")
