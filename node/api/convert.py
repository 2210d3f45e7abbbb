"""Domain objects to local-API messages: the one module of node.api that builds protobufs."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from federation.models import OutboxRow
from federation.peers import Invite, Peer
from federation.service import PeerState
from tongban_api.v1 import node_pb2


def ts(us: int | None) -> timestamp_pb2.Timestamp | None:
    if not us:
        return None
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def peer_status(state: PeerState) -> node_pb2.PeerStatus:
    return node_pb2.PeerStatus(
        node_id=state.peer.node_id,
        name=state.peer.name,
        endpoint=state.peer.endpoint,
        state=state.peer.state,
        last_contact=ts(state.last_contact_us),
        pending=state.pending,
        parked=state.parked,
        sent=state.sent,
        received=state.received,
        last_error=state.last_error,
        retry_at=ts(state.retry_at_us),
        oldest_pending=ts(state.oldest_pending_us),
    )


def peer_detail(peer: Peer, state: PeerState | None = None) -> node_pb2.PeerDetail:
    keys = []
    for index, key in enumerate(peer.keys.keys):
        until = peer.keys.keys[index + 1].valid_from_us if index + 1 < len(peer.keys.keys) else None
        keys.append(
            node_pb2.SigningKeyInfo(
                key_id=key.key_id, valid_from=ts(key.valid_from_us), valid_until=ts(until)
            )
        )
    return node_pb2.PeerDetail(
        node_id=peer.node_id,
        name=peer.name,
        endpoint=peer.endpoint,
        state=peer.state,
        tls_fingerprint=peer.tls_fingerprint,
        keys=keys,
        allow=sorted(peer.allow),
        deny=sorted(peer.deny),
        added_at=ts(peer.added_at_us),
        last_contact=ts(state.last_contact_us) if state else None,
        status=peer_status(state) if state else None,
    )


def invite(item: Invite, now_us: int, token: str = "") -> node_pb2.Invite:
    return node_pb2.Invite(
        invite_id=item.invite_id,
        token=token,
        expires_at=ts(item.expires_at_us),
        state=item.state(now_us),
        used_by=item.used_by,
        used_at=ts(item.used_at_us),
        join_certificate_fingerprint=item.join_fingerprint,
    )


def outbox_message(row: OutboxRow) -> node_pb2.OutboxMessage:
    outcome = row.outcome
    if outcome == "rejected" and row.outcome_reason:
        outcome = f"rejected: {row.outcome_reason}"
    return node_pb2.OutboxMessage(
        message_id=row.message_id,
        peer=row.peer,
        kind=row.kind,
        case_id=row.case_id,
        case_seq=row.case_seq,
        state=row.state,
        attempts=row.attempts,
        created_at=ts(row.created_at_us),
        next_attempt_at=ts(row.next_attempt_us) if row.state == "pending" else None,
        delivered_at=ts(row.delivered_at_us),
        last_error=row.last_error,
        outcome=outcome,
    )
