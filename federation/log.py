"""The message log: every envelope and receipt, in and out, append-only and hash-chained.

Each entry stores a serialized LogRecord (sequence number, time, direction, type, peer and the
signed bytes exactly as sent or received) and its hash, SHA-256 over the previous entry's hash
and the record's bytes; the first entry chains from 32 zero bytes. Editing, deleting, inserting
or reordering an entry breaks every hash after it. Checkpoints, written by a scheduled job, sign
the head (sequence number and hash) with the node's key, so that truncating the tail or
rewriting the whole chain is caught as well.

Entries are appended inside the same transaction as the change they record (see
`federation.store`), so the log and the state can never disagree. The log head is kept in memory
by the single writer and restored when a job's savepoint rolls back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, insert, select
from sqlmodel import Session

from federation import wire
from federation.keys import CONTEXT_CHECKPOINT, KeyHistory, SignatureError, Signer
from federation.models import CHECKPOINTS, LOG
from federation.store import Tx
from federation.units import Checkpoint, LogRecord
from federation.wire import WireError

if TYPE_CHECKING:
    from federation.units import Payload, Receipt, SealedEnvelope, SignedReceipt

GENESIS = bytes(32)

_INSERT_ENTRY = (
    "INSERT INTO log_entries (seq, recorded_at_us, direction, entry_type, peer, message_id, kind, "
    "case_id, record, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def chain_hash(previous: bytes, record: bytes) -> bytes:
    return hashlib.sha256(previous + record).digest()


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """What to append: the signed bytes and the columns that make them findable."""

    direction: str  # in | out | local
    entry_type: str  # envelope | receipt | local
    body: bytes
    peer: str = ""
    message_id: str = ""
    kind: str = ""
    case_id: str = ""


class Recorded(Protocol):
    """A log being replayed into a fresh database (see `federation.rebuild`).

    While one is attached, every appended record must equal the recorded one at its place, and
    what would be signed anew (an outgoing envelope, a receipt this node gives) is taken from the
    recorded log instead, after checking that it says what the replay would have said.
    """

    def check(self, seq: int, record: bytes) -> None: ...

    def envelope(
        self,
        seq: int,
        *,
        to: str,
        kind: str,
        payload: Payload,
        case_id: str,
        case_seq: int,
        created_at_us: int,
    ) -> SealedEnvelope: ...

    def receipt(self, seq: int, receipt: Receipt) -> SignedReceipt: ...


class MessageLog:
    """Appends to the log of one node and writes its checkpoints."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._head = Head(0, GENESIS)
        self._checkpointed = 0
        # Set while a rebuild replays a recorded log into this one.
        self.recorded: Recorded | None = None

    @property
    def head(self) -> Head:
        return self._head

    def load(self, session: Session) -> None:
        """Read the current head from the database (at start-up)."""
        row = session.execute(select(LOG.c.seq, LOG.c.hash).order_by(LOG.c.seq.desc()).limit(1)).first()
        self._head = Head(row[0], row[1]) if row else Head(0, GENESIS)
        last = session.execute(select(func.max(CHECKPOINTS.c.seq))).scalar()
        self._checkpointed = int(last or 0)

    def append(self, tx: Tx, entry: Entry) -> int:
        """Append one entry in `tx`; returns its sequence number."""
        return self.append_many(tx, [entry])[0]

    def append_many(self, tx: Tx, entries: list[Entry]) -> list[int]:
        """Append entries in order in `tx`; returns their sequence numbers."""
        if not entries:
            return []
        before = self._head
        seq, previous = before.seq, before.hash
        now = tx.now_us
        recorded = self.recorded
        rows: list[tuple[Any, ...]] = []
        for entry in entries:
            seq += 1
            record = wire.log_record_bytes(
                LogRecord(seq, now, entry.direction, entry.entry_type, entry.peer, entry.body)
            )
            if recorded is not None:
                recorded.check(seq, record)
            previous = chain_hash(previous, record)
            rows.append(
                (
                    seq,
                    now,
                    entry.direction,
                    entry.entry_type,
                    entry.peer,
                    entry.message_id,
                    entry.kind,
                    entry.case_id,
                    record,
                    previous,
                )
            )
        tx.sql.many(_INSERT_ENTRY, rows)
        self._head = Head(seq, previous)
        tx.on_rollback(lambda: self._restore(before))
        return list(range(before.seq + 1, seq + 1))

    def _restore(self, head: Head) -> None:
        self._head = head

    def checkpoint(self, tx: Tx, signer: Signer) -> int | None:
        """Sign the current head if it moved since the last checkpoint; returns the seq signed."""
        head = self._head
        if head.seq == 0 or head.seq <= self._checkpointed:
            return None
        checkpoint = Checkpoint(self.node_id, head.seq, head.hash, tx.now_us)
        data = wire.checkpoint_bytes(checkpoint)
        signature = signer.sign(CONTEXT_CHECKPOINT, data)
        tx.session.connection().execute(
            insert(CHECKPOINTS).values(
                seq=head.seq,
                at_us=tx.now_us,
                key_id=signer.key_id,
                signed=wire.signed_checkpoint_bytes(data, signature, signer.key_id),
            )
        )
        previous = self._checkpointed
        self._checkpointed = head.seq
        tx.on_rollback(lambda: setattr(self, "_checkpointed", previous))
        return head.seq


