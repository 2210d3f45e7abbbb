"""The peers this node knows: identities, pinned certificates, keys and access rules.

The directory keeps every peer in memory (a county node has tens of peers, a province node a
few thousand at most) and writes through to the peers tables inside the caller's transaction;
memory changes only after the commit. It is also the TLS trust store of the federation port:
the pinned certificates of active peers plus the join certificates of recent invitations.
Listeners hear about every change (the sender opens or closes queues, the server refreshes its
trust roots).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import delete
from sqlmodel import Session, col, select

from federation import tls, wire
from federation.errors import FailedPrecondition, NotFound
from federation.keys import KeyHistory
from federation.models import AccessRuleRow, InviteRow, PeerKeyRow, PeerRow
from federation.store import Tx
from federation.units import NodeInfo

# Invitations stay in the trust store a while after they expire or are used, so that a late or
# repeated join gets a clear "expired" or "already used" instead of a refused TLS handshake.
INVITE_GRACE_US = 24 * 3600 * 1_000_000


@dataclass(frozen=True)
class Peer:
    node_id: str
    name: str
    endpoint: str
    tls_certificate: bytes  # DER
    keys: KeyHistory
    state: str = "active"
    added_at_us: int = 0
    removed_at_us: int | None = None
    joined_via: str = ""
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()

    @property
    def tls_fingerprint(self) -> str:
        return tls.fingerprint(self.tls_certificate)

    @property
    def active(self) -> bool:
        return self.state == "active"

    def allows(self, item: str) -> bool:
        """May this peer send cases for / request certificates of `item`? Deny wins over allow."""
        if item in self.deny or "*" in self.deny:
            return False
        return item in self.allow or "*" in self.allow

    def info(self) -> NodeInfo:
        return NodeInfo(self.node_id, self.name, self.endpoint, self.tls_certificate, self.keys)


@dataclass(frozen=True)
class Invite:
    invite_id: str
    join_certificate: bytes
    join_fingerprint: str
    created_at_us: int
    expires_at_us: int
    used_at_us: int | None = None
    used_by: str = ""

    def state(self, now: int) -> str:
        if self.used_at_us is not None:
            return "used"
        return "expired" if now >= self.expires_at_us else "open"


def _invite(row: InviteRow) -> Invite:
    return Invite(
        row.invite_id,
        row.join_certificate,
        row.join_fingerprint,
        row.created_at_us,
        row.expires_at_us,
        row.used_at_us,
        row.used_by,
    )


class PeerDirectory:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._peers: dict[str, Peer] = {}
        self._by_fingerprint: dict[str, str] = {}
        self._invites: dict[str, Invite] = {}
        self._listeners: list[Callable[[Peer | None], None]] = []
        self._lock = threading.Lock()
        self._trust_version = 0

    # -- reading ------------------------------------------------------------------------------

    def load(self, session: Session, now: int) -> None:
        peers = session.exec(select(PeerRow)).all()
        keys = session.exec(
            select(PeerKeyRow).order_by(col(PeerKeyRow.node_id), col(PeerKeyRow.position))
        ).all()
        rules = session.exec(select(AccessRuleRow)).all()
        invites = session.exec(
            select(InviteRow).where(col(InviteRow.expires_at_us) > now - INVITE_GRACE_US)
        ).all()
        key_map: dict[str, list[PeerKeyRow]] = {}
        for key in keys:
            key_map.setdefault(key.node_id, []).append(key)
        rule_map: dict[str, list[AccessRuleRow]] = {}
        for rule in rules:
            rule_map.setdefault(rule.node_id, []).append(rule)
        loaded = {}
        for row in peers:
            history = KeyHistory(
                row.node_id,
                tuple(
                    wire.public_key(
                        k.key_id, k.public_key, k.valid_from_us, k.endorsement, k.endorsement_signature
                    )
                    for k in key_map.get(row.node_id, [])
                ),
            )
            own_rules = rule_map.get(row.node_id, [])
            loaded[row.node_id] = Peer(
                node_id=row.node_id,
                name=row.name,
                endpoint=row.endpoint,
                tls_certificate=row.tls_certificate,
                keys=history,
                state=row.state,
                added_at_us=row.added_at_us,
                removed_at_us=row.removed_at_us,
                joined_via=row.joined_via,
                allow=frozenset(r.item for r in own_rules if r.effect == "allow"),
                deny=frozenset(r.item for r in own_rules if r.effect == "deny"),
            )
        with self._lock:
            self._peers = loaded
            self._by_fingerprint = {p.tls_fingerprint: p.node_id for p in loaded.values() if p.active}
            self._invites = {i.invite_id: _invite(i) for i in invites}
            self._trust_version += 1

    def get(self, node_id: str) -> Peer | None:
        return self._peers.get(node_id)

    def require(self, node_id: str) -> Peer:
        """An active peer, or NotFound saying how to peer with it."""
        peer = self._peers.get(node_id)
        if peer is None:
            raise NotFound(
                f"{node_id} is not a peer of {self.node_id}; its operator runs `tongban peer invite` "
                "and you run `tongban peer join TOKEN`"
            )
        if not peer.active:
            raise FailedPrecondition(
                f"{node_id} was removed as a peer of {self.node_id}; join it again with a new token"
            )
        return peer

    def by_fingerprint(self, fingerprint: str) -> Peer | None:
        node_id = self._by_fingerprint.get(fingerprint)
        return self._peers.get(node_id) if node_id else None

    def all(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda p: p.node_id)

    def active(self) -> list[Peer]:
        return [p for p in self.all() if p.active]

    def invite(self, invite_id: str) -> Invite | None:
        return self._invites.get(invite_id)

    def invite_by_fingerprint(self, fingerprint: str) -> Invite | None:
        for invite in self._invites.values():
            if invite.join_fingerprint == fingerprint:
                return invite
        return None

    # -- trust --------------------------------------------------------------------------------

    @property
    def trust_version(self) -> int:
        return self._trust_version

    def trust_roots(self) -> bytes:
        """PEM of every certificate the federation port accepts from clients."""
        ders = [p.tls_certificate for p in self._peers.values() if p.active]
        ders += [i.join_certificate for i in self._invites.values()]
        return b"".join(tls.der_to_pem(der) for der in ders)

    # -- changing (inside a transaction; memory follows the commit) --------------------------

    def on_change(self, listener: Callable[[Peer | None], None]) -> None:
        self._listeners.append(listener)

    def save(self, tx: Tx, peer: Peer) -> None:
        """Insert or replace a peer with its keys and rules."""
        session = tx.session
        session.execute(delete(PeerKeyRow).where(col(PeerKeyRow.node_id) == peer.node_id))
        session.execute(delete(AccessRuleRow).where(col(AccessRuleRow.node_id) == peer.node_id))
        existing = session.get(PeerRow, peer.node_id)
        row = existing or PeerRow(
            node_id=peer.node_id,
            name=peer.name,
            endpoint=peer.endpoint,
            tls_certificate=peer.tls_certificate,
            tls_fingerprint=peer.tls_fingerprint,
            added_at_us=peer.added_at_us,
        )
        row.name = peer.name
        row.endpoint = peer.endpoint
        row.tls_certificate = peer.tls_certificate
        row.tls_fingerprint = peer.tls_fingerprint
        row.state = peer.state
        row.added_at_us = peer.added_at_us
        row.removed_at_us = peer.removed_at_us
        row.joined_via = peer.joined_via
        session.add(row)
        for position, key in enumerate(peer.keys.keys):
            session.add(
                PeerKeyRow(
                    node_id=peer.node_id,
                    key_id=key.key_id,
                    position=position,
                    public_key=key.public_key,
                    valid_from_us=key.valid_from_us,
                    endorsement=key.endorsement_bytes,
                    endorsement_signature=key.endorsement_signature,
                )
            )
        for item in sorted(peer.allow):
            session.add(AccessRuleRow(node_id=peer.node_id, item=item, effect="allow", set_at_us=tx.now_us))
        for item in sorted(peer.deny):
            session.add(AccessRuleRow(node_id=peer.node_id, item=item, effect="deny", set_at_us=tx.now_us))
        session.flush()
        tx.after_commit(lambda: self._remember(peer))

    def save_invite(self, tx: Tx, invite: Invite) -> None:
        row = tx.session.get(InviteRow, invite.invite_id) or InviteRow(
            invite_id=invite.invite_id,
            join_certificate=invite.join_certificate,
            join_fingerprint=invite.join_fingerprint,
            created_at_us=invite.created_at_us,
            expires_at_us=invite.expires_at_us,
        )
        row.used_at_us = invite.used_at_us
        row.used_by = invite.used_by
        tx.session.add(row)
        tx.session.flush()
        tx.after_commit(lambda: self._remember_invite(invite))

    def with_access(self, node_id: str, items: list[str], allow: bool) -> Peer:
        """The peer with `items` allowed (or denied); an item moves from one list to the other."""
        peer = self.require(node_id)
        chosen = set(items)
        if allow:
            return replace(peer, allow=peer.allow | chosen, deny=peer.deny - chosen)
        return replace(peer, allow=peer.allow - chosen, deny=peer.deny | chosen)

    def _remember(self, peer: Peer) -> None:
        with self._lock:
            old = self._peers.get(peer.node_id)
            if old is not None:
                self._by_fingerprint.pop(old.tls_fingerprint, None)
            self._peers[peer.node_id] = peer
            if peer.active:
                self._by_fingerprint[peer.tls_fingerprint] = peer.node_id
            self._trust_version += 1
        for listener in self._listeners:
            listener(peer)

    def _remember_invite(self, invite: Invite) -> None:
        with self._lock:
            self._invites[invite.invite_id] = invite
            self._trust_version += 1
        for listener in self._listeners:
            listener(None)
