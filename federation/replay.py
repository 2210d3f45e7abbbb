"""Replaying logged envelopes: the original signed bytes, sent again to a peer.

After a peer restored an old backup, or to reproduce a problem on a test node, an operator puts
messages through again with `tongban log replay`. The running node sends them (it holds the
TLS identity the receiver expects) exactly as they were signed, message IDs included, so the
receiver's inbox dedupes them: what it already holds it answers with its first receipt, byte
for byte; what it lost it applies now. Each message's outcome is reported:

* ``new``: the receiver recorded it now;
* ``duplicate``: the receiver had it already and answered with the receipt it gave the first
  time (it says so in its answer);
* ``rejected``: the receiver refused it (the reason says why);
* ``skipped``: not sent, because it is not this node's to send to that peer (the reason says
  why); with ``--dry-run`` nothing is sent and each sendable message is ``would send``.

New receipts are appended to this node's message log as received receipts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from federation.client import RpcFailure
from federation.envelope import open_envelope
from federation.store import Tx
from federation.units import LogRecord, Outcome, SealedEnvelope, SignedReceipt
from federation.wire import WireError

if TYPE_CHECKING:
    from federation.service import Federation

BATCH = 256


@dataclass(frozen=True)
class Replayed:
    seq: int
    message_id: str
    kind: str
    case_id: str
    outcome: str  # new | duplicate | rejected | skipped | would send
    reason: str = ""


def choose(
    node_id: str, to: str, records: list[tuple[int, LogRecord]]
) -> tuple[list[tuple[int, SealedEnvelope]], list[Replayed]]:
    """Which logged envelopes can go to `to` (in log order), and the others with a reason."""
    sendable: list[tuple[int, SealedEnvelope]] = []
    skipped: list[Replayed] = []
    for seq, record in records:
        if record.entry_type != "envelope":
            continue
        try:
            sealed = open_envelope(record.body)
        except WireError as error:
            skipped.append(Replayed(seq, "", "", "", "skipped", f"entry {seq} is damaged: {error}"))
            continue
        e = sealed.envelope
        reason = ""
        if e.sender != node_id:
            reason = f"signed by {e.sender}; only {e.sender} can deliver it"
        elif e.recipient != to:
            reason = f"addressed to {e.recipient}, not to {to}"
        if reason:
            skipped.append(Replayed(seq, e.message_id, e.kind, e.case_id, "skipped", reason))
        else:
            sendable.append((seq, sealed))
    return sendable, skipped


async def replay(
    federation: Federation,
    to: str,
    records: list[tuple[int, LogRecord]],
    known: dict[str, bytes],
    *,
    dry_run: bool = False,
    timeout: float = 60.0,
) -> AsyncIterator[list[Replayed]]:
    """Send the chosen envelopes in batches, in log order; yields outcomes batch by batch.

    `known` maps message IDs to the serialized receipt this node already holds for them.
    """
    federation.peers.require(to)
    sendable, skipped = choose(federation.node_id, to, records)
    if skipped:
        yield skipped
    for start in range(0, len(sendable), BATCH):
        chunk = sendable[start : start + BATCH]
        if dry_run:
            yield [_outcome(seq, s, "would send") for seq, s in chunk]
            continue
        try:
            results = await federation.client(to).deliver(
                [s.wire for _, s in chunk], unary=False, timeout=timeout
            )
        except RpcFailure as failure:
            yield [_outcome(seq, s, "rejected", f"{to} could not be reached: {failure}") for seq, s in chunk]
            continue
        fresh: dict[bytes, SignedReceipt] = {}
        outcomes = []
        for (seq, sealed), result in zip(chunk, results, strict=True):
            receipt = result.receipt
            if receipt is None:
                outcomes.append(_outcome(seq, sealed, "rejected", result.error_message))
                continue
            ack = receipt.receipt.ack_for(sealed.envelope.message_id)
            # The receiver says so; a receiver of an older version does not, but then the
            # receipt is byte for byte the one this node stored the first time.
            duplicate = result.duplicate or known.get(sealed.envelope.message_id) == receipt.wire
            if not duplicate:
                fresh[receipt.wire] = receipt
            if ack is not None and ack.outcome == Outcome.REJECTED:
                outcomes.append(_outcome(seq, sealed, "rejected", ack.reason))
            else:
                outcomes.append(_outcome(seq, sealed, "duplicate" if duplicate else "new"))
        if fresh:
            await federation.db.write(partial(_record, federation, to, list(fresh.values())))
        yield outcomes


def _record(federation: Federation, peer: str, receipts: list[SignedReceipt], tx: Tx) -> None:
    for receipt in receipts:
        federation.outbox.record_receipt(tx, peer, receipt, [])


def _outcome(seq: int, sealed: SealedEnvelope, outcome: str, reason: str = "") -> Replayed:
    e = sealed.envelope
    return Replayed(seq, e.message_id, e.kind, e.case_id, outcome, reason)
