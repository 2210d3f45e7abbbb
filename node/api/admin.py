"""NodeAdmin: status, signed pings through the outbox, key rotation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from sqlalchemy import select

from federation.clock import now_us
from federation.errors import InvalidArgument
from federation.handlers import Delivered
from federation.models import CHECKPOINTS
from node import __version__
from node.api import convert
from node.api.errors import refusals
from tongban_api.v1 import node_pb2, node_pb2_grpc

if TYPE_CHECKING:
    from node.runtime import Node

# Progress messages are streamed at most this often.
_PROGRESS_EVERY = 0.25


class NodeAdminServicer(node_pb2_grpc.NodeAdminServicer):
    def __init__(self, node: Node) -> None:
        self._node = node

    async def Status(
        self, request: node_pb2.StatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.StatusReply:
        node = self._node
        federation = node.federation
        states = await federation.peer_states()
        checkpoint = await node.db.read(
            lambda s: s.execute(
                select(CHECKPOINTS.c.seq, CHECKPOINTS.c.at_us).order_by(CHECKPOINTS.c.seq.desc()).limit(1)
            ).first()
        )
        return node_pb2.StatusReply(
            node_id=node.node_id,
            name=node.config.node.name,
            version=__version__,
            federation_endpoint=federation.endpoint,
            api_endpoint=node.addresses.api,
            metrics_endpoint=node.addresses.metrics,
            started_at=convert.ts(node.started_at_us),
            uptime_seconds=max(0.0, (now_us() - node.started_at_us) / 1e6),
            signing_key_id=federation.identity.signer.key_id,
            tls_fingerprint=federation.identity.tls.fingerprint,
            database=node.describe_database(),
            peers=[convert.peer_status(state) for state in states],
            log_head=federation.log.head.seq,
            log_checkpoint=checkpoint[0] if checkpoint else 0,
            log_checkpoint_at=convert.ts(checkpoint[1]) if checkpoint else None,
        )

    async def Ping(
        self, request: node_pb2.PingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[node_pb2.PingProgress]:
        federation = self._node.federation
        count = request.count or 1
        if request.payload_bytes > 1_000_000:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "ping payloads are limited to 1,000,000 bytes"
            )
        arrived: asyncio.Queue[list[Delivered]] = asyncio.Queue()
        stop_listening = federation.on_delivered(arrived.put_nowait)
        started = time.monotonic()
        try:
            async with refusals(context):
                if not request.peer:
                    raise InvalidArgument("name the peer to ping, for example `tongban ping cn-341522`")
                queued = await federation.ping(request.peer, count, request.payload_bytes)
            created = {item.message_id: item.created_at_us for item in queued}
            ids = [item.message_id for item in queued] if count <= 10_000 else []
            if request.no_wait:
                yield node_pb2.PingProgress(
                    queued=count,
                    total=count,
                    done=True,
                    message_ids=ids,
                    elapsed_seconds=time.monotonic() - started,
                )
                return
            yield node_pb2.PingProgress(queued=count, total=count, elapsed_seconds=time.monotonic() - started)
            rtts: list[float] = []
            deadline = started + (request.timeout_seconds or 60.0 + 0.01 * count)
            last_report = time.monotonic()
            while len(rtts) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"{len(rtts)} of {count} pings receipted in time; the rest stay in the outbox and "
                        "will be delivered (see `tongban outbox list` and `tongban status`)",
                    )
                try:
                    items = await asyncio.wait_for(arrived.get(), remaining)
                except TimeoutError:
                    continue
                for item in items:
                    sent_at = created.pop(item.message_id, None)
                    if sent_at is not None:
                        rtts.append((now_us() - sent_at) / 1000.0)
                if time.monotonic() - last_report >= _PROGRESS_EVERY and len(rtts) < count:
                    last_report = time.monotonic()
                    yield node_pb2.PingProgress(
                        queued=count, receipted=len(rtts), total=count, elapsed_seconds=last_report - started
                    )
            yield node_pb2.PingProgress(
                queued=count,
                receipted=len(rtts),
                total=count,
                done=True,
                rtt_ms=rtts,
                message_ids=ids,
                elapsed_seconds=time.monotonic() - started,
            )
        finally:
            stop_listening()

    async def RotateKeys(
        self, request: node_pb2.RotateKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> node_pb2.RotateKeysReply:
        async with refusals(context):
            previous, current, valid_from, told, missed = await self._node.federation.rotate_keys()
        return node_pb2.RotateKeysReply(
            previous_key_id=previous,
            key_id=current,
            valid_from=convert.ts(valid_from),
            peers_told=told,
            peers_not_reached=missed,
        )
