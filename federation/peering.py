"""Peering by join token (DESIGN.md §4), one step for each operator.

1. Node A: `tongban peer invite` makes a token carrying A's node ID, endpoint, signing public
   key, TLS certificate fingerprint, a one-time secret and an expiry. A stores the join
   certificate derived from the secret (see `federation.tls`), never the secret.
2. Node B: `tongban peer join TOKEN` fetches A's certificate and checks it against the pinned
   fingerprint, connects with the join certificate, and presents its own identity with a proof
   signed by its key. A checks the invitation is open (not expired, not used), pins B, marks the
   invitation used and answers with its identity, which B checks against the token and pins.

Every failure says what went wrong and what to do: an expired token, a token used twice, a
token that does not belong to the node at that endpoint, a node that refuses the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable

import grpc
from ulid import ULID

from federation import tls, wire
from federation.address import InvalidNodeId, validate_node_id
from federation.client import RpcFailure, call_join
from federation.clock import iso, now_us
from federation.errors import (
    FailedPrecondition,
    FederationError,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from federation.identity import NodeIdentity
from federation.keys import CONTEXT_JOIN_PROOF, SignatureError
from federation.models import InviteRow
from federation.peers import Invite, Peer, PeerDirectory
from federation.store import Database, Tx
from federation.units import JoinToken, NodeInfo
from federation.wire import WireError

_log = logging.getLogger("tongban.federation.peering")


def proof_message(inviter_id: str, join_certificate_der: bytes) -> bytes:
    return inviter_id.encode() + b"\n" + hashlib.sha256(join_certificate_der).digest()


class Peering:
    def __init__(
        self,
        *,
        identity: Callable[[], NodeIdentity],
        endpoint: Callable[[], str],
        db: Database,
        peers: PeerDirectory,
        record_peer: Callable[[Tx, Peer], object],
        record_invite: Callable[[Tx, Invite], object],
    ) -> None:
        self._identity = identity
        self._endpoint = endpoint
        self._db = db
        self._peers = peers
        # Changes go through these (logged local events), never straight to the directory.
        self._record_peer = record_peer
        self._record_invite = record_invite

    # -- node A -------------------------------------------------------------------------------

    async def invite(self, ttl_seconds: float) -> tuple[Invite, str]:
        """A new invitation and its token."""
        if not 60 <= ttl_seconds <= 30 * 86400:
            raise InvalidArgument(
                "a join token lives between one minute and 30 days; pick a --ttl in that range"
            )
        identity = self._identity()
        secret = secrets.token_bytes(32)
        join = tls.join_identity(secret)
        now = now_us()
        invite = Invite(
            invite_id=str(ULID()).lower()[-12:],
            join_certificate=join.cert_der,
            join_fingerprint=join.fingerprint,
            created_at_us=now,
            expires_at_us=now + int(ttl_seconds * 1e6),
        )
        token = JoinToken(
            node_id=identity.node_id,
            endpoint=self._endpoint(),
            signing_key=identity.signer.public_key,
            tls_fingerprint=identity.tls.fingerprint,
            secret=secret,
            expires_at_us=invite.expires_at_us,
        )
        await self._db.write(lambda tx: self._record_invite(tx, invite))
        return invite, wire.encode_token(token)

    async def accept(self, invite: Invite, joiner: NodeInfo, proof: bytes) -> NodeInfo:
        """A joiner presents itself over the join certificate of `invite`."""
        identity = self._identity()
        try:
            joiner_id = validate_node_id(joiner.node_id)
        except InvalidNodeId as error:
            raise InvalidArgument(str(error)) from None
        if joiner_id == identity.node_id:
            raise InvalidArgument(
                f"{joiner_id} cannot peer with itself: the token was used on the node that made it"
            )
        try:
            joiner.keys.validate()
            if joiner.keys.node_id != joiner_id:
                raise SignatureError(f"the keys presented belong to {joiner.keys.node_id}")
            if not joiner.keys.keys:
                raise SignatureError("no signing key was presented")
            if not joiner.keys.current.verify(
                CONTEXT_JOIN_PROOF, proof_message(identity.node_id, invite.join_certificate), proof
            ):
                raise SignatureError("the join proof is not signed by the joiner's current key")
            tls.der_to_pem(joiner.tls_certificate)
        except (SignatureError, ValueError) as error:
            raise Unauthenticated(f"{joiner_id} did not prove its identity: {error}") from None
        if not joiner.endpoint:
            raise InvalidArgument(f"{joiner_id} gave no endpoint to reach it at")

        def record(tx: Tx) -> Peer:
            row = tx.session.get(InviteRow, invite.invite_id)
            if row is None:
                raise Unauthenticated("this join token is unknown here; ask the operator for a new one")
            if row.used_at_us is not None:
                raise FailedPrecondition(
                    f"this join token was already used by {row.used_by} at {iso(row.used_at_us)}; "
                    "each token works once: ask the operator for a new one (`tongban peer invite`)"
                )
            if tx.now_us >= row.expires_at_us:
                raise FailedPrecondition(
                    f"this join token expired at {iso(row.expires_at_us)}; ask the operator of "
                    f"{identity.node_id} for a new one (`tongban peer invite`)"
                )
            existing = self._peers.get(joiner_id)
            peer = Peer(
                node_id=joiner_id,
                name=joiner.name,
                endpoint=joiner.endpoint,
                tls_certificate=joiner.tls_certificate,
                keys=joiner.keys,
                state="active",
                added_at_us=tx.now_us,
                joined_via="invite",
                allow=existing.allow if existing else frozenset(),
                deny=existing.deny if existing else frozenset(),
            )
            self._record_peer(tx, peer)
            used = Invite(
                invite.invite_id,
                invite.join_certificate,
                invite.join_fingerprint,
                invite.created_at_us,
                invite.expires_at_us,
                tx.now_us,
                joiner_id,
            )
            self._record_invite(tx, used)
            return peer

        peer = await self._db.write(record)
        _log.info(
            "pinned peer %s (%s): TLS %s, signing key %s",
            peer.node_id,
            peer.name,
            tls.pretty_fingerprint(peer.tls_fingerprint),
            peer.keys.current.key_id,
        )
        return identity.info(self._endpoint())

    # -- node B -------------------------------------------------------------------------------

    async def join(self, text: str) -> Peer:
        """Use a token made by another node; returns that node, pinned."""
        identity = self._identity()
        try:
            token = wire.decode_token(text)
            inviter_id = validate_node_id(token.node_id)
        except (WireError, InvalidNodeId) as error:
            raise InvalidArgument(str(error)) from None
        if inviter_id == identity.node_id:
            raise InvalidArgument(f"this token was made by {inviter_id} itself; use it on the other node")
        if now_us() >= token.expires_at_us:
            raise FailedPrecondition(
                f"this join token expired at {iso(token.expires_at_us)}; ask the operator of {inviter_id} "
                "for a new one (`tongban peer invite`)"
            )
        join = tls.join_identity(token.secret)
        try:
            certificate = await asyncio.to_thread(tls.fetch_server_certificate, token.endpoint, join)
        except OSError as error:
            raise Unavailable(f"cannot reach {inviter_id} at {token.endpoint}: {error}") from None
        seen = tls.fingerprint(certificate)
        if seen != token.tls_fingerprint:
            raise Unauthenticated(
                f"the node at {token.endpoint} presented TLS certificate {tls.pretty_fingerprint(seen)}, but the "
                f"token pins {tls.pretty_fingerprint(token.tls_fingerprint)}: the endpoint is wrong or someone is in "
                "between; do not proceed"
            )
        proof = identity.signer.sign(CONTEXT_JOIN_PROOF, proof_message(inviter_id, join.cert_der))
        try:
            inviter = await call_join(
                token.endpoint, inviter_id, certificate, join, identity.info(self._endpoint()), proof
            )
        except RpcFailure as failure:
            if failure.code == grpc.StatusCode.UNAVAILABLE:
                raise Unauthenticated(
                    f"{inviter_id} refused the join certificate of this token: the token is forged, mistyped, "
                    f"or was not made by {inviter_id}; ask its operator for a new one ({failure.details})"
                ) from None
            raise FederationError(f"{inviter_id} refused to peer: {failure.details}", failure.code) from None
        problem = self._check_inviter(token, inviter_id, certificate, inviter)
        if problem:
            raise Unauthenticated(
                f"{inviter_id} answered with an identity that does not match its token: {problem}"
            )

        def record(tx: Tx) -> Peer:
            existing = self._peers.get(inviter_id)
            peer = Peer(
                node_id=inviter_id,
                name=inviter.name,
                endpoint=token.endpoint,
                tls_certificate=certificate,
                keys=inviter.keys,
                state="active",
                added_at_us=tx.now_us,
                joined_via="token",
                allow=existing.allow if existing else frozenset(),
                deny=existing.deny if existing else frozenset(),
            )
            self._record_peer(tx, peer)
            return peer

        peer = await self._db.write(record)
        _log.info(
            "pinned peer %s (%s): TLS %s, signing key %s",
            peer.node_id,
            peer.name,
            tls.pretty_fingerprint(peer.tls_fingerprint),
            peer.keys.current.key_id,
        )
        return peer

    @staticmethod
    def _check_inviter(token: JoinToken, inviter_id: str, certificate: bytes, inviter: NodeInfo) -> str:
        if inviter.node_id != inviter_id:
            return f"it says it is {inviter.node_id}"
        if tls.fingerprint(inviter.tls_certificate) != tls.fingerprint(certificate):
            return "its TLS certificate differs from the one it presented"
        try:
            inviter.keys.validate()
        except SignatureError as error:
            return str(error)
        if not any(key.public_key == token.signing_key for key in inviter.keys.keys):
            return "its signing keys do not include the one in the token"
        return ""
