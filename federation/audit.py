"""Reading the message log: list, show, trace, verify and export, on a database or a bundle.

`federation.log` appends; this module reads. The same functions serve the running node (its
local API calls them on its read connection), the `tongban log` command on a stopped node's
home (its database opened read-only) and bundles (`federation.bundle`). A source of entries is
a `Chain`; `verify` walks one and checks, stopping at the first bad entry:

* the chain: each entry's hash is SHA-256(previous hash || record), the records are numbered
  without gaps, and each record's own number is its place;
* the signed checkpoints: each verifies with the node's key of its time, and the chain hashes to
  what each signed (the node's key history must hold, rotation endorsements included);
* every signature: envelopes sent (the node's keys) and received (the sender's keys), receipts
  given (the node's keys) and received (the receiver's keys), each within its key's window, and
  each message addressed as its direction says.

Signatures are the expensive part. They are collected per batch of entries and checked on a
thread pool (libsodium releases the GIL, so two threads use two cores), with one parsed
verifying key per public key.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing
from sqlalchemy import func, select
from sqlmodel import Session

from federation import wire
from federation.bundle import Bundle, BundleEntry
from federation.envelope import open_envelope, open_receipt, signed_statement
from federation.keys import (
    CLOCK_SKEW_US,
    CONTEXT_CHECKPOINT,
    CONTEXT_RECEIPT,
    KeyHistory,
    SignatureError,
    Signer,
)
from federation.log import GENESIS, chain_hash
from federation.models import CHECKPOINTS, INBOX, LOG, OUTBOX, PeerKeyRow
from federation.units import Checkpoint, LogRecord, SignedReceipt
from federation.wire import WireError

# -- filters and summaries --------------------------------------------------------------------


@dataclass(frozen=True)
class LogFilter:
    peer: str = ""
    case_id: str = ""
    kind: str = ""
    direction: str = ""
    since_us: int = 0
    until_us: int = 0
    from_seq: int = 0

    def matches(self, seq: int, record: LogRecord, message_id: str, kind: str, case_id: str) -> bool:
        return (
            (not self.peer or record.peer == self.peer)
            and (not self.case_id or case_id == self.case_id)
            and (not self.kind or kind == self.kind)
            and (not self.direction or record.direction == self.direction)
            and (not self.since_us or record.recorded_at_us >= self.since_us)
            and (not self.until_us or record.recorded_at_us < self.until_us)
            and seq >= self.from_seq
        )

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in asdict(self).items() if value]
        return ", ".join(parts) or "everything"


@dataclass
class EntryView:
    """One entry as `tongban log ls` and `log trace` show it."""

    seq: int
    recorded_at_us: int
    direction: str
    entry_type: str
    peer: str
    message_id: str = ""
    kind: str = ""
    case_id: str = ""
    case_seq: int = 0
    created_at_us: int = 0
    acks: int = 0
    receipt_seq: int = 0
    outcome: str = ""
    reason: str = ""
    received_at_us: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Located:
    """A receipt that acknowledges a message: where it is in the log and what it says."""

    seq: int
    receipt: SignedReceipt


def describe(seq: int, record: LogRecord) -> EntryView:
    """Decode what an entry holds (tolerating damage: a bad entry still gets a line)."""
    view = EntryView(seq, record.recorded_at_us, record.direction, record.entry_type, record.peer)
    try:
        if record.entry_type == "envelope":
            envelope = open_envelope(record.body).envelope
            view.message_id, view.kind = envelope.message_id, envelope.kind
            view.case_id, view.case_seq = envelope.case_id, envelope.case_seq
            view.created_at_us = envelope.created_at_us
        elif record.entry_type == "receipt":
            receipt = open_receipt(record.body).receipt
            view.acks = len(receipt.acks)
            view.received_at_us = receipt.received_at_us
            view.kind = "receipt"
        elif record.entry_type == "local":
            event = wire.decode_local_event(record.body)
            view.kind, view.case_id = event.kind, event.case_id
    except WireError as error:
        view.reason = f"damaged: {error}"
    return view


def _link(view: EntryView, receipts: dict[str, Located]) -> EntryView:
    found = receipts.get(view.message_id) if view.entry_type == "envelope" else None
    if found is not None:
        ack = found.receipt.receipt.ack_for(view.message_id)
        view.receipt_seq = found.seq
        view.received_at_us = found.receipt.receipt.received_at_us
        if ack is not None:
            view.outcome, view.reason = str(ack.outcome), ack.reason
    return view


# -- a database -------------------------------------------------------------------------------


def _conditions(flt: LogFilter) -> list[Any]:
    conditions: list[Any] = []
    if flt.peer:
        conditions.append(LOG.c.peer == flt.peer)
    if flt.case_id:
        conditions.append(LOG.c.case_id == flt.case_id)
    if flt.kind:
        conditions.append(LOG.c.kind == flt.kind)
    if flt.direction:
        conditions.append(LOG.c.direction == flt.direction)
    if flt.since_us:
        conditions.append(LOG.c.recorded_at_us >= flt.since_us)
    if flt.until_us:
        conditions.append(LOG.c.recorded_at_us < flt.until_us)
    if flt.from_seq:
        conditions.append(LOG.c.seq >= flt.from_seq)
    return conditions


def _receipts_for(session: Session, message_ids: list[str]) -> dict[str, Located]:
    """The stored receipts of these messages (sent: from the outbox; received: from the inbox)."""
    where: dict[str, int] = {}
    for start in range(0, len(message_ids), 500):
        chunk = message_ids[start : start + 500]
        for table in (OUTBOX, INBOX):
            for message_id, receipt_seq in session.execute(
                select(table.c.message_id, table.c.receipt_seq).where(table.c.message_id.in_(chunk))
            ):
                if receipt_seq:
                    where[message_id] = int(receipt_seq)
    if not where:
        return {}
    from federation.log import bodies

    found = bodies(session, sorted(set(where.values())))
    opened = {seq: open_receipt(body) for seq, body in found.items()}
    return {mid: Located(seq, opened[seq]) for mid, seq in where.items() if seq in opened}


def list_entries(session: Session, flt: LogFilter, limit: int) -> tuple[list[EntryView], int]:
    """Matching entries, oldest first (at most `limit`), and how many match in all."""
    conditions = _conditions(flt)
    total = session.execute(select(func.count()).select_from(LOG).where(*conditions)).scalar_one()
    rows = session.execute(
        select(LOG.c.seq, LOG.c.record).where(*conditions).order_by(LOG.c.seq).limit(limit)
    ).all()
    views = [describe(seq, wire.decode_log_record(record)) for seq, record in rows]
    receipts = _receipts_for(session, [v.message_id for v in views if v.message_id])
    return [_link(view, receipts) for view in views], int(total)


@dataclass
class Detail:
    view: EntryView
    document: dict[str, Any]
    signature: str
    hash: bytes
    previous_hash: bytes
    related: list[int] = field(default_factory=list)


def find_seq(session: Session, reference: str) -> int | None:
    """The entry a reference names: a sequence number, or a message ID (its envelope entry)."""
    if reference.isdigit():
        return int(reference)
    return session.execute(
        select(LOG.c.seq)
        .where(LOG.c.message_id == reference, LOG.c.entry_type == "envelope")
        .order_by(LOG.c.seq)
        .limit(1)
    ).scalar()


def show_entry(session: Session, reference: str, own_keys: KeyHistory) -> Detail | None:
    seq = find_seq(session, reference)
    if seq is None:
        return None
    row = session.execute(select(LOG.c.record, LOG.c.hash).where(LOG.c.seq == seq)).first()
    if row is None:
        return None
    previous = session.execute(select(LOG.c.hash).where(LOG.c.seq == seq - 1)).scalar() or GENESIS
    record = wire.decode_log_record(row[0])
    view = describe(seq, record)
    receipts = _receipts_for(session, [view.message_id] if view.message_id else [])
    _link(view, receipts)
    related = [receipts[view.message_id].seq] if view.message_id in receipts else []
    if record.entry_type == "receipt":
        ids = [ack.message_id for ack in open_receipt(record.body).receipt.acks]
        related = sorted(
            session.execute(
                select(LOG.c.seq).where(LOG.c.message_id.in_(ids[:500]), LOG.c.entry_type == "envelope")
            ).scalars()
        )
    return Detail(
        view,
        document(record),
        signature_status(record, own_keys, _peer_keys(session)),
        row[1],
        previous,
        related,
    )


def _peer_keys(session: Session) -> dict[str, KeyHistory]:
    rows = session.execute(
        select(
            PeerKeyRow.node_id,  # type: ignore[call-overload]
            PeerKeyRow.key_id,
            PeerKeyRow.public_key,
            PeerKeyRow.valid_from_us,
            PeerKeyRow.endorsement,
            PeerKeyRow.endorsement_signature,
        ).order_by(PeerKeyRow.node_id, PeerKeyRow.position)
    ).all()
    keys: dict[str, list[Any]] = {}
    for node_id, key_id, public, valid_from, endorsement, signature in rows:
        keys.setdefault(node_id, []).append(
            wire.public_key(key_id, public, valid_from, endorsement, signature)
        )
    return {node_id: KeyHistory(node_id, tuple(items)) for node_id, items in keys.items()}


# -- decoded documents ------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def document(record: LogRecord) -> dict[str, Any]:
    """The entry's body as readable JSON (payload bytes as base64, hashes as hex)."""
    head: dict[str, Any] = {
        "seq": record.seq,
        "recorded_at_us": record.recorded_at_us,
        "direction": record.direction,
        "type": record.entry_type,
        "peer": record.peer,
    }
    try:
        if record.entry_type == "envelope":
            sealed = open_envelope(record.body)
            e = sealed.envelope
            head["envelope"] = {
                "version": e.version,
                "message_id": e.message_id,
                "sender": e.sender,
                "recipient": e.recipient,
                "kind": e.kind,
                "case_id": e.case_id,
                "case_seq": e.case_seq,
                "created_at_us": e.created_at_us,
                "headers": dict(e.headers),
                "payload": {"type_url": e.payload.type_url, "bytes": len(e.payload.value)},
            }
            head["key_id"] = sealed.key_id
            head["envelope_sha256"] = sealed.sha256.hex()
            if sealed.batch is not None:
                head["batch"] = {
                    "index": sealed.batch.index,
                    "size": sealed.batch.size,
                    "path": [sibling.hex() for sibling in sealed.batch.path],
                }
        elif record.entry_type == "receipt":
            signed = open_receipt(record.body)
            r = signed.receipt
            head["receipt"] = {
                "receiver": r.receiver,
                "sender": r.sender,
                "received_at_us": r.received_at_us,
                "acks": [
                    {
                        "message_id": a.message_id,
                        "envelope_sha256": a.envelope_sha256.hex(),
                        "outcome": str(a.outcome),
                        "code": a.code,
                        "reason": a.reason,
                    }
                    for a in r.acks
                ],
            }
            head["key_id"] = signed.key_id
        elif record.entry_type == "local":
            event = wire.decode_local_event(record.body)
            head["local_event"] = {
                "kind": event.kind,
                "case_id": event.case_id,
                "payload": {"type_url": event.payload.type_url, "bytes": len(event.payload.value)},
            }
    except WireError as error:
        head["damaged"] = str(error)
    return head


