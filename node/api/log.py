"""MessageLog: the node's message log for operators and auditors (`tongban log ...`).

Reading, verifying and exporting run on the node's read connection (verification's signature
checks on the federation's crypto threads); replay sends through the federation's own channel
to the peer, so the receiver sees this node's TLS identity, as with any delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import timestamp_pb2
from sqlalchemy import select
from sqlmodel import Session

from federation import audit, wire
from federation.clock import now_us
from federation.envelope import open_receipt
from federation.errors import InvalidArgument, NotFound
from federation.log import bodies
from federation.models import LOG, OUTBOX
from federation.replay import replay
from federation.wire import WireError
from node.api.convert import ts
from node.api.errors import refusals
from tongban_api.v1 import log_pb2, log_pb2_grpc

if TYPE_CHECKING:
    from node.runtime import Node

_PROGRESS_EVERY = 0.25
_CHUNK = 1 << 20


def log_filter(message: log_pb2.LogFilter) -> audit.LogFilter:
    def us(stamp: timestamp_pb2.Timestamp) -> int:
        return stamp.seconds * 1_000_000 + stamp.nanos // 1000

    if message.direction not in {"", "in", "out", "local"}:
        raise InvalidArgument("--direction is in, out or local")
    return audit.LogFilter(
        peer=message.peer,
        case_id=message.case_id,
        kind=message.kind,
        direction=message.direction,
        since_us=us(message.since) if message.HasField("since") else 0,
        until_us=us(message.until) if message.HasField("until") else 0,
        from_seq=message.from_seq,
    )


def by_case_number(session: Session, flt: audit.LogFilter) -> audit.LogFilter:
    """The filter with `--case` as the log knows it: a case number (320509-20261122-000001)
    becomes the case's ID, which the log's entries carry."""
    if not flt.case_id:
        return flt
    from node.cases.book import case_id_of

    return replace(flt, case_id=case_id_of(session, flt.case_id))


def entry_message(view: audit.EntryView) -> log_pb2.LogEntry:
    return log_pb2.LogEntry(
        seq=view.seq,
        recorded_at=ts(view.recorded_at_us),
        direction=view.direction,
        entry_type=view.entry_type,
        peer=view.peer,
        message_id=view.message_id,
        kind=view.kind,
        case_id=view.case_id,
        case_seq=view.case_seq,
        acks=view.acks,
        receipt_seq=view.receipt_seq,
        outcome=view.outcome,
        reason=view.reason,
        received_at=ts(view.received_at_us),
        created_at=ts(view.created_at_us),
    )


def detail_message(detail: audit.Detail) -> log_pb2.LogEntryDetail:
    import json

    return log_pb2.LogEntryDetail(
        entry=entry_message(detail.view),
        document_json=json.dumps(detail.document, ensure_ascii=False, indent=2),
        signature=detail.signature,
        hash=detail.hash,
        previous_hash=detail.previous_hash,
        related=detail.related,
    )


class MessageLogServicer(log_pb2_grpc.MessageLogServicer):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def ListEntries(
        self, request: log_pb2.ListLogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> log_pb2.ListLogReply:
        async with refusals(context):
            flt = log_filter(request.filter)
        limit = min(request.limit or 100, 100_000)
        views, total = await self._node.db.read(
            lambda s: audit.list_entries(s, by_case_number(s, flt), limit)
        )
        return log_pb2.ListLogReply(entries=[entry_message(v) for v in views], total=total)

    async def ShowEntry(
        self, request: log_pb2.ShowLogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> log_pb2.LogEntryDetail:
        keys = self._node.federation.identity.keys
        detail = await self._node.db.read(lambda s: audit.show_entry(s, request.entry.strip(), keys))
        if detail is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no log entry {request.entry!r}: give an entry number or a message ID (`tongban log ls`)",
            )
        assert detail is not None
        return detail_message(detail)

    async def Verify(
        self, request: log_pb2.VerifyLogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[log_pb2.VerifyProgress]:
        node = self._node
        keys = node.federation.identity.keys
        loop = asyncio.get_running_loop()
        checked = 0
        total = 0
        started = time.monotonic()
        progress: asyncio.Queue[int] = asyncio.Queue()

        def count(n: int) -> None:
            nonlocal checked
            checked += n
            if checked % 1000 == 0:
                loop.call_soon_threadsafe(progress.put_nowait, checked)

        def run(session: Any) -> audit.Report:
            nonlocal total
            chain = audit.database_chain(session, keys, max(1, request.from_seq))
            total = chain.total
            return audit.verify(chain, executor=node.federation.crypto, progress=count)

        task = asyncio.ensure_future(node.db.read(run))
        last = 0.0
        while not task.done():
            await asyncio.wait([task], timeout=_PROGRESS_EVERY)
            if time.monotonic() - last >= _PROGRESS_EVERY and not task.done():
                last = time.monotonic()
                yield log_pb2.VerifyProgress(checked=checked, total=total)
        report = task.result()
        yield log_pb2.VerifyProgress(
            checked=report.entries,
            total=total,
            done=True,
            ok=report.ok,
            problem_seq=report.problem_seq,
            problem=report.problem,
            checkpoints=report.checkpoints,
            signatures=report.signatures,
            elapsed_seconds=time.monotonic() - started,
        )

    async def Export(
        self, request: log_pb2.ExportLogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[log_pb2.BundleChunk]:
        node = self._node
        async with refusals(context):
            flt = log_filter(request.filter)
        await node.checkpoint()
        identity = node.federation.identity
        bundle = await node.db.read(
            lambda s: audit.export(
                s, identity.keys, by_case_number(s, flt), now_us=now_us(), signer=identity.signer
            )
        )
        data = wire.bundle_bytes(bundle)
        for start in range(0, len(data), _CHUNK):
            yield log_pb2.BundleChunk(data=data[start : start + _CHUNK])

    async def Replay(
        self, request: log_pb2.ReplayRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[log_pb2.ReplayOutcome]:
        node = self._node
        async with refusals(context):
            if not request.to:
                raise InvalidArgument("name the peer to replay to with --to, e.g. --to cn-341522")
            node.federation.peers.require(request.to)
            flt = log_filter(request.filter)
            if request.bundle:
                try:
                    bundle = wire.decode_bundle(request.bundle)
                except WireError as error:
                    raise InvalidArgument(str(error)) from None
                if bundle.node_id != node.node_id:
                    raise InvalidArgument(
                        f"the bundle is the log of {bundle.node_id}; replay it through that node, "
                        f"not {node.node_id} (a node may only deliver envelopes it signed)"
                    )
                records = audit.bundle_records(bundle)
                records = [(s, r) for s, r in records if _chosen(flt, s, r)]
                known = {mid: found.receipt.wire for mid, found in audit.bundle_receipts(bundle).items()}
            else:
                if not (flt.since_us or flt.from_seq or flt.peer or flt.case_id):
                    raise InvalidArgument("give a bundle, or choose messages with --since (or --peer/--case)")
                records, known = await node.db.read(lambda s: _own_records(s, flt))
        async with refusals(context):
            async for outcomes in replay(
                node.federation, request.to, records, known, dry_run=request.dry_run
            ):
                for item in outcomes:
                    yield log_pb2.ReplayOutcome(
                        message_id=item.message_id,
                        kind=item.kind,
                        case_id=item.case_id,
                        outcome=item.outcome,
                        reason=item.reason,
                        seq=item.seq,
                    )

    async def Rebuild(
        self, request: log_pb2.RebuildRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[log_pb2.RebuildProgress]:
        from node.rebuild import rebuild_running

        done = 0
        total = 0

        def advance(n: int, of: int | None) -> None:
            nonlocal done, total
            done += n
            total = of if of is not None else total

        async with refusals(context):
            if not request.into:
                raise InvalidArgument("name a new, empty folder with --into")
            task = asyncio.ensure_future(rebuild_running(self._node, request.into, advance))
            while not task.done():
                await asyncio.wait([task], timeout=_PROGRESS_EVERY)
                if not task.done():
                    yield log_pb2.RebuildProgress(done=done, total=total)
            result = task.result()
        yield log_pb2.RebuildProgress(
            done=done,
            total=total,
            result=log_pb2.RebuildReply(
                entries=result.entries,
                signatures=result.signatures,
                tables=result.tables,
                differences=[log_pb2.StateDifference(**d.as_json()) for d in result.differences],
                elapsed_seconds=result.elapsed_seconds,
            ),
        )


def _chosen(flt: audit.LogFilter, seq: int, record: Any) -> bool:
    view = audit.describe(seq, record)
    return flt.matches(seq, record, view.message_id, view.kind, view.case_id)


def _own_records(session: Any, flt: audit.LogFilter) -> tuple[list[Any], dict[str, bytes]]:
    conditions = audit._conditions(audit.LogFilter(**{**flt.__dict__, "direction": "out"}))
    rows = session.execute(
        select(LOG.c.seq, LOG.c.record).where(*conditions, LOG.c.entry_type == "envelope").order_by(LOG.c.seq)
    ).all()
    records = [(int(s), wire.decode_log_record(r)) for s, r in rows]
    ids = [audit.describe(s, r).message_id for s, r in records]
    where: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        for mid, seq in session.execute(
            select(OUTBOX.c.message_id, OUTBOX.c.receipt_seq).where(
                OUTBOX.c.message_id.in_(ids[start : start + 500])
            )
        ):
            if seq:
                where[mid] = int(seq)
    found = bodies(session, sorted(set(where.values())))
    known = {mid: open_receipt(found[seq]).wire for mid, seq in where.items() if seq in found}
    return records, known


__all__ = ["MessageLogServicer", "NotFound"]
