"""cases: clerks, cases, case events, case materials

Revision ID: cases_0001
Revises: 
Create Date: 2026-11-22

Clerks (by the SHA-256 of their tokens), cases with their history of transitions, and the
materials of each case (files in the blob folder, by SHA-256).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'cases_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('cases',)
depends_on: str | Sequence[str] | None = 'fed_0001'


def upgrade() -> None:
    op.create_table('case_events',
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('node', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('clerk', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at_us', sa.BigInteger(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.create_index('ix_case_events_case_at', ['case_id', 'at_us'], unique=False)

    op.create_table('case_materials',
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('format', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('present', sa.Boolean(), nullable=False),
    sa.Column('fetch_from', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('added_at_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('case_id', 'kind')
    )
    with op.batch_alter_table('case_materials', schema=None) as batch_op:
        batch_op.create_index('ix_case_materials_sha256', ['sha256'], unique=False)

    op.create_table('cases',
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('item_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('item_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('accepting_node', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('transfer_to', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('applicant_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('applicant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('applicant_phone', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('form', sa.Text(), nullable=False),
    sa.Column('catalog_version', sa.BigInteger(), nullable=False),
    sa.Column('opened_at_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_at_us', sa.BigInteger(), nullable=False),
    sa.Column('due_date', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('overdue', sa.Boolean(), nullable=False),
    sa.Column('result', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('stars', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('case_id'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_holder', ['holder'], unique=False)
        batch_op.create_index('ix_cases_state', ['state'], unique=False)

    op.create_table('clerks',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('token_sha256', sa.LargeBinary(), nullable=False),
    sa.Column('created_at_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name'),
    sa.UniqueConstraint('token_sha256')
    )


def downgrade() -> None:
    op.drop_table('clerks')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_state')
        batch_op.drop_index('ix_cases_holder')

    op.drop_table('cases')
    with op.batch_alter_table('case_materials', schema=None) as batch_op:
        batch_op.drop_index('ix_case_materials_sha256')

    op.drop_table('case_materials')
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.drop_index('ix_case_events_case_at')

    op.drop_table('case_events')
