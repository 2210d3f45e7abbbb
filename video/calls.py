"""Calls at one node: signaling with the peer, the call's state, its timers and its events.

A call's life at the caller's node (direction "out") and at the callee's (direction "in"):

    ringing ──answer──▶ answered ──first frame──▶ active ──hang-up──▶ ended
       │                    │                                  ▲
       └── decline, refused, ring timeout, cancelled ──────────┘ (and failures from any state)

Every step is either a federation message from the peer (`video.invite`, `.answer`, `.decline`,
`.hangup`, `.timeout`, all tied to the case so they arrive in order) or a local event that this
node records in its own log before it tells the peer (`video.call.*`); handlers change the rows
and queue the messages in the same transaction, and depend only on the event and `tx.now_us`
(the federation's determinism contract). So the message log holds every call's whole story.

The media endpoint (a `tongban video call` / `video answer` process) talks to its node through
the local API and keeps a stream of the call's events open; `subscribe` serves it. When that
stream breaks while the call goes on, the node ends the call with the peer by itself. Ring
timers run at both nodes: the caller's node gives up after the ring timeout and tells the
callee; the callee's node gives up a little later on its own, in case the caller's node is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from federation import Federation, Rejected, SealedEnvelope, Tx
from federation.clock import now_us
from federation.errors import FailedPrecondition, InvalidArgument, NotFound
from federation.handlers import Delivered
from federation.outbox import new_message_id
from federation.units import LocalEvent
from video import convert
from video.cases import CaseHolders
from video.models import CallRow, RecordingRow
from video.units import (
    ACTIVE,
    ANSWER,
    ANSWERED,
    ANSWERED_STATE,
    CONNECTED,
    DECLINE,
    DECLINED,
    ENDED,
    FINISH,
    HANGUP,
    INVITE,
    ONGOING,
    PLACE,
    RECORDED,
    RINGING,
    TIMED_OUT,
    TIMEOUT,
    Answer,
    Connected,
    Decline,
    Figures,
    Finished,
    Hangup,
    Invite,
    Placed,
    Recorded,
    TimedOut,
    Timeout,
)

_log = logging.getLogger("tongban.video")

# The callee's node waits this much longer than the ring timeout before it gives up alone.
CALLEE_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class CallSettings:
    ring_timeout: float = 60.0
    connect_timeout: float = 20.0
    media_timeout: float = 10.0


@dataclass(frozen=True)
class CallEvent:
    kind: str  # placed, ringing, answered, connected, ended, figures
    call: CallRow


def _new_call(invite: Invite, peer: str, direction: str, now_us: int) -> CallRow:
    return CallRow(
        call_id=invite.call_id,
        case_id=invite.case_id,
        peer=peer,
        direction=direction,
        state=RINGING,
        caller_shares=invite.caller_shares,
        caller_records=invite.caller_records,
        ring_timeout_seconds=invite.ring_timeout_seconds,
        offer_sdp=invite.offer_sdp,
        case_number=invite.case_number or invite.case_id,
        created_at_us=now_us,
    )


def _snapshot(row: CallRow) -> CallRow:
    return CallRow(**row.model_dump())


class Calls:
    def __init__(
        self,
        federation: Federation,
        holders: CaseHolders,
        settings: CallSettings | None = None,
    ) -> None:
        self.federation = federation
        self.db = federation.db
        self.node_id = federation.node_id
        self.holders = holders
        self.settings = settings or CallSettings()
        self._subscribers: dict[str, set[asyncio.Queue[CallEvent]]] = {}
        self._ringing_waiters: set[asyncio.Queue[CallRow]] = set()
        self._live: dict[str, Figures] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._attached: dict[str, int] = {}

    # -- wiring -------------------------------------------------------------------------------

    def register(self) -> None:
        handlers = self.federation.handlers
        handlers.register(INVITE, self._apply_invite, self._invite_receipt)
        handlers.register(ANSWER, self._apply_answer, self._answer_receipt)
        handlers.register(DECLINE, self._apply_decline)
        handlers.register(HANGUP, self._apply_hangup)
        handlers.register(TIMEOUT, self._apply_timeout)
        handlers.register_local(PLACE, self._local_place)
        handlers.register_local(ANSWERED, self._local_answer)
        handlers.register_local(DECLINED, self._local_decline)
        handlers.register_local(CONNECTED, self._local_connected)
        handlers.register_local(FINISH, self._local_finish)
        handlers.register_local(TIMED_OUT, self._local_timed_out)
        handlers.register_local(RECORDED, self._local_recorded)

    async def start(self) -> None:
        """After a restart: calls whose endpoint was lost end; ringing calls keep their timers."""
        rows = await self.db.read(
            lambda s: list(s.execute(select(CallRow).where(col(CallRow.state).in_(ONGOING))).scalars())
        )
        for row in rows:
            if row.state == RINGING and row.direction == "in":
                self._arm_ring_timer(row)
            else:
                await self.finish(row.call_id, "the node restarted during the call; its window lost the call")

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what endpoints and clerks do ---------------------------------------------------------

    async def place(
        self, case_id: str, offer_sdp: str, *, shares: bool, records: bool, label: str
    ) -> CallRow:
        """Ring the node holding the case (a local event, then the invite)."""
        if not case_id.strip():
            raise InvalidArgument(
                "name the case to call about, e.g. `tongban video call 320509-20261122-000123`"
            )
        if not offer_sdp.strip():
            raise InvalidArgument("a call needs the endpoint's SDP offer")
        call_id = new_message_id()

        def ring(tx: Tx) -> CallRow:
            # The holder is looked up in the transaction that records the call: one round trip.
            case = self.holders.find(tx.session, case_id)
            if case is None:
                raise NotFound(
                    f"{self.node_id} knows no case {case_id}; check the case number (`tongban case list`)"
                )
            if case.holder == self.node_id:
                raise FailedPrecondition(
                    f"{self.node_id} holds case {case.number} itself; the window at the node that accepted it "
                    "calls in (`tongban video call` there)"
                )
            self.federation.peers.require(case.holder)
            invite = Invite(
                call_id=call_id,
                case_id=case.case_id,
                case_number=case.number,
                offer_sdp=offer_sdp,
                caller_shares=shares,
                caller_records=records,
                ring_timeout_seconds=self.settings.ring_timeout,
                caller_label=label,
            )
            placed = Placed(case.holder, invite)
            return self.federation.act(tx, PLACE, convert.placed_payload(placed), case.case_id)  # type: ignore[no-any-return]

        return await self.db.write(ring)

    async def next_ringing(self, call_id: str, *, wait: bool, wait_seconds: float) -> CallRow:
        """A ringing call to answer: the one named, or the oldest (waiting for one if asked)."""
        if call_id:
            return await self.db.read(lambda session: self._ringing_here(session, call_id))
        waiter: asyncio.Queue[CallRow] = asyncio.Queue()
        self._ringing_waiters.add(waiter)
        try:
            oldest = await self.db.read(self._oldest_ringing)
            if oldest is not None:
                return oldest
            if not wait:
                raise NotFound(f"no call is ringing at {self.node_id}; use --auto to wait for the next one")
            try:
                return await asyncio.wait_for(waiter.get(), wait_seconds or None)
            except TimeoutError:
                raise NotFound(f"no call rang at {self.node_id} within {wait_seconds:.0f} s") from None
        finally:
            self._ringing_waiters.discard(waiter)

    @staticmethod
    def _oldest_ringing(session: Session) -> CallRow | None:
        return session.execute(
            select(CallRow)
            .where(col(CallRow.state) == RINGING, col(CallRow.direction) == "in")
            .order_by(col(CallRow.created_at_us))
            .limit(1)
        ).scalar()

    async def answer(self, call_id: str, answer_sdp: str, label: str) -> CallRow:
        if not answer_sdp.strip():
            raise InvalidArgument("an answer needs the endpoint's SDP")
        payload = convert.answered_payload(Answer(call_id, answer_sdp, label))
        return await self.db.write(
            lambda tx: self.federation.act(
                tx, ANSWERED, payload, self._ringing_here(tx.session, call_id).case_id
            )
        )

    async def decline(self, call_id: str, reason: str) -> CallRow:
        if not reason.strip():
            raise InvalidArgument("say why the call is declined (--reason), the caller sees it")
        payload = convert.decline_payload(Decline(call_id, reason.strip()))
        return await self.db.write(
            lambda tx: self.federation.act(
                tx, DECLINED, payload, self._ringing_here(tx.session, call_id).case_id
            )
        )

    def _ringing_here(self, session: Session, call_id: str) -> CallRow:
        """A call ringing at this node (checked in the transaction that answers or declines it)."""
        if not call_id:
            raise InvalidArgument("name the call (its ID is in `tongban video calls`)")
        row = session.get(CallRow, call_id)
        if row is None:
            raise NotFound(f"no call {call_id} at {self.node_id}; `tongban video calls` lists them")
        if row.direction != "in":
            raise FailedPrecondition(f"call {call_id} was placed from here; the other window answers it")
        if row.state != RINGING:
            raise FailedPrecondition(
                f"call {call_id} is {self._describe(row)}; only a ringing call can be answered or declined"
            )
        return row

    async def progress(self, call_id: str, connected: bool, figures: Figures | None) -> CallRow:
        """Live figures from the endpoint; the first report with `connected` marks the call active."""
        row = await self._require(call_id)
        if figures is not None and row.state in ONGOING:
            self._live[call_id] = figures
        if connected and row.state == ANSWERED_STATE:
            setup = figures.setup_seconds if figures else 0.0
            event = Connected(call_id, setup)
            row = await self.db.write(
                lambda tx: self.federation.act(tx, CONNECTED, convert.connected_payload(event), row.case_id)
            )
        return row

    async def finish(
        self, call_id: str, reason: str, outcome: str = "", figures: Figures | None = None
    ) -> CallRow:
        """The endpoint hangs up (or went away): end the call, tell the peer, keep the figures."""
        row = await self._require(call_id)
        if row.state == ENDED and figures is None:
            return row
        if not outcome:
            outcome = self._default_outcome(row)
        finished = Finished(call_id, reason.strip() or "hung up", outcome, figures)
        return await self.db.write(
            lambda tx: self.federation.act(tx, FINISH, convert.finished_payload(finished), row.case_id)
        )

    @staticmethod
    def _default_outcome(row: CallRow) -> str:
        if row.state == RINGING:
            return "cancelled"
        if row.state == ANSWERED_STATE:
            return "failed"
        return "completed"

    async def record(self, recorded: Recorded) -> None:
        await self.db.write(
            lambda tx: self.federation.act(tx, RECORDED, convert.recorded_payload(recorded), recorded.case_id)
        )

    async def case_id(self, ref: str) -> str:
        """The ID of the case `ref` names (an ID or a number); `ref` itself when unknown here."""
        case = await self.db.read(lambda s: self.holders.find(s, ref))
        return case.case_id if case is not None else ref

    async def list(self, case_ref: str = "", ongoing_only: bool = False, limit: int = 100) -> list[Any]:
        """(call, live figures or None, number of recordings), newest first."""
        case_id = await self.case_id(case_ref) if case_ref else ""

        def read(session: Session) -> list[tuple[CallRow, int]]:
            query = select(CallRow).order_by(col(CallRow.created_at_us).desc()).limit(limit)
            if case_id:
                query = query.where(col(CallRow.case_id) == case_id)
            if ongoing_only:
                query = query.where(col(CallRow.state).in_(ONGOING))
            rows = list(session.execute(query).scalars())
            counts: dict[str, int] = dict(
                session.execute(
                    select(col(RecordingRow.call_id), func.count())
                    .where(col(RecordingRow.call_id).in_([r.call_id for r in rows]))
                    .group_by(RecordingRow.call_id)
                ).all()
            )
            return [(row, int(counts.get(row.call_id, 0))) for row in rows]

        return [
            (row, self._live.get(row.call_id) if row.state in ONGOING else None, count)
            for row, count in await self.db.read(read)
        ]

    async def get(self, call_id: str) -> CallRow:
        return await self._require(call_id)

    async def _require(self, call_id: str) -> CallRow:
        if not call_id:
            raise InvalidArgument("name the call (its ID is in `tongban video calls`)")
        row = await self.db.read(lambda s: s.get(CallRow, call_id))
        if row is None:
            raise NotFound(f"no call {call_id} at {self.node_id}; `tongban video calls` lists them")
        return row

    def _describe(self, row: CallRow) -> str:
        if row.state == ENDED:
            return f"over ({row.outcome}: {row.end_reason})"
        return row.state

    # -- events for endpoints -----------------------------------------------------------------

    async def subscribe(self, call_id: str, role: str) -> AsyncIterator[CallEvent]:
        """The call's events until it ends. When the subscriber goes away (its endpoint died)
        while the call goes on, the node hangs up by itself."""
        queue: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._subscribers.setdefault(call_id, set()).add(queue)
        self._attached[call_id] = self._attached.get(call_id, 0) + 1
        try:
            row = await self._require(call_id)
            yield CallEvent("state", row)
            if row.state == ENDED:
                return
            while True:
                event = await queue.get()
                yield event
                if event.kind == "ended":
                    return
        finally:
            self._subscribers.get(call_id, set()).discard(queue)
            self._attached[call_id] -= 1
            if not self._attached[call_id]:
                del self._attached[call_id]
                self._spawn(self._endpoint_gone(call_id, role))

    async def _endpoint_gone(self, call_id: str, role: str) -> None:
        row = await self.db.read(lambda s: s.get(CallRow, call_id))
        if row is None or row.state == ENDED:
            return
        _log.info("the %s's endpoint of call %s went away; ending the call", role, call_id)
        with contextlib.suppress(Exception):
            await self.finish(
                call_id, f"the {role}'s window went away (its process ended without hanging up)", "failed"
            )

    def _publish(self, kind: str, row: CallRow) -> Callable[[], None]:
        snapshot = _snapshot(row)

        def publish() -> None:
            if snapshot.state == ENDED:
                self._live.pop(snapshot.call_id, None)
                self._cancel_timer(snapshot.call_id)
            for queue in list(self._subscribers.get(snapshot.call_id, ())):
                queue.put_nowait(CallEvent(kind, snapshot))
            if kind == "ringing" and snapshot.direction == "in":
                for waiter in list(self._ringing_waiters):
                    waiter.put_nowait(snapshot)

        return publish

    # -- timers -------------------------------------------------------------------------------

    def _arm_ring_timer(self, row: CallRow) -> None:
        grace = CALLEE_GRACE_SECONDS if row.direction == "in" else 0.0
        due_us = row.created_at_us + int((row.ring_timeout_seconds + grace) * 1e6)
        delay = max(0.0, (due_us - now_us()) / 1e6)
        loop = asyncio.get_running_loop()
        self._cancel_timer(row.call_id)
        self._timers[row.call_id] = loop.call_later(
            delay, lambda: self._spawn(self._ring_expired(row.call_id, row.direction == "out"))
        )

    def _cancel_timer(self, call_id: str) -> None:
        timer = self._timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    async def _ring_expired(self, call_id: str, tell_peer: bool) -> None:
        self._timers.pop(call_id, None)
        row = await self.db.read(lambda s: s.get(CallRow, call_id))
        if row is None or row.state != RINGING:
            return
        event = TimedOut(call_id, row.ring_timeout_seconds, tell_peer)
        with contextlib.suppress(Exception):
            await self.db.write(
                lambda tx: self.federation.act(tx, TIMED_OUT, convert.timed_out_payload(event), row.case_id)
            )

    # -- handlers: local events ---------------------------------------------------------------

    def _local_place(self, tx: Tx, event: LocalEvent) -> CallRow:
        placed = convert.read_placed(event.payload)
        invite = placed.invite
        if tx.session.get(CallRow, invite.call_id) is not None:
            raise FailedPrecondition(f"call {invite.call_id} exists already")
        row = _new_call(invite, placed.peer, "out", tx.now_us)
        sent = self.federation.enqueue(
            tx, to=placed.peer, kind=INVITE, payload=convert.invite_payload(invite), case_id=invite.case_id
        )
        row.signal_message_id = sent.message_id
        tx.session.add(row)
        tx.after_commit(self._publish("placed", row))
        snapshot = _snapshot(row)
        tx.after_commit(lambda: self._arm_ring_timer(snapshot))
        return snapshot

    def _local_answer(self, tx: Tx, event: LocalEvent) -> CallRow:
        answer = convert.read_answered(event.payload)
        row = self._ongoing(tx, answer.call_id, {RINGING}, "answered")
        row.state = ANSWERED_STATE
        row.answer_sdp = answer.answer_sdp
        row.answered_at_us = tx.now_us
        sent = self.federation.enqueue(
            tx, to=row.peer, kind=ANSWER, payload=convert.answer_payload(answer), case_id=row.case_id
        )
        row.signal_message_id = sent.message_id
        tx.session.add(row)
        tx.after_commit(self._publish("answered", row))
        return _snapshot(row)

    def _local_decline(self, tx: Tx, event: LocalEvent) -> CallRow:
        decline = convert.read_decline(event.payload)
        row = self._ongoing(tx, decline.call_id, {RINGING}, "declined")
        self._end(tx, row, "declined", f"declined by {self.node_id}: {decline.reason}", self.node_id)
        self.federation.enqueue(
            tx, to=row.peer, kind=DECLINE, payload=convert.decline_payload(decline), case_id=row.case_id
        )
        return _snapshot(row)

    def _local_connected(self, tx: Tx, event: LocalEvent) -> CallRow:
        connected = convert.read_connected(event.payload)
        row = self._ongoing(tx, connected.call_id, {ANSWERED_STATE}, "marked connected")
        row.state = ACTIVE
        row.connected_at_us = tx.now_us
        row.setup_seconds = connected.setup_seconds
        tx.session.add(row)
        tx.after_commit(self._publish("connected", row))
        return _snapshot(row)

    def _local_finish(self, tx: Tx, event: LocalEvent) -> CallRow:
        finished = convert.read_finished(event.payload)
        row = tx.session.get(CallRow, finished.call_id)
        if row is None:
            raise NotFound(f"no call {finished.call_id} here")
        if finished.figures is not None:
            row.figures = convert.figures_json(finished.figures)
        if row.state in ONGOING:
            self._end(tx, row, finished.outcome, finished.reason, self.node_id)
            hangup = Hangup(row.call_id, finished.reason, finished.outcome)
            self.federation.enqueue(
                tx, to=row.peer, kind=HANGUP, payload=convert.hangup_payload(hangup), case_id=row.case_id
            )
        else:
            tx.session.add(row)
            tx.after_commit(self._publish("figures", row))
        return _snapshot(row)

    def _local_timed_out(self, tx: Tx, event: LocalEvent) -> CallRow:
        timed_out = convert.read_timed_out(event.payload)
        row = self._ongoing(tx, timed_out.call_id, {RINGING}, "timed out")
        if timed_out.tell_peer:
            reason = f"nobody answered within {timed_out.waited_seconds:.0f} s"
        else:
            reason = (
                f"the caller's node {row.peer} did not end the ringing call; given up after the ring timeout"
            )
        self._end(tx, row, "missed", reason, self.node_id)
        if timed_out.tell_peer:
            timeout = Timeout(row.call_id, timed_out.waited_seconds)
            self.federation.enqueue(
                tx, to=row.peer, kind=TIMEOUT, payload=convert.timeout_payload(timeout), case_id=row.case_id
            )
        return _snapshot(row)

    def _local_recorded(self, tx: Tx, event: LocalEvent) -> RecordingRow:
        recorded = convert.read_recorded(event.payload)
        row = RecordingRow(
            recording_id=recorded.recording_id,
            call_id=recorded.call_id,
            case_id=recorded.case_id,
            sha256=recorded.sha256,
            size_bytes=recorded.size_bytes,
            duration_seconds=recorded.duration_seconds,
            complete=recorded.complete,
            note=recorded.note,
            streams=convert.streams_json(recorded.streams),
            container=recorded.container,
            recorded_at_us=tx.now_us,
        )
        tx.session.add(row)
        return RecordingRow(**row.model_dump())

    # -- handlers: messages from the peer -----------------------------------------------------

    def _apply_invite(self, tx: Tx, sealed: SealedEnvelope) -> None:
        envelope = sealed.envelope
        invite = convert.read_invite(envelope.payload)
        if invite.case_id != envelope.case_id:
            raise Rejected(
                f"the invite names case {invite.case_id} but travels with case {envelope.case_id}",
                InvalidArgument.code,
            )
        case = self.holders.find(tx.session, invite.case_id)
        holder = case.holder if case is not None else None
        if holder is None:
            raise Rejected(
                f"{self.node_id} knows no case {invite.case_id}; a call must be about a case this node holds",
                NotFound.code,
            )
        if holder != self.node_id:
            raise Rejected(
                f"{self.node_id} does not hold case {invite.case_id} (its holder is {holder}); call {holder}",
                FailedPrecondition.code,
            )
        if tx.session.get(CallRow, invite.call_id) is not None:
            raise Rejected(f"call {invite.call_id} exists already", FailedPrecondition.code)
        row = _new_call(invite, envelope.sender, "in", tx.now_us)
        row.peer_label = invite.caller_label
        tx.session.add(row)
        tx.after_commit(self._publish("ringing", row))
        snapshot = _snapshot(row)
        tx.after_commit(lambda: self._arm_ring_timer(snapshot))

    def _invite_receipt(self, tx: Tx, delivered: Delivered) -> None:
        row = self._find_sent(tx, delivered)
        if row is None or row.state != RINGING:
            return
        if delivered.ack.outcome == "applied":
            tx.after_commit(self._publish("ringing", row))
            return
        self._end(tx, row, "refused", f"{row.peer} refused the call: {delivered.ack.reason}", row.peer)

    def _apply_answer(self, tx: Tx, sealed: SealedEnvelope) -> None:
        answer = convert.read_answer(sealed.envelope.payload)
        row = self._from_peer(tx, sealed, answer.call_id)
        if row.state != RINGING:
            raise Rejected(f"call {row.call_id} is {self._describe(row)}; the answer came too late")
        row.state = ANSWERED_STATE
        row.answer_sdp = answer.answer_sdp
        row.peer_label = answer.callee_label
        row.answered_at_us = tx.now_us
        tx.session.add(row)
        tx.after_commit(self._publish("answered", row))

    def _answer_receipt(self, tx: Tx, delivered: Delivered) -> None:
        if delivered.ack.outcome == "applied":
            return
        row = self._find_sent(tx, delivered)
        if row is not None and row.state in ONGOING:
            self._end(
                tx, row, "failed", f"{row.peer} did not take the answer: {delivered.ack.reason}", row.peer
            )

    def _apply_decline(self, tx: Tx, sealed: SealedEnvelope) -> None:
        decline = convert.read_decline(sealed.envelope.payload)
        row = self._from_peer(tx, sealed, decline.call_id)
        if row.state in ONGOING:
            self._end(tx, row, "declined", f"declined by {row.peer}: {decline.reason}", row.peer)

    def _apply_hangup(self, tx: Tx, sealed: SealedEnvelope) -> None:
        hangup = convert.read_hangup(sealed.envelope.payload)
        row = self._from_peer(tx, sealed, hangup.call_id)
        if row.state in ONGOING:
            outcome = (
                hangup.outcome if hangup.outcome in ("completed", "cancelled", "failed") else "completed"
            )
            self._end(tx, row, outcome, f"{row.peer} hung up: {hangup.reason}", row.peer)

    def _apply_timeout(self, tx: Tx, sealed: SealedEnvelope) -> None:
        timeout = convert.read_timeout(sealed.envelope.payload)
        row = self._from_peer(tx, sealed, timeout.call_id)
        if row.state in ONGOING:
            reason = f"{row.peer} stopped ringing: nobody answered within {timeout.waited_seconds:.0f} s"
            self._end(tx, row, "missed", reason, row.peer)

    # -- helpers for handlers -----------------------------------------------------------------

    def _ongoing(self, tx: Tx, call_id: str, states: set[str], action: str) -> CallRow:
        row = tx.session.get(CallRow, call_id)
        if row is None:
            raise NotFound(f"no call {call_id} at {self.node_id}")
        if row.state not in states:
            raise FailedPrecondition(f"call {call_id} is {self._describe(row)}; it cannot be {action} now")
        return row

    def _from_peer(self, tx: Tx, sealed: SealedEnvelope, call_id: str) -> CallRow:
        row = tx.session.get(CallRow, call_id)
        if row is None or row.peer != sealed.envelope.sender:
            raise Rejected(
                f"{self.node_id} has no call {call_id} with {sealed.envelope.sender}", NotFound.code
            )
        return row

    def _find_sent(self, tx: Tx, delivered: Delivered) -> CallRow | None:
        return tx.session.execute(
            select(CallRow).where(col(CallRow.signal_message_id) == delivered.message_id)
        ).scalar()

    def _end(self, tx: Tx, row: CallRow, outcome: str, reason: str, by: str) -> None:
        row.state = ENDED
        row.outcome = outcome
        row.end_reason = reason
        row.ended_by = by
        row.ended_at_us = tx.now_us
        tx.session.add(row)
        tx.after_commit(self._publish("ended", row))
