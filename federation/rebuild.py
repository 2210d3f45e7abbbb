"""Replaying a node's own message log into a fresh database, entry by entry.

The log holds everything that changed the node's state (see `federation.handlers`): the clerks'
local events, the envelopes received, the receipts received, and what followed from them, the
envelopes sent and the receipts given. `replay_log` walks a recorded log (a `SourceLog`) from its
first entry and, for each entry that causes something, does what the node did then, in a
transaction whose time is the entry's recorded time:

* a local event runs through `Federation.act` (its local handler);
* a received envelope, with the others of its transaction, goes through the inbox's recording
  path (`Inbox.record`: case order, the kind's handler, the inbox row, the receipt);
* a received receipt goes through `Outbox.record_receipt` (and the kind's `on_receipt`);
* an envelope sent outside any handler (a ping) is queued again through the outbox.

Nothing is signed anew. While the replay runs, the `SourceLog` is attached to the log
(`MessageLog.recorded`): each envelope a handler sends and each receipt the inbox gives is taken
from the recorded log at the place it must take, after checking that it says what the replay
would have said, and every appended record must equal the recorded one byte for byte. So the
rebuilt log ends up identical to the recorded one, hash chain included, or the replay stops at
the first entry it cannot reproduce (`Divergence`, naming that entry).

Signatures are not checked here: whoever rebuilds verifies the recorded log first, as
`tongban log verify` does (`federation.audit.verify`), and refuses a log that does not verify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import select

from federation import wire
from federation.envelope import open_envelope, open_receipt
from federation.errors import FederationError
from federation.log import bodies
from federation.models import OUTBOX, OutboxRow
from federation.outbox import Draft, Outbox, Outgoing
from federation.peers import Peer
from federation.store import Tx
from federation.units import LogRecord, Payload, Receipt, SealedEnvelope, SignedReceipt
from federation.wire import WireError

if TYPE_CHECKING:
    from federation.service import Federation


class Divergence(FederationError):
    """The replay does not reproduce the recorded log; the message names the entry and why."""


@dataclass(frozen=True)
class RecordedEntry:
    seq: int
    data: bytes  # the serialized LogRecord, as stored
    record: LogRecord

    def describe(self) -> str:
        return describe_record(self.record)


def describe_record(record: LogRecord) -> str:
    what = f"{record.direction} {record.entry_type}"
    try:
        if record.entry_type == "envelope":
            envelope = open_envelope(record.body).envelope
            what += f" {envelope.kind} {envelope.message_id}"
        elif record.entry_type == "local":
            what += f" {wire.decode_local_event(record.body).kind}"
    except WireError:
        what += " (undecodable)"
    return what + (f" ({record.peer})" if record.peer else "")


# Reads up to `limit` entries after sequence number `after`: [(seq, serialized LogRecord)].
ReadEntries = Callable[[int, int], list[tuple[int, bytes]]]


class SourceLog:
    """The recorded log being replayed, read in chunks (the `Recorded` of `federation.log`)."""

    def __init__(self, node_id: str, read: ReadEntries, *, batch: int = 2000) -> None:
        self.node_id = node_id
        self._read = read
        self._batch = batch
        self._cache: dict[int, RecordedEntry] = {}
        self._end: int | None = None  # the last seq, once reading ran past it

    def get(self, seq: int) -> RecordedEntry | None:
        found = self._cache.get(seq)
        if found is not None or (self._end is not None and seq > self._end):
            return found
        rows = self._read(seq - 1, self._batch)
        self._cache = {s: e for s, e in self._cache.items() if s >= seq - self._batch}
        for row_seq, data in rows:
            self._cache[int(row_seq)] = RecordedEntry(int(row_seq), data, wire.decode_log_record(data))
        if len(rows) < self._batch:
            self._end = int(rows[-1][0]) if rows else seq - 1
        return self._cache.get(seq)

    # -- the Recorded protocol ------------------------------------------------------------------

    def check(self, seq: int, record: bytes) -> None:
        entry = self.get(seq)
        if entry is None:
            raise Divergence(
                f"the replay wrote entry {seq} ({describe_record(wire.decode_log_record(record))}), "
                f"but the recorded log ends before it"
            )
        if entry.data != record:
            raise Divergence(
                f"entry {seq} was not reproduced: the log holds {entry.describe()}, the replay wrote "
                f"{describe_record(wire.decode_log_record(record))}"
            )

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
    ) -> SealedEnvelope:
        entry = self._expect(seq, "out", "envelope", f"an envelope {kind} to {to}")
        sealed = open_envelope(entry.record.body)
        e = sealed.envelope
        wanted = (self.node_id, to, kind, case_id, case_seq, created_at_us, payload)
        held = (e.sender, e.recipient, e.kind, e.case_id, e.case_seq, e.created_at_us, e.payload)
        if wanted != held:
            names = ("sender", "recipient", "kind", "case", "case seq", "time", "payload")
            differing = [n for n, a, b in zip(names, wanted, held, strict=True) if a != b]
            raise Divergence(
                f"entry {seq} holds envelope {e.message_id} ({e.kind} to {e.recipient}), but the replay "
                f"would send {kind} to {to}; they differ in {', '.join(differing)}"
            )
        return sealed

    def receipt(self, seq: int, receipt: Receipt) -> SignedReceipt:
        entry = self._expect(seq, "out", "receipt", f"the receipt given to {receipt.sender}")
        signed = open_receipt(entry.record.body)
        if signed.receipt != receipt:
            raise Divergence(
                f"entry {seq} holds the receipt given to {signed.receipt.sender}, which differs from the "
                f"one the replay would give to {receipt.sender} "
                f"(outcomes {[str(a.outcome) for a in signed.receipt.acks]} recorded, "
                f"{[str(a.outcome) for a in receipt.acks]} replayed)"
            )
        return signed

    def _expect(self, seq: int, direction: str, entry_type: str, wanted: str) -> RecordedEntry:
        entry = self.get(seq)
        if entry is None:
            raise Divergence(
                f"the replay would add {wanted} as entry {seq}, but the recorded log ends before it"
            )
        if (entry.record.direction, entry.record.entry_type) != (direction, entry_type):
            raise Divergence(f"the replay would add {wanted} as entry {seq}, but it holds {entry.describe()}")
        return entry


async def replay_log(
    federation: Federation, source: SourceLog, progress: Callable[[int], None] | None = None
) -> int:
    """Replay `source` into `federation` (whose database is fresh); returns the entries replayed."""
    log = federation.log
    if log.head.seq != 0:
        raise Divergence(f"the database to rebuild into already holds {log.head.seq} log entries")
    log.recorded = source
    try:
        while (entry := source.get(log.head.seq + 1)) is not None:
            before = log.head.seq
            await federation.db.write(
                partial(_step, federation, source, entry), at_us=entry.record.recorded_at_us
            )
            if log.head.seq == before:
                raise Divergence(f"entry {entry.seq} ({entry.describe()}) was not reproduced by the replay")
            if progress is not None:
                progress(log.head.seq - before)
    finally:
        log.recorded = None
    return log.head.seq


def _step(federation: Federation, source: SourceLog, entry: RecordedEntry, tx: Tx) -> None:
    """What the entry at the head of the replay causes, inside one transaction."""
    record = entry.record
    where = (record.direction, record.entry_type)
    if where == ("local", "local"):
        event = wire.decode_local_event(record.body)
        try:
            federation.act(tx, event.kind, event.payload, event.case_id)
        except Divergence:
            raise
        except Exception as error:
            raise Divergence(
                f"entry {entry.seq} ({entry.describe()}) failed when replayed: {error}"
            ) from error
    elif where == ("in", "envelope"):
        _receive(federation, source, entry, tx)
    elif where == ("in", "receipt"):
        signed = open_receipt(record.body)
        sent = _sent(tx, record.peer, [ack.message_id for ack in signed.receipt.acks])
        federation.outbox.record_receipt(tx, record.peer, signed, sent)
    elif where == ("out", "envelope"):
        e = open_envelope(record.body).envelope
        federation.outbox.enqueue_many(tx, [Draft(e.recipient, e.kind, e.payload, e.case_id, e.headers)])
    else:
        raise Divergence(
            f"entry {entry.seq} ({entry.describe()}) does not follow from anything replayed before it"
        )


def _receive(federation: Federation, source: SourceLog, first: RecordedEntry, tx: Tx) -> None:
    """The envelopes received in one transaction: up to the receipts that close it."""
    items: list[tuple[Peer, SealedEnvelope]] = []
    seq = first.seq
    while (entry := source.get(seq)) is not None:
        record = entry.record
        if (record.direction, record.entry_type) == ("out", "receipt"):
            break
        if record.recorded_at_us != first.record.recorded_at_us or record.direction == "local":
            raise Divergence(
                f"entries {first.seq} to {seq}: envelopes received without the receipt that follows them"
            )
        if (record.direction, record.entry_type) == ("in", "envelope"):
            sealed = open_envelope(record.body)
            peer = federation.peers.get(sealed.envelope.sender)
            if peer is None:
                raise Divergence(
                    f"entry {seq} comes from {sealed.envelope.sender}, which the log never made a peer "
                    "(logs written before peer changes were logged cannot be rebuilt)"
                )
            items.append((peer, sealed))
        seq += 1
    answers = federation.inbox.record(tx, items)
    for _, sealed in items:
        answer = answers.get(sealed.envelope.message_id)
        if answer is None or answer.receipt is None:
            why = answer.error_message if answer is not None else "no answer"
            raise Divergence(
                f"envelope {sealed.envelope.message_id} of entry {first.seq}ff was not applied again: {why}"
            )


def _sent(tx: Tx, peer: str, message_ids: list[str]) -> list[Outgoing]:
    """The outbox rows a receipt acknowledges, oldest first."""
    rows = [
        row
        for start in range(0, len(message_ids), 500)
        for row in tx.session.execute(
            select(OutboxRow).where(
                OUTBOX.c.peer == peer, OUTBOX.c.message_id.in_(message_ids[start : start + 500])
            )
        ).scalars()
    ]
    rows.sort(key=lambda row: row.id or 0)
    found = bodies(tx.session, [row.envelope_seq for row in rows])
    return [Outbox.outgoing(row, found[row.envelope_seq]) for row in rows]
