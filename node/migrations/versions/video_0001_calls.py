"""video: calls and recordings

Revision ID: video_0001
Revises:
Create Date: 2026-11-22

Calls as this node saw them (signaling state, SDP, end reason, final figures) and the
recordings kept in the case file (SHA-256, size, duration, streams).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'video_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('video',)
depends_on: str | Sequence[str] | None = 'fed_0001'


def upgrade() -> None:
    op.create_table('video_calls',
    sa.Column('call_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_number', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('peer', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('end_reason', sa.Text(), nullable=False),
    sa.Column('ended_by', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('caller_shares', sa.Boolean(), nullable=False),
    sa.Column('caller_records', sa.Boolean(), nullable=False),
    sa.Column('peer_label', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('ring_timeout_seconds', sa.Float(), nullable=False),
    sa.Column('offer_sdp', sa.Text(), nullable=False),
    sa.Column('answer_sdp', sa.Text(), nullable=False),
    sa.Column('created_at_us', sa.BigInteger(), nullable=False),
    sa.Column('answered_at_us', sa.BigInteger(), nullable=True),
    sa.Column('connected_at_us', sa.BigInteger(), nullable=True),
    sa.Column('ended_at_us', sa.BigInteger(), nullable=True),
    sa.Column('setup_seconds', sa.Float(), nullable=False),
    sa.Column('signal_message_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('figures', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('call_id')
    )
    with op.batch_alter_table('video_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_video_calls_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_video_calls_signal_message_id'), ['signal_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_video_calls_state'), ['state'], unique=False)

    op.create_table('video_recordings',
    sa.Column('recording_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('call_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('duration_seconds', sa.Float(), nullable=False),
    sa.Column('complete', sa.Boolean(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('streams', sa.Text(), nullable=False),
    sa.Column('container', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('recorded_at_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('recording_id')
    )
    with op.batch_alter_table('video_recordings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_video_recordings_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_video_recordings_case_id'), ['case_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('video_recordings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_video_recordings_case_id'))
        batch_op.drop_index(batch_op.f('ix_video_recordings_call_id'))

    op.drop_table('video_recordings')
    with op.batch_alter_table('video_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_video_calls_state'))
        batch_op.drop_index(batch_op.f('ix_video_calls_signal_message_id'))
        batch_op.drop_index(batch_op.f('ix_video_calls_case_id'))

    op.drop_table('video_calls')
