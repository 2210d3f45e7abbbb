"""certificates: requests, certificates, status lists

Revision ID: certs_0001
Revises: 
Create Date: 2026-11-22

Certificate requests (as sent by a requesting window and as received by an issuer), the
certificates issued here or received for applicants (the token in full, its status slot and
state), and the signed status lists: this node's own as published, and each issuer's as fetched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'certs_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('certs',)
depends_on: str | Sequence[str] | None = 'fed_0001'


def upgrade() -> None:
    op.create_table('cert_requests',
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('requester', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('issuer', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('cert_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('applicant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('applicant_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('consent_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('consent_at_us', sa.BigInteger(), nullable=False),
    sa.Column('consent_purpose', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('consent_method', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('clerk', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('requested_at_us', sa.BigInteger(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('certificate_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
    sa.Column('decided_at_us', sa.BigInteger(), nullable=True),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
    sa.PrimaryKeyConstraint('request_id', 'role')
    )
    with op.batch_alter_table('cert_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cert_requests_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_cert_requests_role_state', ['role', 'state'], unique=False)

    op.create_table('cert_status_lists',
    sa.Column('issuer', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status_list', sa.Text(), nullable=False),
    sa.Column('list_issued_at_us', sa.BigInteger(), nullable=False),
    sa.Column('fetched_at_us', sa.BigInteger(), nullable=False),
    sa.Column('attempted_at_us', sa.BigInteger(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('issuer')
    )
    op.create_table('certificates',
    sa.Column('certificate_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('issuer', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('cert_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('status_index', sa.Integer(), nullable=False),
    sa.Column('applicant_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('issued_at_us', sa.BigInteger(), nullable=False),
    sa.Column('valid_from_us', sa.BigInteger(), nullable=False),
    sa.Column('expires_at_us', sa.BigInteger(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state_reason', sa.Text(), nullable=False),
    sa.Column('state_changed_at_us', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('certificate_id'),
    sa.UniqueConstraint('issuer', 'status_index', name='uq_certificates_status_slot')
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificates_request_id'), ['request_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificates_request_id'))

    op.drop_table('certificates')
    op.drop_table('cert_status_lists')
    with op.batch_alter_table('cert_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_cert_requests_role_state')
        batch_op.drop_index(batch_op.f('ix_cert_requests_message_id'))

    op.drop_table('cert_requests')