def bodies(session: Session, seqs: list[int]) -> dict[int, bytes]:
    """The signed bytes stored in the log entries `seqs` (envelopes or receipts)."""
    found: dict[int, bytes] = {}
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        for seq, record in session.execute(select(LOG.c.seq, LOG.c.record).where(LOG.c.seq.in_(chunk))):
            found[seq] = wire.decode_log_record(record).body
    return found


# -- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the log, and where."""

    seq: int
    what: str


@dataclass
class Verification:
    entries: int = 0
    checkpoints: int = 0
    head: Head = field(default_factory=lambda: Head(0, GENESIS))
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _entries(session: Session, start: int, batch: int) -> Iterator[tuple[int, bytes, bytes]]:
    after = start - 1
    while True:
        rows = session.execute(
            select(LOG.c.seq, LOG.c.record, LOG.c.hash)
            .where(LOG.c.seq > after)
            .order_by(LOG.c.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def verify_log(
    session: Session,
    own_keys: KeyHistory,
    *,
    batch: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """Walk the chain from the first entry and check every checkpoint; stop at the first problem."""
    result = Verification()
    expected = 1
    previous = GENESIS
    hashes_at: dict[int, bytes] = {}
    checkpoint_seqs = set(session.execute(select(CHECKPOINTS.c.seq)).scalars())
    for seq, record, stored in _entries(session, 1, batch):
        if seq != expected:
            result.problem = Problem(expected, f"entry {expected} is missing (the next entry is {seq})")
            return result
        try:
            decoded = wire.decode_log_record(record)
        except WireError as error:
            result.problem = Problem(seq, f"entry {seq} is not a log record: {error}")
            return result
        if decoded.seq != seq:
            result.problem = Problem(seq, f"entry {seq} holds the record of entry {decoded.seq}")
            return result
        digest = chain_hash(previous, record)
        if digest != stored:
            result.problem = Problem(
                seq, f"entry {seq} does not match its hash: it was changed after it was written"
            )
            return result
        if seq in checkpoint_seqs:
            hashes_at[seq] = digest
        previous = digest
        expected += 1
        result.entries += 1
        if progress is not None:
            progress(1)
    result.head = Head(expected - 1, previous)
    for row_seq, signed in session.execute(
        select(CHECKPOINTS.c.seq, CHECKPOINTS.c.signed).order_by(CHECKPOINTS.c.seq)
    ):
        try:
            data, signature, key_id = wire.decode_signed_checkpoint(signed)
            checkpoint = wire.decode_checkpoint(data)
            own_keys.verify(CONTEXT_CHECKPOINT, data, signature, key_id, checkpoint.at_us)
        except (WireError, SignatureError) as error:
            result.problem = Problem(row_seq, f"checkpoint at entry {row_seq} does not verify: {error}")
            return result
        if checkpoint.node_id != own_keys.node_id or checkpoint.seq != row_seq:
            result.problem = Problem(row_seq, f"checkpoint at entry {row_seq} is for another log")
            return result
        if checkpoint.seq > result.head.seq:
            result.problem = Problem(
                result.head.seq + 1,
                f"checkpoint says the log reached entry {checkpoint.seq}, but it ends at {result.head.seq}: "
                "entries were removed from the end",
            )
            return result
        if hashes_at.get(checkpoint.seq) != checkpoint.hash:
            result.problem = Problem(
                checkpoint.seq, f"entry {checkpoint.seq} differs from what the checkpoint signed"
            )
            return result
        result.checkpoints += 1
    return result
