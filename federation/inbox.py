"""Inbound delivery: the receiver's checks, dedupe, apply, record, receipt.

For every envelope that arrives, in this order (DESIGN.md §2):

1. the TLS peer is a known, active peer (checked by the server before we get here);
2. the bytes decode, the version is one this node speaks, and the envelope's sender is the
   TLS peer itself (a peer cannot pass on another node's envelopes);
3. the signature verifies with the sender's key that was current when the envelope was made;
4. the recipient is this node;
5. the message ID is new. If not, the answer is the receipt given the first time, byte for
   byte, and nothing else happens. Dedupe lasts as long as the data.

Then, in one transaction: the domain handler applies the message (or refuses it with
`Rejected`), the inbox row and the log entries are written, and a receipt covering the new
envelopes is signed and logged. Only after the commit does the sender get the receipt, so a
receipt always means "recorded for good".

Calls that arrive while a transaction is being written wait and go together into the next one
(whatever their number), and each sender gets one signed receipt covering all of its envelopes
in that transaction: under load the work per message shrinks instead of the queue growing. When
the last transaction carried more than one call, the next waits a few milliseconds for company
before it starts (calls then come in crowds); a call that came alone is written at once. A
handler registered as not writing (`writes=False`) runs without a savepoint of its own.

A small call (fewer than eight envelopes: one message, or a short batch) is checked on the
writer thread, at the start of the transaction that records it, together with the other calls
of that transaction: on a busy receiver the event loop is the narrowest part, and gRPC's own
work leaves it little room. A call naming a key of its sender that this node has not learnt yet
goes back to the loop, which asks the peer for its keys first and then checks the call there,
as it checks big calls (whose full signature checks it spreads over two threads).

Messages about a case must arrive in sequence: a gap (message 5 before 4) is refused with
FAILED_PRECONDITION and the sender tries again later, once 4 is through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import grpc

from federation.envelope import VerifiedBatches, open_envelope, open_receipt, sign_receipt, verify_envelope
from federation.errors import (
    FederationError,
    InvalidArgument,
    Rejected,
    Unauthenticated,
    status_code_number,
)
from federation.handlers import Handlers
from federation.keys import KeyHistory, SignatureError, Signer
from federation.log import Entry, MessageLog, bodies
from federation.peers import Peer, PeerDirectory
from federation.store import Database, Tx
from federation.units import (
    ENVELOPE_VERSION,
    Ack,
    DeliveryResult,
    Outcome,
    Receipt,
    SealedEnvelope,
    SignedReceipt,
)
from federation.wire import WireError

_log = logging.getLogger("tongban.federation.inbox")

# Calls needing at least this many full signature checks (an envelope signed alone needs one, a
# batch one for all its envelopes) have them done on two threads (libsodium releases the GIL);
# fewer are cheaper inline. The other envelopes of a batch cost a few hashes each, inline.
_PARALLEL_VERIFY_FROM = 8
# While calls come in together, a transaction waits this long for more of them: fewer, larger
# commits (and receipts). A call that came alone is written at once.
_LINGER = 0.005

_KNOWN = "SELECT message_id, sender, receipt_seq FROM inbox WHERE message_id IN ({ids})"
_LAST_CASE_SEQ = "SELECT max(case_seq) FROM inbox WHERE sender = ? AND case_id = ?"
_INSERT_RECEIVED = (
    "INSERT INTO inbox (message_id, sender, kind, case_id, case_seq, envelope_sha256, received_at_us, "
    "envelope_seq, receipt_seq, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass
class _Arrival:
    """The envelopes of one call, waiting for the next transaction.

    A small call comes unchecked: the writer thread checks it at the start of the transaction
    that records it, which keeps the event loop (the busiest thread of a receiving node, and the
    one that caps its calls per second) to the gRPC work. A big call was checked on the loop,
    where its full signature checks can run on two threads.
    """

    peer: Peer
    checked: list[_Checked]
    unchecked: bool
    # One result per envelope, in order; None when an envelope names a key this node must learn first.
    answers: asyncio.Future[list[DeliveryResult] | None]


@dataclass
class _Checked:
    wire: bytes
    sealed: SealedEnvelope | None = None
    error: FederationError | None = None


class Inbox:
    def __init__(
        self,
        node_id: str,
        *,
        db: Database,
        log: MessageLog,
        peers: PeerDirectory,
        handlers: Handlers,
        signer: Callable[[], Signer],
        refresh_keys: Callable[[str], Awaitable[None]],
        crypto: concurrent.futures.Executor,
    ) -> None:
        self.node_id = node_id
        self._db = db
        self._log = log
        self._peers = peers
        self._handlers = handlers
        self._signer = signer
        self._refresh_keys = refresh_keys
        self._crypto = crypto
        self.on_received: list[Callable[[str, int], None]] = []
        self._arrivals: list[_Arrival] = []
        self._flusher: asyncio.Task[None] | None = None
        self._crowded = False
        self._verified = VerifiedBatches()

    async def receive(self, peer: Peer, wires: list[bytes]) -> list[DeliveryResult]:
        """Check, apply and receipt envelopes from `peer`; one result per envelope, in order."""
        if not wires:
            return []
        results = None
        if len(wires) < _PARALLEL_VERIFY_FROM:
            results = await self._write(peer, [_Checked(data) for data in wires], unchecked=True)
        if results is None:  # a big call, or one whose envelopes name keys this node must learn
            checked = [self._structure(peer, data) for data in wires]
            peer = await self._signatures(peer, checked)
            for item in checked:
                if item.sealed is not None and item.error is None:
                    item.error = self._addressing(item.sealed)
            results = await self._write(peer, checked, unchecked=False)
            assert results is not None
        received = sum(1 for r in results if r.ok)
        if received:
            for listener in self.on_received:
                listener(peer.node_id, received)
        return results

    async def _write(
        self, peer: Peer, checked: list[_Checked], unchecked: bool
    ) -> list[DeliveryResult] | None:
        if not unchecked and all(item.error is not None for item in checked):
            return [_error_result(item) for item in checked]
        arrival = _Arrival(peer, checked, unchecked, asyncio.get_running_loop().create_future())
        self._arrivals.append(arrival)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await arrival.answers

    # -- checks before the transaction --------------------------------------------------------

    def _structure(self, peer: Peer, data: bytes) -> _Checked:
        try:
            sealed = open_envelope(data)
        except WireError as error:
            return _Checked(data, error=InvalidArgument(f"not a tongban signed envelope: {error}"))
        envelope = sealed.envelope
        if envelope.version != ENVELOPE_VERSION:
            return _Checked(
                data,
                sealed,
                InvalidArgument(
                    f"envelope version {envelope.version} is not spoken by {self.node_id} "
                    f"(it speaks {ENVELOPE_VERSION}); the sender must send version {ENVELOPE_VERSION}"
                ),
            )
        if not envelope.message_id or not envelope.kind:
            return _Checked(data, sealed, InvalidArgument("envelope has no message ID or no kind"))
        if envelope.sender != peer.node_id:
            return _Checked(
                data,
                sealed,
                Unauthenticated(
                    f"envelope from {envelope.sender or 'nobody'} arrived over the connection of {peer.node_id}; "
                    "a node may only deliver envelopes it signed itself"
                ),
            )
        return _Checked(data, sealed)

    async def _signatures(self, peer: Peer, checked: list[_Checked]) -> Peer:
        """Check the signatures of a call on the loop, learning the peer's new keys first if an
        envelope names one; returns the peer as it is now."""
        pending = [item for item in checked if item.sealed is not None and item.error is None]
        if not pending:
            return peer
        if any(peer.keys.find(item.sealed.key_id) is None for item in pending if item.sealed):
            await self._refresh_keys(peer.node_id)
            peer = self._peers.get(peer.node_id) or peer
        check = partial(self._verify, peer.keys)

        # Full Ed25519 checks: every envelope signed alone, and the first of each batch. The
        # rest of a batch then costs a few hashes, its signature being known good by then.
        full: list[_Checked] = []
        followers: list[_Checked] = []
        leaders: set[bytes] = set()
        for item in pending:
            assert item.sealed is not None
            if item.sealed.batch is None:
                full.append(item)
            elif item.sealed.signature in leaders:
                followers.append(item)
            else:
                leaders.add(item.sealed.signature)
                full.append(item)
        if len(full) < _PARALLEL_VERIFY_FROM:
            check(full)
        else:
            # One share per signing thread: a hand-off per envelope would cost a good part of a check.
            loop = asyncio.get_running_loop()
            half = (len(full) + 1) // 2
            await asyncio.gather(
                loop.run_in_executor(self._crypto, check, full[:half]),
                loop.run_in_executor(self._crypto, check, full[half:]),
            )
        check(followers)
        return peer

    def _verify(self, keys: KeyHistory, items: list[_Checked]) -> None:
        for item in items:
            assert item.sealed is not None
            try:
                verify_envelope(item.sealed, keys, self._verified)
            except SignatureError as error:
                item.error = Unauthenticated(f"{error}; the envelope was not accepted")

    def _check_here(self, arrival: _Arrival) -> bool:
        """All checks of a small call, on the writer thread; False (nothing checked) when an
        envelope names a key of the peer that this node does not know yet."""
        peer = arrival.peer
        checked = [self._structure(peer, item.wire) for item in arrival.checked]
        if any(
            item.sealed is not None and item.error is None and peer.keys.find(item.sealed.key_id) is None
            for item in checked
        ):
            return False
        self._verify(peer.keys, [item for item in checked if item.sealed is not None and item.error is None])
        for item in checked:
            if item.sealed is not None and item.error is None:
                item.error = self._addressing(item.sealed)
        arrival.checked = checked
        arrival.unchecked = False
        return True

    def _addressing(self, sealed: SealedEnvelope) -> FederationError | None:
        envelope = sealed.envelope
        if envelope.recipient != self.node_id:
            return InvalidArgument(
                f"envelope {envelope.message_id} is addressed to {envelope.recipient or 'nobody'}, "
                f"but this node is {self.node_id}"
            )
        if self._handlers.get(envelope.kind) is None:
            return FederationError(
                f"{self.node_id} does not handle messages of kind {envelope.kind!r}; it may need an upgrade",
                code=grpc.StatusCode.UNIMPLEMENTED,
            )
        return None

    # -- the transaction ----------------------------------------------------------------------

    async def _flush(self) -> None:
        """Write whatever has arrived, one transaction at a time, until nothing waits."""
        while self._arrivals:
            if self._crowded:
                await asyncio.sleep(_LINGER)
            arrivals, self._arrivals = self._arrivals, []
            self._crowded = len(arrivals) > 1
            try:
                results = await self._db.write(partial(self._record, arrivals=arrivals))
            except Exception as error:
                for arrival in arrivals:
                    if not arrival.answers.done():
                        arrival.answers.set_exception(error)
                continue
            for arrival, answer in zip(arrivals, results, strict=True):
                if not arrival.answers.done():
                    arrival.answers.set_result(answer)

    def _record(self, tx: Tx, arrivals: list[_Arrival]) -> list[list[DeliveryResult] | None]:
        """Check what came unchecked, then record everything valid; each arrival's results."""
        ready = [arrival for arrival in arrivals if not arrival.unchecked or self._check_here(arrival)]
        answers = self.record(
            tx,
            [
                (arrival.peer, item.sealed)
                for arrival in ready
                for item in arrival.checked
                if item.sealed is not None and item.error is None
            ],
        )
        return [
            None if arrival.unchecked else [_result(item, answers) for item in arrival.checked]
            for arrival in arrivals
        ]

    def record(self, tx: Tx, items: list[tuple[Peer, SealedEnvelope]]) -> dict[str, DeliveryResult]:
        """Apply, record and receipt everything new in `items` (envelopes whose signatures were
        checked, in arrival order); answers by message ID."""
        ids = list({sealed.envelope.message_id for _, sealed in items})
        known: dict[str, tuple[str, int]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for message_id, sender, receipt_seq in tx.sql.rows(
                _KNOWN.format(ids=tx.sql.placeholders(len(chunk))), chunk
            ):
                known[message_id] = (sender, receipt_seq)
        answers: dict[str, DeliveryResult] = {}
        if known:
            stored = bodies(tx.session, list({seq for _, seq in known.values()}))
            for message_id, (_, receipt_seq) in known.items():
                answers[message_id] = _stored_receipt(message_id, stored[receipt_seq])
        batch = _Batch(self._log, tx)
        next_seq: dict[tuple[str, str], int] = {}
        for peer, item in items:
            envelope = item.envelope
            if envelope.message_id in known and known[envelope.message_id][0] != envelope.sender:
                answers[envelope.message_id] = _refused(
                    item,
                    InvalidArgument(f"message ID {envelope.message_id} was already used by another node"),
                )
                continue
            if envelope.message_id in answers or envelope.message_id in batch.pending:
                continue  # a duplicate: answered with its first receipt (also within one transaction)
            if envelope.case_id:
                key = (envelope.sender, envelope.case_id)
                expected = next_seq.get(key) or self._next_case_seq(tx, *key)
                if envelope.case_seq != expected:
                    answers[envelope.message_id] = _refused(
                        item,
                        FederationError(
                            f"message {envelope.case_seq} of case {envelope.case_id} arrived, but {self.node_id} "
                            f"expects message {expected} next; the sender retries in order",
                            code=grpc.StatusCode.FAILED_PRECONDITION,
                        ),
                    )
                    continue
            if not self._apply(batch, peer, item):
                answers[envelope.message_id] = DeliveryResult(
                    envelope.message_id,
                    error_code=status_code_number(grpc.StatusCode.INTERNAL),
                    error_message=f"{self.node_id} failed to apply message {envelope.message_id}; it will be retried",
                )
                continue
            if envelope.case_id:
                next_seq[(envelope.sender, envelope.case_id)] = envelope.case_seq + 1
        answers.update(batch.finish(self.node_id, self._signer()))
        return answers

    def _next_case_seq(self, tx: Tx, sender: str, case_id: str) -> int:
        [(last,)] = tx.sql.rows(_LAST_CASE_SEQ, (sender, case_id))
        return int(last or 0) + 1

    def _apply(self, batch: _Batch, peer: Peer, item: SealedEnvelope) -> bool:
        """Run the kind's handler and note the outcome in `batch`; False when the handler broke.

        A handler that writes runs in a savepoint, after its envelope is in the log (so that what
        it causes follows what caused it); a refusal (`Rejected`) undoes only its own changes.
        """
        envelope = item.envelope
        handler = self._handlers.get(envelope.kind)
        assert handler is not None
        tx = batch.tx

        def refusal_of(apply: Callable[[], None]) -> Rejected | None:
            try:
                apply()
            except Rejected as refusal:
                return refusal
            return None

        try:
            if handler.writes:
                with tx.savepoint():
                    envelope_seq = batch.log_now(item)

                    def guarded() -> None:
                        with tx.savepoint():
                            handler.apply(tx, item)

                    batch.add(peer, item, envelope_seq, refusal_of(guarded))
            else:
                batch.add(peer, item, None, refusal_of(lambda: handler.apply(tx, item)))
            return True
        except Exception:
            _log.exception(
                "applying %s %s from %s failed", envelope.kind, envelope.message_id, envelope.sender
            )
            return False


class _Batch:
    """What one transaction of the inbox records: log entries, inbox rows, one receipt per sender."""

    def __init__(self, log: MessageLog, tx: Tx) -> None:
        self._log = log
        self.tx = tx
        self.pending: dict[str, tuple[Peer, SealedEnvelope, int | None, Ack]] = {}
        self._unlogged: list[str] = []

    def log_now(self, item: SealedEnvelope) -> int:
        """Log this envelope at once (and everything noted before it, to keep the order)."""
        self._flush_log()
        return self._log.append(self.tx, _entry(item))

    def add(
        self, peer: Peer, item: SealedEnvelope, envelope_seq: int | None, refusal: Rejected | None
    ) -> None:
        envelope = item.envelope
        if refusal is None:
            ack = Ack(envelope.message_id, item.sha256, Outcome.APPLIED)
        else:
            ack = Ack(
                envelope.message_id,
                item.sha256,
                Outcome.REJECTED,
                status_code_number(refusal.code),
                refusal.message,
            )
        self.pending[envelope.message_id] = (peer, item, envelope_seq, ack)
        if envelope_seq is None:
            self._unlogged.append(envelope.message_id)

    def _flush_log(self) -> None:
        if not self._unlogged:
            return
        seqs = self._log.append_many(self.tx, [_entry(self.pending[mid][1]) for mid in self._unlogged])
        for message_id, seq in zip(self._unlogged, seqs, strict=True):
            peer, item, _, ack = self.pending[message_id]
            self.pending[message_id] = (peer, item, seq, ack)
        self._unlogged = []

    def finish(self, node_id: str, signer: Signer) -> dict[str, DeliveryResult]:
        """Log the rest, sign one receipt per sender, write the inbox rows."""
        self._flush_log()
        if not self.pending:
            return {}
        by_sender: dict[str, list[str]] = {}
        for message_id, (peer, _, _, _) in self.pending.items():
            by_sender.setdefault(peer.node_id, []).append(message_id)
        recorded = self._log.recorded
        receipts: dict[str, SignedReceipt] = {}
        for sender, message_ids in by_sender.items():
            receipt = Receipt(
                node_id, sender, self.tx.now_us, tuple(self.pending[mid][3] for mid in message_ids)
            )
            if recorded is None:
                receipts[sender] = sign_receipt(receipt, signer)
            else:  # rebuilding: the receipt given back then, at the place it takes in the log
                receipts[sender] = recorded.receipt(self._log.head.seq + 1 + len(receipts), receipt)
        seqs = self._log.append_many(
            self.tx,
            [Entry("out", "receipt", signed.wire, peer=sender) for sender, signed in receipts.items()],
        )
        receipt_seqs = dict(zip(receipts, seqs, strict=True))
        rows = []
        answers = {}
        now = self.tx.now_us
        for message_id, (peer, item, envelope_seq, ack) in self.pending.items():
            envelope = item.envelope
            receipt_seq = receipt_seqs[peer.node_id]
            rows.append(
                (
                    message_id,
                    envelope.sender,
                    envelope.kind,
                    envelope.case_id,
                    envelope.case_seq,
                    item.sha256,
                    now,
                    envelope_seq,
                    receipt_seq,
                    str(ack.outcome),
                )
            )
            answers[message_id] = DeliveryResult(message_id, receipt=receipts[peer.node_id])
        self.tx.sql.many(_INSERT_RECEIVED, rows)
        return answers


def _entry(item: SealedEnvelope) -> Entry:
    envelope = item.envelope
    return Entry(
        "in",
        "envelope",
        item.wire,
        peer=envelope.sender,
        message_id=envelope.message_id,
        kind=envelope.kind,
        case_id=envelope.case_id,
    )


def _refused(item: SealedEnvelope, error: FederationError) -> DeliveryResult:
    return DeliveryResult(
        item.envelope.message_id, error_code=status_code_number(error.code), error_message=error.message
    )


def _stored_receipt(message_id: str, data: bytes) -> DeliveryResult:
    return DeliveryResult(message_id, receipt=open_receipt(data), duplicate=True)


def _result(item: _Checked, answers: dict[str, DeliveryResult]) -> DeliveryResult:
    if item.error is not None or item.sealed is None:
        return _error_result(item)
    return answers[item.sealed.envelope.message_id]


def _error_result(item: _Checked) -> DeliveryResult:
    assert item.error is not None
    message_id = item.sealed.envelope.message_id if item.sealed is not None else ""
    return DeliveryResult(
        message_id, error_code=status_code_number(item.error.code), error_message=item.error.message
    )
