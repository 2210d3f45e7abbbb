"""The federation's tables (SQLModel): peers, invitations, outbox, inbox and the message log.

Times are integer microseconds since the epoch (see `federation.clock`). Signed bytes live in
the message log only; the outbox and the inbox point at log entries by sequence number instead
of keeping second copies. Schema changes go through the Alembic migrations in node/migrations.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, Table, UniqueConstraint
from sqlmodel import Field, SQLModel

# Row IDs: 64-bit on PostgreSQL, SQLite's own rowid (INTEGER PRIMARY KEY) on SQLite.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class PeerRow(SQLModel, table=True):
    __tablename__ = "peers"

    node_id: str = Field(primary_key=True, max_length=16)
    name: str
    endpoint: str
    tls_certificate: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    tls_fingerprint: str = Field(index=True, max_length=64)
    state: str = Field(default="active", max_length=16)  # active | removed
    added_at_us: int = Field(sa_type=BigInteger)
    removed_at_us: int | None = Field(default=None, sa_type=BigInteger)
    last_contact_us: int | None = Field(default=None, sa_type=BigInteger)
    joined_via: str = Field(
        default="", max_length=16
    )  # "invite" (they joined us) or "token" (we joined them)


class PeerKeyRow(SQLModel, table=True):
    """A peer's signing keys, in the order of its history."""

    __tablename__ = "peer_keys"

    node_id: str = Field(primary_key=True, max_length=16)
    key_id: str = Field(primary_key=True, max_length=32)
    position: int
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    valid_from_us: int = Field(sa_type=BigInteger)
    endorsement: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    endorsement_signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AccessRuleRow(SQLModel, table=True):
    """Which service items a peer may send cases for or request certificates of."""

    __tablename__ = "peer_access"

    node_id: str = Field(primary_key=True, max_length=16)
    item: str = Field(primary_key=True, max_length=64)  # an item code, or "*"
    effect: str = Field(max_length=8)  # allow | deny
    set_at_us: int = Field(sa_type=BigInteger)


class InviteRow(SQLModel, table=True):
    """An invitation; the join certificate stands for the token's secret (never stored)."""

    __tablename__ = "invites"

    invite_id: str = Field(primary_key=True, max_length=32)
    join_certificate: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    join_fingerprint: str = Field(unique=True, max_length=64)
    created_at_us: int = Field(sa_type=BigInteger)
    expires_at_us: int = Field(sa_type=BigInteger)
    used_at_us: int | None = Field(default=None, sa_type=BigInteger)
    used_by: str = Field(default="", max_length=16)


class OutboxRow(SQLModel, table=True):
    """A message to a peer: pending until its signed receipt is stored, or parked."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_peer_state_id", "peer", "state", "id"),
        Index("ix_outbox_peer_case_seq", "peer", "case_id", "case_seq"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    message_id: str = Field(unique=True, max_length=26)
    peer: str = Field(max_length=16)
    kind: str = Field(max_length=64)
    case_id: str = Field(default="", max_length=64)
    case_seq: int = Field(default=0, sa_type=BigInteger)
    envelope_seq: int = Field(sa_type=BigInteger)  # log entry holding the signed envelope
    state: str = Field(default="pending", max_length=16)  # pending | parked | delivered
    attempts: int = 0
    created_at_us: int = Field(sa_type=BigInteger)
    next_attempt_us: int = Field(sa_type=BigInteger)
    delivered_at_us: int | None = Field(default=None, sa_type=BigInteger)
    receipt_seq: int | None = Field(default=None, sa_type=BigInteger)  # log entry holding the receipt
    outcome: str = Field(default="", max_length=16)  # applied | rejected
    outcome_code: int = 0
    outcome_reason: str = ""
    last_error: str = ""


class InboxRow(SQLModel, table=True):
    """Every envelope this node accepted, by message ID, for the life of the data (dedupe)."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_sender_case_seq", "sender", "case_id", "case_seq"),)

    message_id: str = Field(primary_key=True, max_length=26)
    sender: str = Field(max_length=16)
    kind: str = Field(max_length=64)
    case_id: str = Field(default="", max_length=64)
    case_seq: int = Field(default=0, sa_type=BigInteger)
    envelope_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_at_us: int = Field(sa_type=BigInteger)
    envelope_seq: int = Field(sa_type=BigInteger)
    receipt_seq: int = Field(sa_type=BigInteger)
    outcome: str = Field(max_length=16)


class LogEntryRow(SQLModel, table=True):
    """One entry of the append-only, hash-chained message log."""

    __tablename__ = "log_entries"
    __table_args__ = (
        Index("ix_log_message_id", "message_id"),
        Index("ix_log_case_id", "case_id"),
        Index("ix_log_peer_seq", "peer", "seq"),
    )

    seq: int = Field(primary_key=True, sa_type=RowId, sa_column_kwargs={"autoincrement": False})
    recorded_at_us: int = Field(sa_type=BigInteger)
    direction: str = Field(max_length=8)  # in | out | local
    entry_type: str = Field(max_length=16)  # envelope | receipt | local
    peer: str = Field(default="", max_length=16)
    message_id: str = Field(default="", max_length=26)
    kind: str = Field(default="", max_length=64)
    case_id: str = Field(default="", max_length=64)
    record: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # serialized LogRecord
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # SHA-256(prev hash || record)


class CheckpointRow(SQLModel, table=True):
    """A signed statement of the log's head at some moment."""

    __tablename__ = "log_checkpoints"
    __table_args__ = (UniqueConstraint("seq", name="uq_log_checkpoints_seq"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    seq: int = Field(sa_type=BigInteger)
    at_us: int = Field(sa_type=BigInteger)
    key_id: str = Field(max_length=32)
    signed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # serialized SignedCheckpoint


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


# The same tables for SQLAlchemy Core statements (typed columns, no ORM bookkeeping), which the
# hot paths (outbox, inbox, log) use.
OUTBOX = _table(OutboxRow)
INBOX = _table(InboxRow)
LOG = _table(LogEntryRow)
CHECKPOINTS = _table(CheckpointRow)
