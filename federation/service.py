"""The federation of one node, assembled: what the rest of the node talks to.

`Federation` owns the peer directory, the message log, the outbox and its per-peer queues, the
inbox, peering and the Federation gRPC service. Domain code uses four things of it:

* `handlers.register(kind, apply, on_receipt)` to receive messages of a kind;
* `enqueue(tx, to=..., kind=..., payload=..., case_id=...)` inside its own transaction to send;
* `on_delivered(listener)` to hear, after commit, that receipts came back;
* `authenticate(context)` to know which peer calls a service it adds to the federation port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, update
from sqlmodel import col

from federation import tls, wire
from federation.client import PeerClient, RpcFailure
from federation.clock import STOP_SECONDS, now_us, within
from federation.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from federation.handlers import Delivered, Handlers
from federation.identity import NodeIdentity
from federation.inbox import Inbox
from federation.keys import SignatureError
from federation.log import Entry, MessageLog
from federation.metrics import FederationMetrics
from federation.models import INBOX, OUTBOX, PeerRow
from federation.outbox import Backlog, Draft, Outbox, Outgoing, new_message_ids
from federation.peering import Peering
from federation.peers import Invite, Peer, PeerDirectory
from federation.sender import PeerQueue, SenderSettings
from federation.server import FederationServicer, TrustStore
from federation.store import Database, Tx
from federation.units import LocalEvent, NodeInfo, Payload, SealedEnvelope
from federation.wire import ping_payload

_log = logging.getLogger("tongban.federation")

# Up to this many messages are sealed on the event loop; more go to threads in chunks.
_SEAL_HERE = 16

# The local events that change the peer directory (so that it, too, is derivable from the log).
PEER_SAVE = "peer.save"
INVITE_SAVE = "invite.save"


@dataclass(frozen=True)
class FederationSettings:
    sender: SenderSettings = field(default_factory=SenderSettings)
    max_message_bytes: int = 16 * 1024 * 1024
    max_batch_in: int = 1024
    hello_timeout: float = 5.0


@dataclass(frozen=True)
class PeerState:
    """A peer with its delivery figures, for `tongban status`."""

    peer: Peer
    last_contact_us: int | None
    pending: int
    parked: int
    sent: int
    received: int
    last_error: str
    retry_at_us: int | None
    oldest_pending_us: int | None


class Federation:
    def __init__(
        self,
        identity: NodeIdentity,
        db: Database,
        *,
        endpoint: str,
        settings: FederationSettings | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.db = db
        self.endpoint = endpoint
        self.settings = settings or FederationSettings()
        self.handlers = Handlers()
        self.peers = PeerDirectory(self.node_id)
        self.log = MessageLog(self.node_id)
        self.metrics = FederationMetrics(registry or CollectorRegistry())
        # Signing and verification in bulk (libsodium releases the GIL: a second core helps).
        self.crypto = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="crypto")
        self.outbox = Outbox(self.node_id, self.log, lambda: self.identity.signer, self.peers, self.handlers)
        self.inbox = Inbox(
            self.node_id,
            db=db,
            log=self.log,
            peers=self.peers,
            handlers=self.handlers,
            signer=lambda: self.identity.signer,
            refresh_keys=self.refresh_keys,
            crypto=self.crypto,
        )
        self.peering = Peering(
            identity=lambda: self.identity,
            endpoint=lambda: self.endpoint,
            db=db,
            peers=self.peers,
            record_peer=self.record_peer,
            record_invite=self.record_invite,
        )
        self.servicer = FederationServicer(
            peers=self.peers,
            inbox=self.inbox,
            on_contact=self._contact,
            join=self._accept_join,
            hello=self._accept_hello,
            max_batch=self.settings.max_batch_in,
        )
        self._queues: dict[str, PeerQueue] = {}
        self._clients: dict[str, PeerClient] = {}
        self._last_contact: dict[str, int] = {}
        self._last_refresh: dict[str, float] = {}
        self._delivery_listeners: list[Callable[[list[Delivered]], None]] = []
        self._started = False
        self._background: set[asyncio.Task[Any]] = set()
        self.handlers.register("ping", lambda tx, envelope: None, writes=False)
        self.handlers.register_local(PEER_SAVE, self._apply_peer)
        self.handlers.register_local(INVITE_SAVE, self._apply_invite)
        self.outbox.on_enqueue(self._offer)
        self.peers.on_change(self._peer_changed)
        self.inbox.on_received.append(lambda peer, n: self.metrics.received.labels(peer).inc(n))

    # -- life ---------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read peers and the log head from the database."""

        def load(session: Any) -> dict[str, int]:
            now = now_us()
            self.peers.load(session, now)
            self.log.load(session)
            return {
                row.node_id: row.last_contact_us
                for row in session.execute(select(PeerRow)).scalars()
                if row.last_contact_us
            }

        self._last_contact.update(await self.db.read(load))

    def server_credentials(self) -> grpc.ServerCredentials:
        return TrustStore(self.identity.tls, self.peers).credentials()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((self.servicer.handler(),))

    async def start(self) -> None:
        """Start a delivery queue for every active peer and greet them all."""
        self._started = True
        for peer in self.peers.active():
            self._queue(peer.node_id)
        self._spawn(self.greet_all())

    async def stop(self) -> None:
        self._started = False
        for task in list(self._background):
            task.cancel()
        for queue in list(self._queues.values()):
            await queue.stop()
        self._queues.clear()
        for client in list(self._clients.values()):
            await within(STOP_SECONDS, client.close(), f"closing the channel to {client.peer_id}")
        self._clients.clear()
        with contextlib.suppress(Exception):
            await self.save_contacts()
        self.crypto.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- sending ------------------------------------------------------------------------------

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
        """Queue a signed message to peer `to` inside the caller's transaction."""
        return self.outbox.enqueue(tx, to=to, kind=kind, payload=payload, case_id=case_id, headers=headers)

    def enqueue_many(self, tx: Tx, drafts: list[Draft]) -> list[Outgoing]:
        """Queue several messages in one go (cheaper per message than `enqueue` one by one)."""
        return self.outbox.enqueue_many(tx, drafts)

    def act(self, tx: Tx, kind: str, payload: Payload, case_id: str = "") -> Any:
        """Record a local event (a clerk's action) in the log and apply it, inside `tx`.

        Returns what the kind's local handler returns; if it raises, nothing is recorded.
        """
        apply = self.handlers.local(kind)
        if apply is None:
            raise ValueError(f"no local handler for {kind!r}; register one with handlers.register_local")
        event = LocalEvent(kind, payload, case_id)
        self.log.append(
            tx, Entry("local", "local", wire.local_event_bytes(event), kind=kind, case_id=case_id)
        )
        return apply(tx, event)

    def record_peer(self, tx: Tx, peer: Peer) -> Peer:
        """Save a peer (joined, learnt keys, removed, new access rules) as a logged local event."""
        return self.act(tx, PEER_SAVE, wire.peer_payload(peer))  # type: ignore[no-any-return]

    def record_invite(self, tx: Tx, invite: Invite) -> Invite:
        """Save an invitation (made or used) as a logged local event."""
        return self.act(tx, INVITE_SAVE, wire.invite_payload(invite))  # type: ignore[no-any-return]

    def _apply_peer(self, tx: Tx, event: LocalEvent) -> Peer:
        peer = wire.decode_peer(event.payload)
        self.peers.save(tx, peer)
        return peer

    def _apply_invite(self, tx: Tx, event: LocalEvent) -> Invite:
        invite = wire.decode_invite(event.payload)
        self.peers.save_invite(tx, invite)
        return invite

    def on_delivered(self, listener: Callable[[list[Delivered]], None]) -> Callable[[], None]:
        """Hear about stored receipts (after commit); returns a function that stops listening."""
        self._delivery_listeners.append(listener)
        return lambda: self._delivery_listeners.remove(listener)

    async def send(self, drafts: list[Draft]) -> list[Outgoing]:
        """Queue messages in a transaction of their own and return once it is committed.

        Messages about no case are sealed beforehand, with one batch signature per recipient and
        chunk, so the writer thread only stores them: a few right here, more in chunks on the
        signing threads, so that a large send does not hold up the event loop in one stretch.
        """
        for draft in drafts:
            self.peers.require(draft.to)
        loop = asyncio.get_running_loop()
        now = now_us()

        def seal_chunk(chunk: list[Draft]) -> list[SealedEnvelope | None]:
            ids = new_message_ids(len(chunk))
            caseless = [
                self.outbox.envelope(d, now, message_id=message_id)
                for d, message_id in zip(chunk, ids, strict=True)
                if not d.case_id
            ]
            sealed = iter(self.outbox.seal_many(caseless))
            return [None if d.case_id else next(sealed) for d in chunk]

        if len(drafts) <= _SEAL_HERE:
            sealed = seal_chunk(drafts)
            return await self.db.write(lambda tx: self.outbox.enqueue_many(tx, drafts, sealed))
        chunks = [drafts[start : start + 256] for start in range(0, len(drafts), 256)]
        sealed = [
            item
            for part in await asyncio.gather(
                *[loop.run_in_executor(self.crypto, seal_chunk, c) for c in chunks]
            )
            for item in part
        ]
        return await self.db.write(lambda tx: self.outbox.enqueue_many(tx, drafts, sealed))

    async def ping(self, peer_id: str, count: int, payload_bytes: int = 0) -> list[Outgoing]:
        """Queue `count` signed pings to a peer in one transaction."""
        if not 1 <= count <= 1_000_000:
            raise InvalidArgument("ping --count must be between 1 and 1,000,000")
        padding = bytes(payload_bytes)
        return await self.send(
            [Draft(peer_id, "ping", ping_payload(f"ping {i + 1}/{count}", padding)) for i in range(count)]
        )

    def _offer(self, outgoing: Outgoing) -> None:
        queue = self._queues.get(outgoing.peer)
        if queue is not None:
            queue.offer(outgoing)

    def _queue(self, peer_id: str) -> PeerQueue:
        queue = self._queues.get(peer_id)
        if queue is None:
            queue = PeerQueue(
                peer_id,
                db=self.db,
                outbox=self.outbox,
                peers=self.peers,
                client=lambda: self.client(peer_id),
                settings=self.settings.sender,
                refresh_keys=self.refresh_keys,
                on_delivered=self._delivered,
            )
            self._queues[peer_id] = queue
            if self._started:
                queue.start()
        return queue

    def _delivered(self, items: list[Delivered]) -> None:
        now = now_us()
        by_peer: dict[str, list[Delivered]] = {}
        for item in items:
            by_peer.setdefault(item.peer, []).append(item)
        for peer, delivered in by_peer.items():
            self.metrics.sent.labels(peer).inc(len(delivered))
            latency = self.metrics.latency.labels(peer)
            for item in delivered:
                latency.observe(max(0, now - item.created_at_us) / 1e6)
            rejected = sum(1 for item in delivered if item.ack.outcome != "applied")
            if rejected:
                self.metrics.rejected.labels(peer).inc(rejected)
        for listener in list(self._delivery_listeners):
            try:
                listener(items)
            except Exception:
                _log.exception("delivery listener failed")

    def client(self, peer_id: str) -> PeerClient:
        """The channel to a peer (made again when its endpoint or certificate changes)."""
        peer = self.peers.require(peer_id)
        client = self._clients.get(peer_id)
        if (
            client is None
            or client.endpoint != peer.endpoint
            or client.certificate_der != peer.tls_certificate
        ):
            if client is not None:
                self._spawn(client.close())
            client = PeerClient(
                self.identity.tls,
                peer_id,
                peer.endpoint,
                peer.tls_certificate,
                max_message_bytes=self.settings.max_message_bytes,
            )
            self._clients[peer_id] = client
        return client

    # -- contact and identity -----------------------------------------------------------------

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Peer:
        """The active peer calling a service on the federation port (aborts otherwise)."""
        return await self.servicer.authenticate(context)

    def _contact(self, peer: Peer) -> None:
        self._last_contact[peer.node_id] = now_us()
        queue = self._queues.get(peer.node_id)
        if queue is not None and queue.contact():
            # The channel may sit in gRPC's own reconnect backoff; a fresh one connects now.
            client = self._clients.pop(peer.node_id, None)
            if client is not None:
                self._spawn(client.close())

    async def save_contacts(self) -> None:
        contacts = dict(self._last_contact)

        def save(tx: Tx) -> None:
            for node_id, at in contacts.items():
                tx.session.execute(
                    update(PeerRow).where(col(PeerRow.node_id) == node_id).values(last_contact_us=at)
                )

        if contacts:
            await self.db.write(save)

    def info(self) -> NodeInfo:
        return self.identity.info(self.endpoint)

    async def greet_all(self) -> tuple[list[str], list[str]]:
        """Say hello to every active peer; returns (reached, not reached)."""
        peers = self.peers.active()
        results = await asyncio.gather(*[self.hello(p.node_id) for p in peers], return_exceptions=True)
        reached = [p.node_id for p, r in zip(peers, results, strict=True) if not isinstance(r, BaseException)]
        missed = [p.node_id for p, r in zip(peers, results, strict=True) if isinstance(r, BaseException)]
        return reached, missed

    async def hello(self, peer_id: str) -> Peer:
        """Exchange identities with a peer; learns its new keys, wakes its queue."""
        try:
            answer = await self.client(peer_id).hello(self.info(), timeout=self.settings.hello_timeout)
        except RpcFailure as failure:
            _log.info("hello to %s failed: %s", peer_id, failure)
            raise
        peer = self.peers.require(peer_id)
        self._contact(peer)
        return await self._update_identity(peer, answer)

    async def refresh_keys(self, peer_id: str) -> None:
        """Fetch a peer's keys now (at most every few seconds), e.g. after it rotated."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_refresh.get(peer_id, -1e9) < 5.0:
            return
        self._last_refresh[peer_id] = loop.time()
        with contextlib.suppress(RpcFailure, Unauthenticated):
            await self.hello(peer_id)

    async def join(self, token: str) -> Peer:
        """Peer with the node that made `token` (see federation.peering)."""
        peer = await self.peering.join(token)
        self._contact(peer)
        return peer

    async def _accept_join(self, invite: Invite, joiner: NodeInfo, proof: bytes) -> NodeInfo:
        answer = await self.peering.accept(invite, joiner, proof)
        self._last_contact[joiner.node_id] = now_us()
        return answer

    async def _accept_hello(self, peer: Peer, info: NodeInfo) -> NodeInfo:
        await self._update_identity(peer, info)
        return self.info()

    async def _update_identity(self, peer: Peer, info: NodeInfo) -> Peer:
        if info.node_id != peer.node_id:
            raise Unauthenticated(f"{peer.node_id} introduced itself as {info.node_id}")
        if tls.fingerprint(info.tls_certificate) != peer.tls_fingerprint:
            raise Unauthenticated(f"{peer.node_id} announced a TLS certificate other than the one pinned")
        try:
            info.keys.validate()
        except SignatureError as error:
            raise Unauthenticated(f"{peer.node_id} announced keys that do not hold: {error}") from None
        if not peer.keys.accepts_update(info.keys):
            raise Unauthenticated(
                f"{peer.node_id} announced a key history that does not continue the one pinned here; "
                "if it was set up again, remove it and peer anew"
            )
        changed = replace(
            peer, keys=info.keys, name=info.name or peer.name, endpoint=info.endpoint or peer.endpoint
        )
        if changed == peer:
            return peer
        if len(info.keys.keys) > len(peer.keys.keys):
            _log.info("%s rotated its signing key; now %s", peer.node_id, info.keys.current.key_id)
        await self.db.write(lambda tx: self.record_peer(tx, changed))
        return changed

    async def rotate_keys(self) -> tuple[str, str, int, list[str], list[str]]:
        """A new signing key; peers are told at once. (previous, new, valid_from, told, missed)."""
        previous = self.identity.signer.key_id
        self.identity = await asyncio.to_thread(self.identity.rotate)
        current = self.identity.keys.current
        _log.info("signing key rotated from %s to %s", previous, current.key_id)
        told, missed = await self.greet_all()
        return previous, current.key_id, current.valid_from_us, told, missed

    # -- operators ----------------------------------------------------------------------------

    async def remove_peer(self, node_id: str) -> Peer:
        peer = self.peers.get(node_id)
        if peer is None:
            self.peers.require(node_id)
        assert peer is not None
        if not peer.active:
            raise FailedPrecondition(f"{node_id} was already removed")
        removed = replace(peer, state="removed", removed_at_us=now_us())

        def remove(tx: Tx) -> int:
            self.record_peer(tx, removed)
            return self.outbox.park_peer(tx, node_id, f"peer {node_id} was removed")

        parked = await self.db.write(remove)
        _log.info("removed peer %s; %d undelivered messages parked", node_id, parked)
        return removed

    async def set_access(self, node_id: str, items: list[str], allow: bool) -> Peer:
        if not items:
            raise InvalidArgument("name at least one service item code, or '*' for all items")
        changed = self.peers.with_access(node_id, items, allow)
        await self.db.write(lambda tx: self.record_peer(tx, changed))
        return changed

    def _peer_changed(self, peer: Peer | None) -> None:
        if peer is None:
            return
        if peer.active:
            self._queue(peer.node_id)
            return
        queue = self._queues.pop(peer.node_id, None)
        if queue is not None:
            self._spawn(queue.stop())
        client = self._clients.pop(peer.node_id, None)
        if client is not None:
            self._spawn(client.close())

    async def refresh_gauges(self) -> dict[str, Backlog]:
        """Set the backlog and parked gauges of every peer (a scheduled job); returns the backlogs."""
        peers = [peer.node_id for peer in self.peers.all()]
        backlogs = await self.db.read(lambda s: {peer: self.outbox.backlog(s, peer) for peer in peers})
        for peer, backlog in backlogs.items():
            self.metrics.backlog.labels(peer).set(backlog.pending)
            self.metrics.parked.labels(peer).set(backlog.parked)
        return backlogs

    async def peer_states(self) -> list[PeerState]:
        """Every peer with its figures; the totals sent and received count the whole outbox and
        inbox, so this is for people asking (`tongban status`, `peer list`), not for a timer."""

        def totals(session: Any) -> tuple[dict[str, int], dict[str, int]]:
            sent = {
                peer: int(count)
                for peer, count in session.execute(
                    select(OUTBOX.c.peer, func.count())
                    .where(OUTBOX.c.state == "delivered")
                    .group_by(OUTBOX.c.peer)
                )
            }
            received = {
                sender: int(count)
                for sender, count in session.execute(
                    select(INBOX.c.sender, func.count()).group_by(INBOX.c.sender)
                )
            }
            return sent, received

        backlogs = await self.refresh_gauges()
        sent, received = await self.db.read(totals)
        states = []
        for peer in self.peers.all():
            queue = self._queues.get(peer.node_id)
            backlog = backlogs.get(peer.node_id) or Backlog()
            states.append(
                PeerState(
                    peer=peer,
                    last_contact_us=self._last_contact.get(peer.node_id),
                    pending=backlog.pending,
                    parked=backlog.parked,
                    sent=sent.get(peer.node_id, 0),
                    received=received.get(peer.node_id, 0),
                    last_error=queue.status.last_error if queue else "",
                    retry_at_us=queue.status.retry_at_us if queue else None,
                    oldest_pending_us=backlog.oldest_pending_us,
                )
            )
        return states
