"""catalog: own and cached catalogs

Revision ID: catalog_0001
Revises: 
Create Date: 2026-11-22

One row per node: this node's own catalog and each peer's cached copy, stored as the exact
bytes its digest covers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'catalog_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('catalog',)
depends_on: str | Sequence[str] | None = 'fed_0001'


def upgrade() -> None:
    op.create_table('catalogs',
    sa.Column('node_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('digest', sa.LargeBinary(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('published_at_us', sa.BigInteger(), nullable=False),
    sa.Column('stored_at_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('node_id')
    )


def downgrade() -> None:
    op.drop_table('catalogs')
