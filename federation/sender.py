"""Outbound delivery: one queue per peer, batches, backoff, parking.

Design, in one place:

* The outbox table is the truth. Each peer's queue keeps a window of that peer's undelivered
  rows in memory (oldest first), refilled from the database when it runs low; rows committed
  by this process are offered to the queue directly, so fresh messages leave at once without a
  database round trip.
* A dispatcher picks ready messages oldest first into batches (up to `max_batch` envelopes,
  `max_in_flight` calls at a time); a call that is answered hands its slot straight to the next
  ready batch, in the same task. A message about a case goes only when every earlier message
  of that case has been receipted; messages of other cases, and messages about no case, pass it
  by, so one stuck case never holds up the rest (no head-of-line blocking across cases).
* A call that fails as a whole for connection reasons (the peer is down, a timeout) backs the
  whole queue off exponentially with jitter, capped at `backoff_cap` (about five minutes), and
  counts against no message: a peer that is away for a day drains its backlog when it returns.
  Any inbound contact from the peer (a delivery, a hello) ends the backoff at once.
* A message the peer answers with an error counts a failed attempt, backs off on its own and,
  after `park_after` attempts, is parked: it stays in the outbox, shows in `tongban status` and
  `tongban outbox list --parked`, and later messages of its case wait behind it until an
  operator resends it (same message ID).
* Receipts are verified against the peer's keys and stored, with the delivered marks, in one
  transaction (which waits a few milliseconds for the answers of calls still out); duplicates
  of a delivery are harmless because the receiver dedupes by message ID and answers with the
  byte-identical first receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from sortedcontainers import SortedDict

from federation.client import PeerClient, RpcFailure
from federation.clock import STOP_SECONDS, now_us
from federation.envelope import verify_receipt
from federation.errors import status_code_number
from federation.handlers import Delivered
from federation.keys import SignatureError
from federation.outbox import Outbox, Outgoing
from federation.peers import PeerDirectory
from federation.store import Database, Tx
from federation.units import DeliveryResult, SignedReceipt

_log = logging.getLogger("tongban.federation.sender")
# While other calls are still out, receipts wait this long for theirs: one transaction for all.
_LINGER = 0.005


@dataclass(frozen=True)
class SenderSettings:
    max_batch: int = 64
    max_in_flight: int = 4
    # Use the unary Deliver call for single messages (per-message delivery).
    unary: bool = False
    window: int = 4096
    backoff_base: float = 0.5
    backoff_cap: float = 300.0
    park_after: int = 10
    rpc_timeout: float = 30.0
    # Re-read the outbox this often even when nothing announced a change.
    poll_interval: float = 30.0


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` consecutive failures: exponential, capped, jittered.

    The delay is drawn from [d/2, d] where d = min(cap, base * 2**(failures-1)), so retries of
    many nodes spread out instead of arriving together.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * (2.0 ** min(failures - 1, 32)))
    draw = rng.random() if rng is not None else random.random()  # noqa: S311 - jitter, not a secret
    return ceiling / 2 + draw * ceiling / 2


@dataclass
class _Completed:
    """A call's outcome, checked, waiting to be stored."""

    messages: list[Outgoing]
    accepted: list[tuple[SignedReceipt, list[Outgoing]]]
    failed: list[tuple[Outgoing, str]]


@dataclass
class QueueStatus:
    peer: str
    last_error: str = ""
    retry_at_us: int | None = None
    last_success_us: int | None = None
    in_flight: int = 0
    window: int = 0


