"""The transactional outbox: messages to peers, written in the same transaction as their cause.

A domain change and the message that tells a peer about it commit together, or neither does
(`Outbox.enqueue` runs inside the caller's transaction). The envelope is sealed (signed) right
there and appended to the message log; the outbox row points at that log entry, and stays
`pending` until the peer's signed receipt is stored (`delivered`). A message that keeps failing
is `parked`, where operators see it; `resend` puts it back in line with the same message ID.

Messages about one case carry a per-case sequence number (per recipient), which the sender uses
to keep them in order and the receiver to refuse gaps.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select
from ulid import ULID

from federation import wire
from federation.envelope import seal, seal_many
from federation.errors import FailedPrecondition, NotFound
from federation.handlers import Delivered, Handlers
from federation.keys import Signer
from federation.log import Entry, MessageLog, bodies
from federation.models import OUTBOX, OutboxRow
from federation.peers import PeerDirectory
from federation.store import Tx
from federation.units import Ack, Envelope, Payload, SealedEnvelope, SignedReceipt

_INSERT_OUTGOING = (
    "INSERT INTO outbox (id, message_id, peer, kind, case_id, case_seq, envelope_seq, state, attempts, "
    "created_at_us, next_attempt_us, outcome, outcome_code, outcome_reason, last_error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, '', 0, '', '')"
)
_LAST_CASE_SEQ = "SELECT max(case_seq) FROM outbox WHERE peer = ? AND case_id = ?"
# One UPDATE for many messages, telling which rows it changed (an IN list is filled in).
_MARK_DELIVERED = (
    "UPDATE outbox SET state = 'delivered', delivered_at_us = ?, receipt_seq = ?, outcome = ?, "
    "outcome_code = ?, outcome_reason = ?, last_error = '' "
    "WHERE message_id IN ({ids}) AND state != 'delivered' RETURNING message_id"
)
_COUNT_FAILURE = (
    "UPDATE outbox SET attempts = ?, next_attempt_us = ?, last_error = ?, state = ? "
    "WHERE message_id = ? AND state = 'pending'"
)


def new_message_id() -> str:
    """A ULID: unique, and sortable by creation time."""
    return str(ULID())


# Crockford's base32 digits, and every pair of them (ten bits at a time).
_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [first + second for first in _DIGITS for second in _DIGITS]


def new_message_ids(count: int) -> list[str]:
    """`count` ULIDs of this millisecond, in increasing order (monotonic, as the ULID spec puts it).

    The same IDs python-ulid makes (its parser reads them back), at a seventh of the cost: the
    time is encoded once for all, and the 80 random bits, counted up from a random start below
    2**79, ten bits at a time. Sealing a batch of messages spent more on IDs than on protobuf.
    """
    stamp = time.time_ns() // 1_000_000
    head = "".join(_PAIRS[(stamp >> shift) & 0x3FF] for shift in (40, 30, 20, 10, 0))
    start = int.from_bytes(secrets.token_bytes(10), "big") >> 1
    pairs = _PAIRS
    return [
        head
        + pairs[r >> 70]
        + pairs[(r >> 60) & 0x3FF]
        + pairs[(r >> 50) & 0x3FF]
        + pairs[(r >> 40) & 0x3FF]
        + pairs[(r >> 30) & 0x3FF]
        + pairs[(r >> 20) & 0x3FF]
        + pairs[(r >> 10) & 0x3FF]
        + pairs[r & 0x3FF]
        for r in range(start, start + count)
    ]


@dataclass(frozen=True, slots=True)
class Draft:
    """A message to be sealed and queued."""

    to: str
    kind: str
    payload: Payload
    case_id: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Outgoing:
    """What the sender needs of one outbox row."""

    row_id: int
    message_id: str
    peer: str
    kind: str
    case_id: str
    case_seq: int
    created_at_us: int
    wire: bytes  # the serialized SignedEnvelope
    envelope_sha256: bytes
    attempts: int = 0
    next_attempt_us: int = 0
    parked: bool = False


def backlog_query(peer: str) -> Any:
    """(state, count, oldest created_at_us) of a peer's pending and parked messages."""
    return (
        select(OUTBOX.c.state, func.count(), func.min(OUTBOX.c.created_at_us))
        .where(OUTBOX.c.peer == peer, OUTBOX.c.state.in_(("pending", "parked")))
        .group_by(OUTBOX.c.state)
    )