def document_json(record: LogRecord) -> str:
    return json.dumps(document(record), ensure_ascii=False, indent=2)


# -- signatures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """One signature to check: by which public key, over which bytes."""

    seq: int
    public_key: bytes
    message: bytes  # context || data
    signature: bytes
    what: str


def _signature_check(
    seq: int, record: LogRecord, node_id: str, own: KeyHistory, peers: dict[str, KeyHistory]
) -> _Check | str | None:
    """What to verify for this entry; a string says what is wrong without verifying; None: nothing."""
    try:
        if record.entry_type == "envelope":
            sealed = open_envelope(record.body)
            e = sealed.envelope
            if record.direction == "out":
                if e.sender != node_id:
                    return f"outbound envelope {e.message_id} names {e.sender} as its sender, not {node_id}"
                keys = own
            else:
                if e.recipient != node_id:
                    return f"inbound envelope {e.message_id} is addressed to {e.recipient}, not {node_id}"
                keys = peers.get(e.sender, KeyHistory(e.sender))
            key = _key(keys, sealed.key_id, e.created_at_us)
            what = f"envelope {e.message_id} from {e.sender}"
            if sealed.batch is not None:
                what += f" (signed in a batch of {sealed.batch.size})"
            context, statement = signed_statement(sealed)
            return _Check(seq, key, context + statement, sealed.signature, what)
        if record.entry_type == "receipt":
            signed = open_receipt(record.body)
            r = signed.receipt
            if record.direction == "out":
                if r.receiver != node_id:
                    return f"receipt given by {node_id} names {r.receiver} as its signer"
                keys = own
            else:
                if r.sender != node_id:
                    return f"receipt from {r.receiver} acknowledges messages of {r.sender}, not {node_id}"
                keys = peers.get(r.receiver, KeyHistory(r.receiver))
            key = _key(keys, signed.key_id, r.received_at_us)
            what = f"receipt from {r.receiver}"
            return _Check(seq, key, CONTEXT_RECEIPT + signed.receipt_bytes, signed.signature, what)
        if record.entry_type == "local":
            wire.decode_local_event(record.body)
            return None
        return f"entry {seq} is of an unknown type"
    except WireError as error:
        return f"its body does not decode: {error}"
    except SignatureError as error:
        return str(error)