class PeerQueue:
    """Delivery of this node's messages to one peer."""

    def __init__(
        self,
        peer_id: str,
        *,
        db: Database,
        outbox: Outbox,
        peers: PeerDirectory,
        client: Callable[[], PeerClient],
        settings: SenderSettings,
        refresh_keys: Callable[[str], Awaitable[None]],
        on_delivered: Callable[[list[Delivered]], None],
    ) -> None:
        self.peer_id = peer_id
        self._db = db
        self._outbox = outbox
        self._peers = peers
        self._client = client
        self._settings = settings
        self._refresh_keys = refresh_keys
        self._on_delivered = on_delivered
        # Undelivered messages not in flight, by outbox row ID (oldest first).
        self._window: SortedDict = SortedDict()
        self._in_flight: dict[int, Outgoing] = {}
        self._busy_cases: set[str] = set()
        self._blocked_cases: dict[str, set[int]] = {}
        self._cursor = 0
        self._exhausted = False
        self._refilling = False
        self._settled_during_refill: set[int] = set()
        self._calls = 0
        self._failures = 0
        self._retry_at = 0.0  # monotonic
        self._deferred = False  # some message waits for its own retry time
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._completed: list[_Completed] = []
        self._settler: asyncio.Task[None] | None = None
        # Receipts often cover many messages: verify each once, log each once.
        self._verdicts: dict[bytes, str | None] = {}
        self._receipt_seqs: dict[bytes, int] = {}
        self._last_poll = time.monotonic()
        self.status = QueueStatus(peer_id)

    # -- control ------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"sender-{self.peer_id}")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in [self._task, self._settler, *self._sends] if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_SECONDS)
            if stuck:
                _log.warning(
                    "shutdown: %d task(s) of the queue to %s ignored cancellation", len(stuck), self.peer_id
                )

    def offer(self, outgoing: Outgoing) -> None:
        """A message to this peer was committed (new, or resent by an operator)."""
        if outgoing.row_id in self._in_flight:
            return
        for ids in self._blocked_cases.values():
            ids.discard(outgoing.row_id)
        self._blocked_cases = {case: ids for case, ids in self._blocked_cases.items() if ids}
        if len(self._window) + len(self._in_flight) < self._settings.window:
            self._window[outgoing.row_id] = outgoing
            if self._exhausted and not self._refilling:
                self._cursor = max(self._cursor, outgoing.row_id)
        else:
            self._exhausted = False
        self._wake.set()

    def contact(self) -> bool:
        """The peer reached us: it is up, so stop backing off and try everything now.

        Returns True when the queue was backing off (its connection may be stale too).
        """
        if self._retry_at or self._deferred:
            self._failures = 0
            self._retry_at = 0.0
            self._deferred = False
            self.status.retry_at_us = None
            for message in self._window.values():
                message.next_attempt_us = 0
            self._wake.set()
            return True
        return False

    # -- the dispatcher -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            if not self._exhausted and len(self._window) + len(self._in_flight) < self._settings.window // 2:
                await self._refill()
                continue
            now = time.monotonic()
            if now - self._last_poll > self._settings.poll_interval:
                self._last_poll = now
                self._exhausted = False
            if self._retry_at > now:
                await self._sleep(self._retry_at - now)
                continue
            if self._calls >= self._settings.max_in_flight:
                await self._sleep(None)
                continue
            batch, next_due_us = self._pick()
            if batch:
                self._dispatch(batch)
                continue
            timeout = self._settings.poll_interval
            if next_due_us is not None:
                timeout = min(timeout, max(0.0, (next_due_us - now_us()) / 1e6))
            await self._sleep(timeout)

    async def _sleep(self, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _refill(self) -> None:
        self._refilling = True
        self._settled_during_refill = set()
        room = self._settings.window - len(self._window) - len(self._in_flight)
        try:
            rows = await self._db.read(
                lambda s: self._outbox.undelivered(s, self.peer_id, self._cursor, max(room, 1))
            )
        except Exception:
            _log.exception("reading the outbox for %s failed; retrying shortly", self.peer_id)
            self._refilling = False
            await asyncio.sleep(1.0)
            return
        self._refilling = False
        for row in rows:
            if row.row_id in self._settled_during_refill or row.row_id in self._in_flight:
                continue
            if row.parked:
                if row.case_id:
                    self._blocked_cases.setdefault(row.case_id, set()).add(row.row_id)
                continue
            self._window.setdefault(row.row_id, row)
        if rows:
            self._cursor = max(self._cursor, rows[-1].row_id)
            self._deferred = self._deferred or any(r.next_attempt_us > now_us() for r in rows)
        self._exhausted = len(rows) < max(room, 1)
        self.status.window = len(self._window)

    def _pick(self) -> tuple[list[Outgoing], int | None]:
        """Ready messages, oldest first, at most one per case; and when the next one is due."""
        limit = 1 if self._settings.unary else self._settings.max_batch
        now = now_us()
        batch: list[Outgoing] = []
        seen_cases: set[str] = set()
        next_due: int | None = None
        for message in self._window.values():
            case = message.case_id
            if case:
                if case in seen_cases or case in self._busy_cases or case in self._blocked_cases:
                    seen_cases.add(case)
                    continue
                seen_cases.add(case)
            if message.next_attempt_us > now:
                next_due = (
                    message.next_attempt_us if next_due is None else min(next_due, message.next_attempt_us)
                )
                continue
            batch.append(message)
            if len(batch) >= limit:
                break
        return batch, next_due

    def _dispatch(self, messages: list[Outgoing]) -> None:
        self._take(messages)
        task = asyncio.create_task(self._send(messages))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _take(self, messages: list[Outgoing]) -> None:
        """Move messages from the window into a call slot."""
        for message in messages:
            del self._window[message.row_id]
            self._in_flight[message.row_id] = message
            if message.case_id:
                self._busy_cases.add(message.case_id)
        self._calls += 1

    # -- calls --------------------------------------------------------------------------------

    async def _send(self, messages: list[Outgoing]) -> None:
        """Calls one after another in one slot: when a call is answered, the same task sends the
        next ready batch. With many unary calls in flight that saves a task and a wake-up of the
        dispatcher per message; the dispatcher wakes when nothing is ready, or a call failed."""
        while messages:
            messages = self._following() if await self._call(messages) else []

    def _following(self) -> list[Outgoing]:
        if not (self._stopping or self._retry_at) and self._calls < self._settings.max_in_flight:
            batch, _ = self._pick()
            if batch:
                self._take(batch)
                return batch
        self._wake.set()
        return []

    async def _call(self, messages: list[Outgoing]) -> bool:
        """One call and its answers checked (stored later, by the settler); True when the peer
        answered it, so that the slot may go on to the next batch."""
        answered = False
        try:
            try:
                results = await self._client().deliver(
                    [m.wire for m in messages],
                    unary=self._settings.unary,
                    timeout=self._settings.rpc_timeout,
                    message_ids=[m.message_id for m in messages],
                )
            except RpcFailure as failure:
                if failure.transient:
                    self._connection_failed(failure)
                    self._give_back(messages)
                    return False
                # The peer answered, but refused the call as a whole: every message failed once.
                self.status.last_error = f"{failure.code.name}: {failure.details}"
                results = [
                    DeliveryResult(
                        m.message_id,
                        error_code=status_code_number(failure.code),
                        error_message=failure.details,
                    )
                    for m in messages
                ]
            else:
                self._connection_ok()
                answered = True
        except asyncio.CancelledError:
            self._give_back(messages)
            raise
        except Exception as error:
            _log.exception("delivering to %s failed", self.peer_id)
            self.status.last_error = f"{type(error).__name__}: {error}"
            self._give_back(messages)
            self._retry_at = time.monotonic() + 1.0
            return False
        finally:
            self._calls -= 1
            if not answered:
                self._wake.set()
        try:
            accepted, failed = await self._check(messages, results)
        except BaseException:
            self._give_back(messages)
            self._wake.set()
            raise
        if failed:
            self.status.last_error = failed[-1][1]
        self._completed.append(_Completed(messages, accepted, failed))
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._settle_completed())
        return answered

    async def _settle_completed(self) -> None:
        """Store what calls brought back, all waiting results in one transaction at a time."""
        while self._completed:
            if self._calls:  # more answers are on their way: store them with these
                await asyncio.sleep(_LINGER)
            completed, self._completed = self._completed, []
            accepted = [pair for item in completed for pair in item.accepted]
            failed = [pair for item in completed for pair in item.failed]
            try:
                delivered, settled = await self._db.write(
                    partial(self._record, accepted=accepted, failed=failed)
                )
            except asyncio.CancelledError:
                for item in completed:
                    self._give_back(item.messages)
                raise
            except Exception as error:
                _log.exception("storing receipts from %s failed", self.peer_id)
                self.status.last_error = f"{type(error).__name__}: {error}"
                for item in completed:
                    self._give_back(item.messages)
                self._retry_at = time.monotonic() + 1.0
                continue
            for item in completed:
                self._settle(item.messages, settled)
            self._wake.set()
            if delivered:
                self._on_delivered(delivered)

    async def _check(
        self, messages: list[Outgoing], results: list[DeliveryResult]
    ) -> tuple[list[tuple[SignedReceipt, list[Outgoing]]], list[tuple[Outgoing, str]]]:
        """Verify each distinct receipt once; match acks to what was sent."""
        accepted: dict[bytes, tuple[SignedReceipt, list[Outgoing]]] = {}
        failed: list[tuple[Outgoing, str]] = []
        verified = self._verdicts
        for message, result in zip(messages, results, strict=True):
            if result.receipt is None:
                failed.append((message, f"peer answered {result.error_code}: {result.error_message}"))
                continue
            receipt = result.receipt
            if receipt.wire not in verified:
                verified[receipt.wire] = await self._verify(receipt)
                while len(verified) > 1024:
                    del verified[next(iter(verified))]
            problem = verified[receipt.wire]
            ack = receipt.receipt.ack_for(message.message_id)
            if problem is None and ack is None:
                problem = "the receipt does not mention this message"
            if problem is None and ack is not None and ack.envelope_sha256 != message.envelope_sha256:
                problem = "the receipt acknowledges different bytes than were sent"
            if problem is not None:
                failed.append((message, problem))
                continue
            accepted.setdefault(receipt.wire, (receipt, []))[1].append(message)
        return list(accepted.values()), failed

    async def _verify(self, receipt: SignedReceipt) -> str | None:
        peer = self._peers.require(self.peer_id)
        if receipt.receipt.receiver != self.peer_id:
            return f"receipt signed as {receipt.receipt.receiver}, not {self.peer_id}"
        if peer.keys.find(receipt.key_id) is None:
            await self._refresh_keys(self.peer_id)
            peer = self._peers.require(self.peer_id)
        try:
            verify_receipt(receipt, peer.keys)
        except SignatureError as error:
            return f"receipt does not verify: {error}"
        return None

    def _record(
        self,
        tx: Tx,
        accepted: list[tuple[SignedReceipt, list[Outgoing]]],
        failed: list[tuple[Outgoing, str]],
    ) -> tuple[list[Delivered], dict[int, Outgoing | None]]:
        """Store receipts and failures; returns what was delivered and each message's new state."""
        delivered: list[Delivered] = []
        settled: dict[int, Outgoing | None] = {}
        by_receipt: dict[bytes, tuple[SignedReceipt, list[Outgoing]]] = {}
        for receipt, sent in accepted:
            by_receipt.setdefault(receipt.wire, (receipt, []))[1].extend(sent)
        for wire_bytes, (receipt, sent) in by_receipt.items():
            known = self._receipt_seqs.get(wire_bytes)
            newly, seq = self._outbox.record_receipt(tx, self.peer_id, receipt, sent, known)
            delivered += newly
            if seq is not None and known is None:
                self._receipt_seqs[wire_bytes] = seq
                tx.on_rollback(partial(self._receipt_seqs.pop, wire_bytes, None))
                while len(self._receipt_seqs) > 1024:
                    del self._receipt_seqs[next(iter(self._receipt_seqs))]
            for message in sent:
                settled[message.row_id] = None
        failures = []
        for message, error in failed:
            delay = backoff_delay(
                message.attempts + 1, self._settings.backoff_base, self._settings.backoff_cap
            )
            failures.append((message, error, tx.now_us + int(delay * 1e6)))
        for updated in self._outbox.record_failures(tx, failures, self._settings.park_after):
            settled[updated.row_id] = updated
        return delivered, settled

    def _settle(self, messages: list[Outgoing], settled: dict[int, Outgoing | None]) -> None:
        for message in messages:
            self._in_flight.pop(message.row_id, None)
            if message.case_id:
                self._busy_cases.discard(message.case_id)
            outcome = settled.get(message.row_id, message)
            if self._refilling:
                self._settled_during_refill.add(message.row_id)
            if outcome is None:
                continue
            if outcome.parked:
                _log.warning(
                    "parked message %s to %s after %d attempts",
                    outcome.message_id,
                    self.peer_id,
                    outcome.attempts,
                )
                self.status.last_error = (
                    f"message {outcome.message_id} parked after {outcome.attempts} attempts"
                )
                if outcome.case_id:
                    self._blocked_cases.setdefault(outcome.case_id, set()).add(outcome.row_id)
                continue
            self._window[outcome.row_id] = outcome
            if outcome.next_attempt_us > now_us():
                self._deferred = True
        self.status.in_flight = len(self._in_flight)
        self.status.window = len(self._window)

    def _give_back(self, messages: list[Outgoing]) -> None:
        self._settle(messages, {m.row_id: m for m in messages})

    def _connection_failed(self, failure: RpcFailure) -> None:
        self._failures += 1
        delay = backoff_delay(self._failures, self._settings.backoff_base, self._settings.backoff_cap)
        self._retry_at = time.monotonic() + delay
        self.status.retry_at_us = now_us() + int(delay * 1e6)
        message = f"{failure.code.name}: {failure.details}"
        if message != self.status.last_error:
            _log.warning("cannot reach %s (%s); retrying in %.1fs", self.peer_id, message, delay)
        self.status.last_error = message

    def _connection_ok(self) -> None:
        if self._failures:
            _log.info("%s is reachable again", self.peer_id)
        self._failures = 0
        self._retry_at = 0.0
        self.status.retry_at_us = None
        self.status.last_success_us = now_us()
        self.status.last_error = ""
