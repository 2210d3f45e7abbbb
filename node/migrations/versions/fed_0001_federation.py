"""federation: peers, invites, outbox, inbox, message log

Revision ID: fed_0001
Revises: 
Create Date: 2026-11-22

The federation's tables. The message log is append-only: triggers refuse UPDATE and DELETE on
log_entries (and on log_checkpoints), so that even a bug cannot rewrite the audit record.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'fed_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('federation',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
    sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_seq', sa.BigInteger(), nullable=False),
    sa.Column('envelope_sha256', sa.LargeBinary(), nullable=False),
    sa.Column('received_at_us', sa.BigInteger(), nullable=False),
    sa.Column('envelope_seq', sa.BigInteger(), nullable=False),
    sa.Column('receipt_seq', sa.BigInteger(), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_sender_case_seq', ['sender', 'case_id', 'case_seq'], unique=False)

    op.create_table('invites',
    sa.Column('invite_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('join_certificate', sa.LargeBinary(), nullable=False),
    sa.Column('join_fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at_us', sa.BigInteger(), nullable=False),
    sa.Column('expires_at_us', sa.BigInteger(), nullable=False),
    sa.Column('used_at_us', sa.BigInteger(), nullable=True),
    sa.Column('used_by', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.PrimaryKeyConstraint('invite_id'),
    sa.UniqueConstraint('join_fingerprint')
    )
    op.create_table('log_checkpoints',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('at_us', sa.BigInteger(), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('signed', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('seq', name='uq_log_checkpoints_seq')
    )
    op.create_table('log_entries',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('recorded_at_us', sa.BigInteger(), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('entry_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('peer', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('record', sa.LargeBinary(), nullable=False),
    sa.Column('hash', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('log_entries', schema=None) as batch_op:
        batch_op.create_index('ix_log_case_id', ['case_id'], unique=False)
        batch_op.create_index('ix_log_message_id', ['message_id'], unique=False)
        batch_op.create_index('ix_log_peer_seq', ['peer', 'seq'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
    sa.Column('peer', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_seq', sa.BigInteger(), nullable=False),
    sa.Column('envelope_seq', sa.BigInteger(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at_us', sa.BigInteger(), nullable=False),
    sa.Column('next_attempt_us', sa.BigInteger(), nullable=False),
    sa.Column('delivered_at_us', sa.BigInteger(), nullable=True),
    sa.Column('receipt_seq', sa.BigInteger(), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('outcome_code', sa.Integer(), nullable=False),
    sa.Column('outcome_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_peer_case_seq', ['peer', 'case_id', 'case_seq'], unique=False)
        batch_op.create_index('ix_outbox_peer_state_id', ['peer', 'state', 'id'], unique=False)

    op.create_table('peer_access',
    sa.Column('node_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('item', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('effect', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('set_at_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('node_id', 'item')
    )
    op.create_table('peer_keys',
    sa.Column('node_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('valid_from_us', sa.BigInteger(), nullable=False),
    sa.Column('endorsement', sa.LargeBinary(), nullable=False),
    sa.Column('endorsement_signature', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('node_id', 'key_id')
    )
    op.create_table('peers',
    sa.Column('node_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('endpoint', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('tls_certificate', sa.LargeBinary(), nullable=False),
    sa.Column('tls_fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('added_at_us', sa.BigInteger(), nullable=False),
    sa.Column('removed_at_us', sa.BigInteger(), nullable=True),
    sa.Column('last_contact_us', sa.BigInteger(), nullable=True),
    sa.Column('joined_via', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.PrimaryKeyConstraint('node_id')
    )
    with op.batch_alter_table('peers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_peers_tls_fingerprint'), ['tls_fingerprint'], unique=False)

    _append_only("log_entries")
    _append_only("log_checkpoints")



def _append_only(table: str) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION tongban_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tongban_append_only()"
        )


def downgrade() -> None:
    with op.batch_alter_table('peers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_peers_tls_fingerprint'))

    op.drop_table('peers')
    op.drop_table('peer_keys')
    op.drop_table('peer_access')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_peer_state_id')
        batch_op.drop_index('ix_outbox_peer_case_seq')

    op.drop_table('outbox')
    with op.batch_alter_table('log_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_log_peer_seq')
        batch_op.drop_index('ix_log_message_id')
        batch_op.drop_index('ix_log_case_id')

    op.drop_table('log_entries')
    op.drop_table('log_checkpoints')
    op.drop_table('invites')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_sender_case_seq')

    op.drop_table('inbox')