def _key(keys: KeyHistory, key_id: str, at_us: int) -> bytes:
    key = keys.find(key_id)
    if key is None:
        raise SignatureError(f"key {key_id} is not a known signing key of {keys.node_id}")
    start, until = keys.window(key_id)
    if at_us + CLOCK_SKEW_US < start or (until is not None and at_us >= until + CLOCK_SKEW_US):
        raise SignatureError(f"key {key_id} of {keys.node_id} was not in use at the time the message claims")
    return key.public_key


class _Verifier:
    """Checks batches of signatures, one parsed key per public key, on the given executor."""

    def __init__(self, executor: concurrent.futures.Executor | None, threads: int) -> None:
        self._executor = executor
        self._threads = threads
        self._keys: dict[bytes, nacl.signing.VerifyKey] = {}

    def _verify_key(self, public: bytes) -> nacl.signing.VerifyKey:
        key = self._keys.get(public)
        if key is None:
            key = self._keys[public] = nacl.signing.VerifyKey(public)
        return key

    def first_bad(self, checks: Sequence[_Check]) -> _Check | None:
        # Envelopes signed in one batch share one signature over one statement: check it once
        # (at its first entry, so that a bad one is reported where it first appears).
        seen: set[tuple[bytes, bytes, bytes]] = set()
        unique = []
        for check in checks:
            same = (check.public_key, check.message, check.signature)
            if same not in seen:
                seen.add(same)
                unique.append(check)
        checks = unique
        for check in checks:  # parse keys here, once, not on the worker threads
            self._verify_key(check.public_key)
        if self._executor is None or len(checks) < 64:
            return _first_bad(checks, self._keys)
        size = -(-len(checks) // self._threads)
        parts = [checks[i : i + size] for i in range(0, len(checks), size)]
        found = [f for f in self._executor.map(lambda part: _first_bad(part, self._keys), parts) if f]
        return min(found, key=lambda c: c.seq) if found else None


def _first_bad(checks: Sequence[_Check], keys: dict[bytes, nacl.signing.VerifyKey]) -> _Check | None:
    for check in checks:
        try:
            keys[check.public_key].verify(check.message, check.signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return check
    return None


def signature_status(record: LogRecord, own: KeyHistory, peers: dict[str, KeyHistory]) -> str:
    check = _signature_check(record.seq, record, own.node_id, own, peers)
    if check is None:
        return "not signed (a local event; the hash chain and checkpoints cover it)"
    if isinstance(check, str):
        return f"bad: {check}"
    if _Verifier(None, 1).first_bad([check]) is not None:
        return f"bad: the signature of the {check.what} does not verify"
    return "valid"


# -- verification -----------------------------------------------------------------------------


@dataclass
class Chain:
    """A run of log entries to verify, with what is needed to check it."""

    node_id: str
    own_keys: KeyHistory
    peer_keys: dict[str, KeyHistory]
    first_seq: int
    previous_hash: bytes
    total: int
    rows: Callable[[], Iterator[tuple[int, bytes, bytes]]]
    checkpoints: list[tuple[int, bytes]]  # (seq, serialized SignedCheckpoint)
    # A bundle must end on a checkpoint; a live log may run on past its newest one.
    tail_must_be_signed: bool = False


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0
    signatures: int = 0
    head_seq: int = 0
    problem_seq: int = 0
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def fail(self, seq: int, what: str) -> Report:
        self.problem_seq, self.problem = seq, what
        return self


def database_chain(session: Session, own_keys: KeyHistory, from_seq: int = 1, batch: int = 2000) -> Chain:
    """The whole log of a database (checked from `from_seq`, linked to the entry before it)."""
    from_seq = max(1, from_seq)
    previous = GENESIS
    if from_seq > 1:
        previous = session.execute(select(LOG.c.hash).where(LOG.c.seq == from_seq - 1)).scalar() or GENESIS
    total = session.execute(select(func.count()).select_from(LOG).where(LOG.c.seq >= from_seq)).scalar_one()

    def rows() -> Iterator[tuple[int, bytes, bytes]]:
        after = from_seq - 1
        while True:
            chunk = session.execute(
                select(LOG.c.seq, LOG.c.record, LOG.c.hash)
                .where(LOG.c.seq > after)
                .order_by(LOG.c.seq)
                .limit(batch)
            ).all()
            if not chunk:
                return
            yield from ((int(s), r, h) for s, r, h in chunk)
            after = chunk[-1][0]

    checkpoints = [
        (int(seq), signed)
        for seq, signed in session.execute(
            select(CHECKPOINTS.c.seq, CHECKPOINTS.c.signed).order_by(CHECKPOINTS.c.seq)
        )
    ]
    return Chain(
        own_keys.node_id,
        own_keys,
        _peer_keys(session),
        from_seq,
        previous,
        int(total),
        rows,
        checkpoints,
    )


def bundle_chain(bundle: Bundle) -> Chain:
    checkpoints = []
    for signed in bundle.checkpoints:
        try:
            data, _, _ = wire.decode_signed_checkpoint(signed)
            checkpoints.append((wire.decode_checkpoint(data).seq, signed))
        except WireError:
            checkpoints.append((0, signed))
    first = bundle.entries[0].seq if bundle.entries else 1
    return Chain(
        bundle.node_id,
        bundle.keys,
        {history.node_id: history for history in bundle.peer_keys},
        first,
        bundle.previous_hash,
        len(bundle.entries),
        lambda: iter([(e.seq, e.record, e.hash) for e in bundle.entries]),
        sorted(checkpoints),
        tail_must_be_signed=True,
    )


def _open_checkpoint(signed: bytes, own: KeyHistory) -> Checkpoint:
    data, signature, key_id = wire.decode_signed_checkpoint(signed)
    checkpoint = wire.decode_checkpoint(data)
    own.verify(CONTEXT_CHECKPOINT, data, signature, key_id, checkpoint.at_us)
    return checkpoint


def verify(
    chain: Chain,
    *,
    executor: concurrent.futures.Executor | None = None,
    threads: int = 2,
    progress: Callable[[int], None] | None = None,
    batch: int = 2048,
) -> Report:
    """Check the chain, the checkpoints and every signature; the report names the first bad entry."""
    report = Report()
    try:
        chain.own_keys.validate()
    except SignatureError as error:
        return report.fail(chain.first_seq, f"the key history of {chain.node_id} does not hold: {error}")
    signed: dict[int, bytes] = {}  # seq -> the hash a valid checkpoint signed
    for seq, data in chain.checkpoints:
        try:
            checkpoint = _open_checkpoint(data, chain.own_keys)
        except (WireError, SignatureError) as error:
            return report.fail(seq, f"the checkpoint at entry {seq} does not verify (forged?): {error}")
        if checkpoint.node_id != chain.node_id or checkpoint.seq != seq:
            return report.fail(seq, f"the checkpoint at entry {seq} is for another log")
        signed[seq] = checkpoint.hash
    start_anchor = chain.first_seq - 1
    if chain.tail_must_be_signed and start_anchor > 0 and signed.get(start_anchor) != chain.previous_hash:
        return report.fail(
            chain.first_seq,
            f"entry {chain.first_seq} does not link to a signed checkpoint of entry {start_anchor}",
        )
    verifier = _Verifier(executor, threads)
    expected, previous = chain.first_seq, chain.previous_hash
    pending: list[_Check] = []
    chain_problem: tuple[int, str] | None = None

    def flush() -> tuple[int, str] | None:
        bad = verifier.first_bad(pending)
        report.signatures += len(pending)
        pending.clear()
        if bad is not None:
            return bad.seq, f"entry {bad.seq}: the signature of the {bad.what} does not verify"
        return None

    for seq, data, stored in chain.rows():
        problem = _check_entry(chain, seq, expected, previous, data, stored, signed, pending)
        if problem is not None:
            chain_problem = problem
            break
        previous = stored
        expected += 1
        report.entries += 1
        if len(pending) >= batch:
            found = flush()
            if found is not None:
                return report.fail(*found)
        if progress is not None:
            progress(1)
    found = flush()
    if found is not None and (chain_problem is None or found[0] < chain_problem[0]):
        return report.fail(*found)
    if chain_problem is not None:
        return report.fail(*chain_problem)
    report.head_seq = expected - 1
    beyond = [seq for seq in signed if seq > report.head_seq]
    if beyond:
        return report.fail(
            report.head_seq + 1,
            f"a checkpoint says the log reached entry {max(beyond)}, but it ends at {report.head_seq}: "
            "entries were removed from the end",
        )
    report.checkpoints = len([seq for seq in signed if seq >= start_anchor])
    if chain.tail_must_be_signed and report.head_seq >= chain.first_seq and report.head_seq not in signed:
        return report.fail(
            report.head_seq, f"entries up to {report.head_seq} are not covered by a signed checkpoint"
        )
    return report


def _check_entry(
    chain: Chain,
    seq: int,
    expected: int,
    previous: bytes,
    data: bytes,
    stored: bytes,
    signed: dict[int, bytes],
    pending: list[_Check],
) -> tuple[int, str] | None:
    if seq != expected:
        if seq > expected:
            return expected, f"entry {expected} is missing (the next entry is {seq})"
        return seq, f"entry {seq} is out of order (expected entry {expected})"
    try:
        record = wire.decode_log_record(data)
    except WireError as error:
        return seq, f"entry {seq} is not a log record: {error}"
    if record.seq != seq:
        return seq, f"entry {seq} holds the record of entry {record.seq} (moved or copied)"
    if chain_hash(previous, data) != stored:
        return seq, f"entry {seq} does not match its hash: it was changed, inserted or moved"
    if seq in signed and signed[seq] != stored:
        return seq, f"entry {seq} differs from what the checkpoint at {seq} signed"
    check = _signature_check(seq, record, chain.node_id, chain.own_keys, chain.peer_keys)
    if isinstance(check, str):
        return seq, f"entry {seq}: {check}"
    if check is not None:
        pending.append(check)
    return None


# -- export -----------------------------------------------------------------------------------


def export(
    session: Session,
    own_keys: KeyHistory,
    flt: LogFilter,
    *,
    now_us: int,
    signer: Signer | None = None,
) -> Bundle:
    """A bundle of the entries `flt` chooses, stretched to the signed checkpoints around them.

    When the newest chosen entry lies past the newest checkpoint, `signer` (the node's current
    key) signs one for the bundle; without a signer the bundle ends at the newest checkpoint.
    """
    chosen = set(session.execute(select(LOG.c.seq).where(*_conditions(flt))).scalars())
    checkpoints = dict(
        (int(seq), signed) for seq, signed in session.execute(select(CHECKPOINTS.c.seq, CHECKPOINTS.c.signed))
    )
    head = int(session.execute(select(func.max(LOG.c.seq))).scalar() or 0)
    if not chosen:
        return Bundle(own_keys.node_id, now_us, own_keys, selection=flt.describe())
    low, high = min(chosen), max(chosen)
    start = max((seq for seq in checkpoints if seq < low), default=0) + 1
    end = min((seq for seq in checkpoints if seq >= high), default=0)
    if not end:
        end = head if signer is not None else max((s for s in checkpoints if s >= start), default=0)
    rows = session.execute(
        select(LOG.c.seq, LOG.c.record, LOG.c.hash)
        .where(LOG.c.seq >= start, LOG.c.seq <= end)
        .order_by(LOG.c.seq)
    ).all()
    entries = tuple(BundleEntry(int(s), r, h, int(s) in chosen) for s, r, h in rows)
    previous = GENESIS
    if start > 1:
        previous = session.execute(select(LOG.c.hash).where(LOG.c.seq == start - 1)).scalar() or GENESIS
    kept = [checkpoints[s] for s in sorted(checkpoints) if start - 1 <= s <= end]
    if entries and entries[-1].seq not in checkpoints and signer is not None:
        last = entries[-1]
        data = wire.checkpoint_bytes(Checkpoint(own_keys.node_id, last.seq, last.hash, now_us))
        kept.append(wire.signed_checkpoint_bytes(data, signer.sign(CONTEXT_CHECKPOINT, data), signer.key_id))
    peers_needed = {wire.decode_log_record(e.record).peer for e in entries} - {""}
    peer_keys = _peer_keys(session)
    return Bundle(
        node_id=own_keys.node_id,
        exported_at_us=now_us,
        keys=own_keys,
        peer_keys=tuple(peer_keys[p] for p in sorted(peers_needed) if p in peer_keys),
        previous_hash=previous,
        entries=entries,
        checkpoints=tuple(kept),
        selection=flt.describe(),
    )


# -- bundles as a source of entries -----------------------------------------------------------


def bundle_records(bundle: Bundle) -> list[tuple[int, LogRecord]]:
    return [(e.seq, wire.decode_log_record(e.record)) for e in bundle.selected]


def bundle_receipts(bundle: Bundle) -> dict[str, Located]:
    found: dict[str, Located] = {}
    for entry in bundle.entries:
        record = wire.decode_log_record(entry.record)
        if record.entry_type != "receipt":
            continue
        try:
            signed = open_receipt(record.body)
        except WireError:
            continue
        for ack in signed.receipt.acks:
            found.setdefault(ack.message_id, Located(entry.seq, signed))
    return found


def list_bundle(bundle: Bundle, flt: LogFilter, limit: int) -> tuple[list[EntryView], int]:
    receipts = bundle_receipts(bundle)
    views = []
    for seq, record in bundle_records(bundle):
        view = describe(seq, record)
        if flt.matches(seq, record, view.message_id, view.kind, view.case_id):
            views.append(_link(view, receipts))
    return views[:limit], len(views)


def show_bundle_entry(bundle: Bundle, reference: str) -> Detail | None:
    receipts = bundle_receipts(bundle)
    previous = bundle.previous_hash
    peer_keys = {h.node_id: h for h in bundle.peer_keys}
    for entry in bundle.entries:
        record = wire.decode_log_record(entry.record)
        view = describe(entry.seq, record)
        if str(entry.seq) == reference or (view.message_id == reference and record.entry_type == "envelope"):
            _link(view, receipts)
            related = [view.receipt_seq] if view.receipt_seq else []
            return Detail(
                view,
                document(record),
                signature_status(record, bundle.keys, peer_keys),
                entry.hash,
                previous,
                related,
            )
        previous = entry.hash
    return None


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