@dataclass
class Backlog:
    """A peer's messages not yet delivered: how many wait, how many are parked, since when."""

    pending: int = 0
    parked: int = 0
    oldest_pending_us: int | None = None


class Outbox:
    def __init__(
        self,
        node_id: str,
        log: MessageLog,
        signer: Callable[[], Signer],
        peers: PeerDirectory,
        handlers: Handlers,
    ) -> None:
        self.node_id = node_id
        self._log = log
        self._signer = signer
        self._peers = peers
        self._handlers = handlers
        self._listeners: list[Callable[[Outgoing], None]] = []

    def on_enqueue(self, listener: Callable[[Outgoing], None]) -> None:
        """`listener` hears of every committed new (or resent) message."""
        self._listeners.append(listener)

    # -- writing ------------------------------------------------------------------------------

    def enqueue(
        self,
        tx: Tx,
        *,
        to: str,
        kind: str,
        payload: Payload,
        case_id: str = "",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Outgoing:
        """Seal a message to peer `to` and queue it, inside `tx`."""
        return self.enqueue_many(tx, [Draft(to, kind, payload, case_id, headers)])[0]

    def envelope(self, draft: Draft, created_at_us: int, case_seq: int = 0, message_id: str = "") -> Envelope:
        """The envelope of a draft, not yet signed."""
        return Envelope(
            message_id=message_id or new_message_id(),
            sender=self.node_id,
            recipient=draft.to,
            kind=draft.kind,
            created_at_us=created_at_us,
            payload=draft.payload,
            case_id=draft.case_id,
            case_seq=case_seq,
            headers=draft.headers,
        )

    def seal(
        self, draft: Draft, created_at_us: int, case_seq: int = 0, message_id: str = ""
    ) -> SealedEnvelope:
        """The signed envelope of a draft (no storage involved: callable from any thread)."""
        return seal(self.envelope(draft, created_at_us, case_seq, message_id), self._signer())

    def seal_many(self, envelopes: Sequence[Envelope]) -> list[SealedEnvelope]:
        """Signed envelopes, in order, with one batch signature per recipient (any thread)."""
        by_recipient: dict[str, list[int]] = {}
        for index, envelope in enumerate(envelopes):
            by_recipient.setdefault(envelope.recipient, []).append(index)
        signer = self._signer()
        sealed: dict[int, SealedEnvelope] = {}
        for indexes in by_recipient.values():
            sealed.update(zip(indexes, seal_many([envelopes[i] for i in indexes], signer), strict=True))
        return [sealed[index] for index in range(len(envelopes))]

    def enqueue_many(
        self, tx: Tx, drafts: Sequence[Draft], presealed: Sequence[SealedEnvelope | None] = ()
    ) -> list[Outgoing]:
        """Seal and queue several messages at once (one insert for all), inside `tx`.

        `presealed` may hold, per draft, an envelope sealed beforehand (only for drafts without
        a case: a case's sequence number is known only inside the transaction). The others are
        sealed here together, with one batch signature per recipient.
        """
        next_seq: dict[tuple[str, str], int] = {}
        items: list[SealedEnvelope | None] = []
        unsealed: list[tuple[int, Envelope]] = []
        recorded = self._log.recorded
        for index, draft in enumerate(drafts):
            self._peers.require(draft.to)
            ready = presealed[index] if index < len(presealed) else None
            if ready is not None and not draft.case_id:
                items.append(ready)
                continue
            case_seq = 0
            if draft.case_id:
                key = (draft.to, draft.case_id)
                case_seq = next_seq.get(key) or self._next_case_seq(tx, *key)
                next_seq[key] = case_seq + 1
            if recorded is None:
                unsealed.append((index, self.envelope(draft, tx.now_us, case_seq)))
                items.append(None)
                continue
            # Rebuilding: the envelope sent back then, at the place it takes in the log.
            items.append(
                recorded.envelope(
                    self._log.head.seq + 1 + len(items),
                    to=draft.to,
                    kind=draft.kind,
                    payload=draft.payload,
                    case_id=draft.case_id,
                    case_seq=case_seq,
                    created_at_us=tx.now_us,
                )
            )
        if unsealed:
            done = self.seal_many([envelope for _, envelope in unsealed])
            for (index, _), item in zip(unsealed, done, strict=True):
                items[index] = item
        sealed = [(draft, item) for draft, item in zip(drafts, items, strict=True) if item is not None]
        envelope_seqs = self._log.append_many(
            tx,
            [
                Entry(
                    "out",
                    "envelope",
                    item.wire,
                    peer=d.to,
                    message_id=item.envelope.message_id,
                    kind=d.kind,
                    case_id=d.case_id,
                )
                for d, item in sealed
            ],
        )
        now = tx.now_us
        # The row ID is the log entry of the envelope: unique, in the order messages were made,
        # and known here without asking the database back.
        tx.sql.many(
            _INSERT_OUTGOING,
            [
                (
                    seq,
                    item.envelope.message_id,
                    draft.to,
                    draft.kind,
                    draft.case_id,
                    item.envelope.case_seq,
                    seq,
                    now,
                    now,
                )
                for (draft, item), seq in zip(sealed, envelope_seqs, strict=True)
            ],
        )
        row_ids = envelope_seqs
        queued = [
            Outgoing(
                row_id=row_id,
                message_id=item.envelope.message_id,
                peer=draft.to,
                kind=draft.kind,
                case_id=draft.case_id,
                case_seq=item.envelope.case_seq,
                created_at_us=tx.now_us,
                wire=item.wire,
                envelope_sha256=item.sha256,
                next_attempt_us=tx.now_us,
            )
            for (draft, item), row_id in zip(sealed, row_ids, strict=True)
        ]
        tx.after_commit(lambda: self._announce(queued))
        return queued

    def _next_case_seq(self, tx: Tx, peer: str, case_id: str) -> int:
        [(last,)] = tx.sql.rows(_LAST_CASE_SEQ, (peer, case_id))
        return int(last or 0) + 1

    def _announce(self, queued: list[Outgoing]) -> None:
        for outgoing in queued:
            for listener in self._listeners:
                listener(outgoing)

    def record_receipt(
        self, tx: Tx, peer: str, signed: SignedReceipt, sent: list[Outgoing], receipt_seq: int | None = None
    ) -> tuple[list[Delivered], int | None]:
        """Store a peer's receipt for messages of ours (logging it unless `receipt_seq` says where
        it already is); returns the messages newly marked delivered and the receipt's log entry."""
        acks: dict[str, Ack] = {}
        for outgoing in sent:
            ack = signed.receipt.ack_for(outgoing.message_id)
            if ack is not None:
                acks[outgoing.message_id] = ack
        if receipt_seq is None:
            receipt_seq = self._log.append(tx, Entry("in", "receipt", signed.wire, peer=peer))
        # One UPDATE per distinct outcome (nearly always just "applied"), telling which rows it
        # changed: a message already marked delivered (a duplicate receipt) is left alone.
        outcomes: dict[tuple[str, int, str], list[str]] = {}
        for message_id, ack in acks.items():
            outcomes.setdefault((str(ack.outcome), ack.code, ack.reason), []).append(message_id)
        still_pending: set[str] = set()
        for (outcome, code, reason), message_ids in outcomes.items():
            for start in range(0, len(message_ids), 500):
                chunk = message_ids[start : start + 500]
                still_pending.update(
                    row[0]
                    for row in tx.sql.rows(
                        _MARK_DELIVERED.format(ids=tx.sql.placeholders(len(chunk))),
                        (tx.now_us, receipt_seq, outcome, code, reason, *chunk),
                    )
                )
        delivered = [
            Delivered(o.message_id, peer, o.kind, o.case_id, o.created_at_us, acks[o.message_id])
            for o in sent
            if o.message_id in still_pending
        ]
        for item in delivered:
            handler = self._handlers.get(item.kind)
            if handler is not None and handler.on_receipt is not None:
                handler.on_receipt(tx, item)
        return delivered, receipt_seq

    def record_failures(
        self, tx: Tx, failures: list[tuple[Outgoing, str, int]], park_after: int
    ) -> list[Outgoing]:
        """Count a failed attempt for each (message, error, next attempt); park those out of tries."""
        changed = []
        rows = []
        for outgoing, error, next_attempt in failures:
            attempts = outgoing.attempts + 1
            parked = attempts >= park_after
            rows.append(
                (attempts, next_attempt, error[:1000], "parked" if parked else "pending", outgoing.message_id)
            )
            changed.append(replace(outgoing, attempts=attempts, next_attempt_us=next_attempt, parked=parked))
        tx.sql.many(_COUNT_FAILURE, rows)
        return changed

    def park_peer(self, tx: Tx, peer: str, reason: str) -> int:
        """Park everything still pending for `peer` (when it is removed)."""
        result = tx.session.connection().execute(
            update(OUTBOX)
            .where(OUTBOX.c.peer == peer, OUTBOX.c.state == "pending")
            .values(state="parked", last_error=reason)
        )
        return int(result.rowcount or 0)

    def resend(self, tx: Tx, message_id: str) -> OutboxRow:
        """Put a parked or pending message back in line now, keeping its ID and signature."""
        row = tx.session.exec(select(OutboxRow).where(col(OutboxRow.message_id) == message_id)).one_or_none()
        if row is None:
            raise NotFound(
                f"no message {message_id} in the outbox; `tongban outbox list --parked` shows parked ones"
            )
        if row.state == "delivered":
            raise FailedPrecondition(f"message {message_id} was already delivered; nothing to resend")
        self._peers.require(row.peer)
        row.state = "pending"
        row.attempts = 0
        row.next_attempt_us = tx.now_us
        row.last_error = ""
        tx.session.add(row)
        tx.session.flush()
        body = bodies(tx.session, [row.envelope_seq])[row.envelope_seq]
        outgoing = self.outgoing(row, body)
        tx.after_commit(lambda: self._announce([outgoing]))
        return row

    # -- reading ------------------------------------------------------------------------------

    def undelivered(self, session: Session, peer: str, after_row: int, limit: int) -> list[Outgoing]:
        """Pending and parked messages to `peer` after row `after_row`, oldest first."""
        rows = session.exec(
            select(OutboxRow)
            .where(
                col(OutboxRow.peer) == peer,
                col(OutboxRow.state) != "delivered",
                col(OutboxRow.id) > after_row,
            )
            .order_by(col(OutboxRow.id))
            .limit(limit)
        ).all()
        found = bodies(session, [row.envelope_seq for row in rows])
        return [self.outgoing(row, found[row.envelope_seq]) for row in rows]

    @staticmethod
    def outgoing(row: OutboxRow, signed_envelope: bytes) -> Outgoing:
        """What the sender needs of a stored row and its envelope's bytes."""
        envelope_bytes = wire.decode_signed_envelope(signed_envelope)[0]
        assert row.id is not None
        return Outgoing(
            row_id=row.id,
            message_id=row.message_id,
            peer=row.peer,
            kind=row.kind,
            case_id=row.case_id,
            case_seq=row.case_seq,
            created_at_us=row.created_at_us,
            wire=signed_envelope,
            envelope_sha256=hashlib.sha256(envelope_bytes).digest(),
            attempts=row.attempts,
            next_attempt_us=row.next_attempt_us,
            parked=row.state == "parked",
        )

    @staticmethod
    def list(
        session: Session,
        *,
        parked_only: bool = False,
        peer: str = "",
        limit: int = 100,
        include_delivered: bool = False,
    ) -> tuple[list[OutboxRow], int]:
        """Rows for `tongban outbox list`, newest first, and how many match in all."""
        conditions = []
        if parked_only:
            conditions.append(col(OutboxRow.state) == "parked")
        elif not include_delivered:
            conditions.append(col(OutboxRow.state) != "delivered")
        if peer:
            conditions.append(col(OutboxRow.peer) == peer)
        rows = session.exec(
            select(OutboxRow).where(*conditions).order_by(col(OutboxRow.id).desc()).limit(limit)
        ).all()
        total = session.execute(select(func.count()).select_from(OUTBOX).where(*conditions)).scalar_one()
        return list(rows), int(total)

    @staticmethod
    def backlog(session: Session, peer: str) -> Backlog:
        """One peer's undelivered messages, read through the index on (peer, state): the work
        goes with the backlog, not with everything ever delivered (the gauges ask every 15 s)."""
        found = Backlog()
        for state, count, oldest in session.execute(backlog_query(peer)):
            if state == "pending":
                found.pending, found.oldest_pending_us = int(count), int(oldest)
            else:
                found.parked = int(count)
        return found
