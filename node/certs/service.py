"""Certificate issuance between nodes: requests, issuance, refusal, status, trust data.

The flow, with the node that does each step:

1. requester  `request`: a clerk records the applicant's request and consent (local event
   `cert.request`); the same transaction sends `cert.request` to the issuer.
2. issuer     the request arrives; it is refused at once (REJECTED receipt, seen by the
              requester) when the issuer's catalog does not list the type, the access rules do
              not let the requester ask for it, or the applicant's ID number is wrong. Otherwise
              it waits as *pending*, with a preview of what issuing would produce.
3. issuer     `issue`: the certificate ID, the random status index, the salts and the times are
              chosen and the token is signed *before* the event `cert.issue` (the determinism
              contract of federation.handlers: replaying the log yields the same certificate);
              the event stores it and sends `cert.issued` with the token to the requester.
              `refuse` records `cert.refuse` and sends `cert.refused` with the reason.
4. requester  the token arrives and is stored; `cert get` turns it into a PDF or JSON file.
5. issuer     `revoke` / `suspend` / `reinstate` are local events that change the certificate's
              entry; the status list is signed again right after (a publication, derived from
              state, not state itself) and peers fetch it on their schedule.

Trust data (`trust`): per issuer its keys (the federation's peer data, with their windows), the
certificate types of its catalog (as cached here) and its signed status list (as last fetched),
written to the home's trust file after every refresh for `cert verify` to use offline.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select
from ulid import ULID

from federation import Delivered, Federation, InvalidArgument, LocalEvent, NotFound, Rejected, SealedEnvelope
from federation.clock import now_us
from federation.errors import FailedPrecondition, PermissionDenied
from federation.store import Database, Tx
from node.cases.validate import resident_id
from node.certs import kinds, sdjwt, statuslist, wire
from node.certs.models import CertificateRow, CertRequestRow, CertTrustRow
from node.certs.settings import CertSettings
from node.certs.trust import IssuerTrust, TrustBundle
from node.certs.units import Consent, Issued, Refused, Request, StatusChange
from node.certs.verify import read_token

_log = logging.getLogger("tongban.certs")

# Which types a node's catalog lists: (session, node ID) -> types, or None when not known here.
TypesOf = Callable[[Session, str], frozenset[str] | None]
# Which service items of this node's catalog list a certificate type (for access rules).
ItemsFor = Callable[[Session, str], frozenset[str]]
# Fetch a peer's signed status list (over the federation port).
FetchStatus = Callable[[str], Awaitable[str]]

TRANSITIONS = {
    "revoked": {"valid", "suspended"},
    "suspended": {"valid"},
    "valid": {"suspended"},  # reinstate
}
MAX_PURPOSE = 60


# The longest each request field may be (the columns of cert_requests); checked on both sides,
# so that a peer's over-long field is refused at once instead of failing the database write.
LIMITS = {
    "request_id": 26,
    "cert_type": 64,
    "applicant_id": 32,
    "applicant_name": 64,
    "purpose": MAX_PURPOSE,
    "case_id": 64,
    "clerk": 64,
}
CONSENT_LIMITS = {"given_by": 64, "purpose": 200, "method": 64}


def _check_clerk(clerk: str) -> None:
    if len(clerk) > LIMITS["clerk"]:
        raise InvalidArgument(f"the clerk's name is longer than {LIMITS['clerk']} characters")


def too_long(item: Request) -> str:
    """What is too long in a request ("" when nothing is)."""
    for name, limit in LIMITS.items():
        if len(getattr(item, name)) > limit:
            return f"the request's {name} is longer than {limit} characters"
    for name, limit in CONSENT_LIMITS.items():
        if len(getattr(item.consent, name)) > limit:
            return f"the consent record's {name} is longer than {limit} characters"
    return ""


@dataclass(frozen=True)
class TrustSource:
    issuer: str
    name: str
    list_issued_at: int  # seconds, 0 when none
    fetched_at_us: int
    revoked: int
    suspended: int
    types: int
    error: str = ""


class CertificateOffice:
    """One node's certificate work, as requester, issuer and verifier's trust keeper."""

    def __init__(
        self,
        federation: Federation,
        db: Database,
        *,
        node_name: str,
        trust_path: Path,
        settings: CertSettings,
        types_of: TypesOf,
        items_for: ItemsFor,
        fetch_status: FetchStatus,
        refresh_catalog: Callable[[str], Awaitable[object]] | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.federation = federation
        self.db = db
        self.node_id = federation.node_id
        self.node_name = node_name
        self.trust_path = trust_path
        self.settings = settings
        self.types_of = types_of
        self.items_for = items_for
        self.fetch_status = fetch_status
        self.refresh_catalog = refresh_catalog
        self.clock = clock
        self._publishing = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []

    def register(self) -> None:
        handlers = self.federation.handlers
        handlers.register_local("cert.request", self._local_request)
        handlers.register("cert.request", self._receive_request, on_receipt=self._request_receipted)
        handlers.register_local("cert.issue", self._local_issue)
        handlers.register("cert.issued", self._receive_issued)
        handlers.register_local("cert.refuse", self._local_refuse)
        handlers.register("cert.refused", self._receive_refused)
        for kind in ("cert.revoke", "cert.suspend", "cert.reinstate"):
            handlers.register_local(kind, self._local_status)

    def on_change(self, listener: Callable[[], None]) -> None:
        """`listener` hears (after commit) that some request or certificate changed."""
        self._listeners.append(listener)

    def _changed(self, tx: Tx) -> None:
        for listener in self._listeners:
            tx.after_commit(listener)

    # -- requester: asking -------------------------------------------------------------------

    async def request(
        self,
        *,
        issuer: str,
        cert_type: str,
        applicant_id: str,
        applicant_name: str,
        purpose: str,
        case_id: str,
        consent: Consent,
        clerk: str,
    ) -> CertRequestRow:
        if issuer == self.node_id:
            raise InvalidArgument(
                "a node does not request certificates from itself; name the issuing peer with --from"
            )
        self.federation.peers.require(issuer)
        if not cert_type.strip():
            raise InvalidArgument("name the certificate type with --type (see the issuer's catalog)")
        applicant_name = applicant_name.strip()
        if not applicant_name:
            raise InvalidArgument("the applicant's name is needed (--applicant-name)")
        purpose = purpose.strip()
        if not purpose or len(purpose) > MAX_PURPOSE:
            raise InvalidArgument(
                f"say the purpose in 1 to {MAX_PURPOSE} characters (--purpose): it is printed on the certificate"
            )
        if not consent.given_by.strip() or not consent.purpose.strip():
            raise InvalidArgument("the applicant's consent record needs who consented and for which purpose")
        if consent.given_at_us > self.clock() + 300_000_000:
            raise InvalidArgument("the consent cannot be given in the future")
        item = Request(
            request_id=str(ULID()),
            requester=self.node_id,
            issuer=issuer,
            cert_type=cert_type.strip(),
            applicant_id=resident_id(applicant_id),
            applicant_name=applicant_name,
            purpose=purpose,
            case_id=case_id,
            consent=consent,
            clerk=clerk,
            requested_at_us=self.clock(),
        )
        problem = too_long(item)
        if problem:
            raise InvalidArgument(problem)
        payload = wire.pack_request(item)
        row: CertRequestRow = await self.db.write(
            lambda tx: self.federation.act(tx, "cert.request", payload, case_id)
        )
        return row

    def _local_request(self, tx: Tx, event: LocalEvent) -> CertRequestRow:
        item = wire.request(event.payload)
        row = _request_row(item, "sent")
        sent = self.federation.enqueue(
            tx, to=item.issuer, kind="cert.request", payload=event.payload, case_id=item.case_id
        )
        row.message_id = sent.message_id
        tx.session.add(row)
        self._changed(tx)
        return row

    def _request_receipted(self, tx: Tx, delivered: Delivered) -> None:
        if delivered.ack.outcome == "applied":
            return
        row = tx.session.exec(
            select(CertRequestRow).where(
                col(CertRequestRow.role) == "sent", col(CertRequestRow.message_id) == delivered.message_id
            )
        ).first()
        if row is not None and row.state == "pending":
            self._decide(tx, row, "rejected", reason=delivered.ack.reason)

    def _decide(
        self,
        tx: Tx,
        row: CertRequestRow,
        state: str,
        *,
        reason: str = "",
        certificate_id: str = "",
        clerk: str = "",
    ) -> None:
        """Record the answer to a request (issued, refused, or rejected on arrival)."""
        row.state, row.reason, row.certificate_id = state, reason, certificate_id
        row.decided_at_us, row.decided_by = tx.now_us, clerk
        tx.session.add(row)
        self._changed(tx)

    # -- issuer: receiving, deciding ----------------------------------------------------------

    def _receive_request(self, tx: Tx, sealed: SealedEnvelope) -> None:
        try:
            item = wire.request(sealed.envelope.payload)
        except wire.WireError as error:
            raise Rejected(str(error), InvalidArgument.code) from None
        problem = too_long(item)
        if problem:
            raise Rejected(problem, InvalidArgument.code)
        sender = sealed.envelope.sender
        if item.requester != sender or item.issuer != self.node_id:
            raise Rejected(
                f"the request names {item.requester} -> {item.issuer}, but came from {sender} to {self.node_id}",
                InvalidArgument.code,
            )
        if tx.session.get(CertRequestRow, (item.request_id, "received")) is not None:
            return
        types = self.types_of(tx.session, self.node_id) or frozenset()
        if item.cert_type not in types:
            raise Rejected(
                f"{self.node_id}'s catalog does not list certificate type {item.cert_type!r}"
                + (f"; it issues {', '.join(sorted(types))}" if types else "; it issues none"),
                FailedPrecondition.code,
            )
        peer = self.federation.peers.require(sender)
        items = self.items_for(tx.session, item.cert_type)
        if not (peer.allows(item.cert_type) or any(peer.allows(code) for code in items)):
            raise Rejected(
                f"{sender} may not request {item.cert_type} from {self.node_id}: its operator runs "
                f"`tongban peer allow {sender} {' '.join(sorted(items)) or item.cert_type}`",
                PermissionDenied.code,
            )
        try:
            resident_id(item.applicant_id)
        except InvalidArgument as error:
            raise Rejected(error.message, InvalidArgument.code) from None
        if not item.consent.given_by or not item.consent.purpose:
            raise Rejected("the request carries no consent record of the applicant", InvalidArgument.code)
        tx.session.add(_request_row(item, "received"))
        self._changed(tx)

    async def pending(
        self, role: str = "received", state: str = "", limit: int = 200
    ) -> list[CertRequestRow]:
        def read(session: Session) -> list[CertRequestRow]:
            query = select(CertRequestRow).where(col(CertRequestRow.role) == role)
            chosen = state or ("pending" if role == "received" else "")
            if chosen:
                query = query.where(col(CertRequestRow.state) == chosen)
            return list(
                session.exec(query.order_by(col(CertRequestRow.requested_at_us).desc()).limit(limit)).all()
            )

        return await self.db.read(read)

    async def issuable_types(self) -> frozenset[str]:
        return await self.db.read(lambda s: self.types_of(s, self.node_id) or frozenset())

    async def find_request(self, request_id: str, role: str | None = None) -> CertRequestRow:
        def read(session: Session) -> list[CertRequestRow]:
            query = select(CertRequestRow).where(col(CertRequestRow.request_id) == request_id)
            if role:
                query = query.where(col(CertRequestRow.role) == role)
            return list(session.exec(query).all())

        rows = await self.db.read(read)
        if not rows:
            where = "received here" if role == "received" else "here"
            raise NotFound(f"no certificate request {request_id} {where}; `tongban cert pending` lists them")
        return rows[0]

    def fields_for(self, row: CertRequestRow, given: dict[str, str]) -> dict[str, str]:
        """The fields the certificate will carry: the applicant's, the type's defaults, the clerk's."""
        ctype = kinds.certificate_type(row.cert_type)
        fields = {"applicant_name": row.applicant_name, "applicant_id": row.applicant_id}
        for spec in ctype.fields:
            if spec.default:
                fields[spec.key] = spec.default
        for key, value in given.items():
            if key in fields and key in ("applicant_name", "applicant_id"):
                raise InvalidArgument(f"{key} comes from the request and cannot be changed at issuance")
            if key in sdjwt.RESERVED or key.startswith("_") or not key.replace("_", "").isalnum():
                raise InvalidArgument(f"{key!r} cannot be a field name")
            if ctype.known and ctype.field(key) is None:
                known = ", ".join(s.key for s in ctype.fields)
                raise InvalidArgument(f"{ctype.code} has no field {key!r}; its fields are {known}")
            fields[key] = value.strip()
        missing = [s.key for s in ctype.fields if s.required and not fields.get(s.key)]
        if missing:
            raise InvalidArgument(
                f"{ctype.code} needs {', '.join(missing)}: give them with "
                + " ".join(f"--field {k}=..." for k in missing)
            )
        return fields

    async def issue(
        self, request_id: str, given: dict[str, str], valid_days: int, clerk: str
    ) -> CertificateRow:
        _check_clerk(clerk)
        row = await self.find_request(request_id, "received")
        if row.state != "pending":
            raise FailedPrecondition(f"request {request_id} is already {row.state}")
        if row.cert_type not in await self.issuable_types():
            raise FailedPrecondition(
                f"{self.node_id}'s catalog no longer lists {row.cert_type}; refuse the request instead"
            )
        ctype = kinds.certificate_type(row.cert_type)
        days = valid_days or ctype.valid_days
        if not 1 <= days <= 3660:
            raise InvalidArgument("--valid-days must be between 1 and 3660")
        fields = self.fields_for(row, given)
        used = await self.db.read(
            lambda s: set(
                s.exec(
                    select(CertificateRow.status_index).where(col(CertificateRow.issuer) == self.node_id)
                ).all()
            )
        )
        if len(used) >= statuslist.CAPACITY // 2:
            raise FailedPrecondition(
                "this node's status list is half full; a second list is needed before issuing more"
            )
        index = secrets.randbelow(statuslist.CAPACITY)
        while index in used:
            index = secrets.randbelow(statuslist.CAPACITY)
        certificate_id = str(ULID())
        issued_at = self.clock() // 1_000_000
        claims = sdjwt.Claims(
            iss=self.node_id,
            jti=certificate_id,
            vct=row.cert_type,
            iat=issued_at,
            nbf=issued_at,
            exp=issued_at + days * 86400,
            purpose=row.purpose,
            status=sdjwt.StatusRef(statuslist.list_uri(self.node_id), index),
        )
        salts = {name: sdjwt.new_salt(secrets.token_bytes(sdjwt.SALT_BYTES)) for name in fields}
        signer = self.federation.identity.signer
        token = sdjwt.issue(signer.seed, signer.key_id, claims, fields, salts)
        payload = wire.pack_issued(Issued(request_id, certificate_id, token, index, clerk))
        issued: CertificateRow = await self.db.write(
            lambda tx: self.federation.act(tx, "cert.issue", payload, row.case_id)
        )
        return issued

    def _local_issue(self, tx: Tx, event: LocalEvent) -> CertificateRow:
        item = wire.issued(event.payload)
        request = tx.session.get(CertRequestRow, (item.request_id, "received"))
        if request is None or request.state != "pending":
            raise FailedPrecondition(f"request {item.request_id} is not pending here")
        token = sdjwt.parse(item.token)
        claims = token.payload
        if (
            claims.get("iss") != self.node_id
            or claims.get("jti") != item.certificate_id
            or claims.get("vct") != request.cert_type
            or token.fields.get("applicant_id") != request.applicant_id
        ):
            raise InvalidArgument("the token does not match the request it answers")
        row = _certificate_row(token, item, "issued", request.applicant_name)
        tx.session.add(row)
        self._decide(tx, request, "issued", certificate_id=item.certificate_id, clerk=item.clerk)
        self.federation.enqueue(
            tx, to=request.requester, kind="cert.issued", payload=event.payload, case_id=request.case_id
        )
        return row

    async def refuse(self, request_id: str, reason: str, clerk: str) -> CertRequestRow:
        _check_clerk(clerk)
        reason = reason.strip()
        if not reason:
            raise InvalidArgument("say why with --reason: the requester and the applicant will read it")
        row = await self.find_request(request_id, "received")
        if row.state != "pending":
            raise FailedPrecondition(f"request {request_id} is already {row.state}")
        payload = wire.pack_refused(Refused(request_id, reason, clerk))
        refused: CertRequestRow = await self.db.write(
            lambda tx: self.federation.act(tx, "cert.refuse", payload, row.case_id)
        )
        return refused

    def _local_refuse(self, tx: Tx, event: LocalEvent) -> CertRequestRow:
        item = wire.refused(event.payload)
        request = tx.session.get(CertRequestRow, (item.request_id, "received"))
        if request is None or request.state != "pending":
            raise FailedPrecondition(f"request {item.request_id} is not pending here")
        self._decide(tx, request, "refused", reason=item.reason, clerk=item.clerk)
        self.federation.enqueue(
            tx, to=request.requester, kind="cert.refused", payload=event.payload, case_id=request.case_id
        )
        return request

    # -- requester: the answer -----------------------------------------------------------------

    def _sent_request(self, tx: Tx, request_id: str, sender: str) -> CertRequestRow:
        request = tx.session.get(CertRequestRow, (request_id, "sent"))
        if request is None or request.issuer != sender:
            raise Rejected(
                f"{self.node_id} sent no certificate request {request_id} to {sender}", InvalidArgument.code
            )
        return request

    def _receive_issued(self, tx: Tx, sealed: SealedEnvelope) -> None:
        try:
            item = wire.issued(sealed.envelope.payload)
            token = read_token(item.token)
        except (wire.WireError, sdjwt.TokenFormatError) as error:
            raise Rejected(f"the issued certificate does not read: {error}", InvalidArgument.code) from None
        if len(item.certificate_id) > 26 or len(item.clerk) > 64 or len(token.payload["vct"]) > 64:
            raise Rejected("the issued certificate's ID, type or clerk is too long", InvalidArgument.code)
        sender = sealed.envelope.sender
        request = self._sent_request(tx, item.request_id, sender)
        if token.payload.get("iss") != sender or token.payload.get("jti") != item.certificate_id:
            raise Rejected("the certificate's issuer or ID does not match the message", InvalidArgument.code)
        if tx.session.get(CertificateRow, item.certificate_id) is None:
            tx.session.add(_certificate_row(token, item, "received", request.applicant_name))
        self._decide(tx, request, "issued", certificate_id=item.certificate_id, clerk=item.clerk)

    def _receive_refused(self, tx: Tx, sealed: SealedEnvelope) -> None:
        try:
            item = wire.refused(sealed.envelope.payload)
        except wire.WireError as error:
            raise Rejected(str(error), InvalidArgument.code) from None
        if len(item.clerk) > LIMITS["clerk"]:
            raise Rejected("the refusing clerk's name is too long", InvalidArgument.code)
        request = self._sent_request(tx, item.request_id, sealed.envelope.sender)
        self._decide(tx, request, "refused", reason=item.reason, clerk=item.clerk)

    # -- certificates --------------------------------------------------------------------------

    async def certificate(self, certificate_id: str) -> CertificateRow:
        row = await self.db.read(lambda s: s.get(CertificateRow, certificate_id))
        if row is None:
            raise NotFound(
                f"no certificate {certificate_id} here; `tongban cert requests` shows what was issued"
            )
        return row

    async def change_status(self, certificate_id: str, state: str, reason: str, clerk: str) -> CertificateRow:
        _check_clerk(clerk)
        if state not in TRANSITIONS:
            raise InvalidArgument(f"a certificate can be revoked, suspended or reinstated, not {state!r}")
        row = await self.certificate(certificate_id)
        if row.role != "issued":
            raise FailedPrecondition(
                f"{certificate_id} was issued by {row.issuer}; only its issuer can change its status"
            )
        if row.state not in TRANSITIONS[state]:
            raise FailedPrecondition(f"{certificate_id} is {row.state}; it cannot become {state}")
        if state == "revoked" and not reason.strip():
            raise InvalidArgument("say why with --reason: revocation is final and the reason is kept")
        kind = {"revoked": "cert.revoke", "suspended": "cert.suspend", "valid": "cert.reinstate"}[state]
        payload = wire.pack_status(StatusChange(certificate_id, state, reason.strip(), clerk))
        changed: CertificateRow = await self.db.write(lambda tx: self.federation.act(tx, kind, payload))
        await self.publish()
        return changed

    def _local_status(self, tx: Tx, event: LocalEvent) -> CertificateRow:
        item = wire.status(event.payload)
        row = tx.session.get(CertificateRow, item.certificate_id)
        if row is None or row.role != "issued" or row.state not in TRANSITIONS.get(item.state, set()):
            raise FailedPrecondition(f"certificate {item.certificate_id} cannot become {item.state} now")
        row.state, row.state_reason, row.state_changed_at_us = item.state, item.reason, tx.now_us
        tx.session.add(row)
        self._changed(tx)
        return row

    # -- status lists and trust data -------------------------------------------------------------

    async def publish(self) -> str:
        """Sign this node's status list as it stands now, store it and rewrite the trust file."""
        async with self._publishing:
            entries = await self.db.read(
                lambda s: {
                    index: statuslist.STATE_VALUES[state]
                    for index, state in s.exec(
                        select(CertificateRow.status_index, CertificateRow.state).where(
                            col(CertificateRow.role) == "issued", col(CertificateRow.state) != "valid"
                        )
                    ).all()
                }
            )
            signer = self.federation.identity.signer
            now = self.clock()
            signed = statuslist.sign(
                signer.seed,
                signer.key_id,
                self.node_id,
                entries,
                now // 1_000_000,
                self.settings.status_ttl_seconds,
            )
            await self.db.write(
                lambda tx: _save_list(tx, self.node_id, signed, (now // 1_000_000) * 1_000_000, now, "")
            )
            await self.write_trust()
            return signed

    async def own_status_list(self) -> str:
        """The current signed list, signed anew when half its time-to-live has passed."""
        row = await self.db.read(lambda s: s.get(CertTrustRow, self.node_id))
        half = self.settings.status_ttl_seconds * 500_000
        if row is None or not row.status_list or self.clock() - row.list_issued_at_us > half:
            return await self.publish()
        return row.status_list

    async def refresh(self) -> list[TrustSource]:
        """Fetch every active peer's keys, catalog and status list now, keep the good ones,
        rewrite the trust file."""
        await self.own_status_list()
        peers = self.federation.peers.active()
        results = await asyncio.gather(*(self._refresh_one(p.node_id) for p in peers), return_exceptions=True)
        for peer, result in zip(peers, results, strict=True):
            if isinstance(result, BaseException):
                _log.warning("status list of %s: %s", peer.node_id, result)
        await self.write_trust()
        return await self.sources()

    async def _refresh_one(self, peer_id: str) -> None:
        now = self.clock()
        try:
            await self.federation.hello(peer_id)  # its keys, rotated ones included
            if self.refresh_catalog is not None:
                await self.refresh_catalog(peer_id)  # the certificate types it may issue

            signed = await self.fetch_status(peer_id)
            keys = self.federation.peers.require(peer_id).keys
            statement = statuslist.open_statement(signed, peer_id, keys)
        except Exception as error:
            message = getattr(error, "details", None) or str(error)
            await self.db.write(lambda tx: _note_failure(tx, peer_id, now, str(message)))
            raise
        issued_us = statement.issued_at * 1_000_000
        await self.db.write(lambda tx: _save_list(tx, peer_id, signed, issued_us, now, "", keep_newer=True))

    async def bundle(self) -> TrustBundle:
        def read(session: Session) -> TrustBundle:
            lists = {row.issuer: row for row in session.exec(select(CertTrustRow)).all()}
            issuers = []
            own = self.federation.identity
            for node_id, name, keys in [
                (self.node_id, self.node_name, own.keys),
                *((p.node_id, p.name, p.keys) for p in self.federation.peers.active()),
            ]:
                row = lists.get(node_id)
                issuers.append(
                    IssuerTrust(
                        node_id=node_id,
                        name=name,
                        keys=keys,
                        types=self.types_of(session, node_id),
                        status_list=row.status_list if row else "",
                        fetched_at=(row.fetched_at_us // 1_000_000) if row else 0,
                    )
                )
            return TrustBundle.of(self.node_id, self.clock() // 1_000_000, issuers)

        return await self.db.read(read)

    async def write_trust(self) -> Path:
        bundle = await self.bundle()
        await asyncio.to_thread(bundle.save, self.trust_path)
        return self.trust_path

    async def sources(self) -> list[TrustSource]:
        bundle = await self.bundle()
        rows = await self.db.read(lambda s: {r.issuer: r for r in s.exec(select(CertTrustRow)).all()})
        sources = []
        for issuer in bundle.issuers.values():
            row = rows.get(issuer.node_id)
            revoked = suspended = 0
            issued_at = 0
            error = row.last_error if row else "no status list fetched yet"
            if issuer.status_list:
                try:
                    statement = statuslist.open_statement(issuer.status_list, issuer.node_id, issuer.keys)
                except statuslist.StatusListError as problem:
                    error = str(problem)
                else:
                    issued_at = statement.issued_at
                    values = _count(statement.raw)
                    revoked, suspended = values[statuslist.REVOKED], values[statuslist.SUSPENDED]
            sources.append(
                TrustSource(
                    issuer=issuer.node_id,
                    name=issuer.name,
                    list_issued_at=issued_at,
                    fetched_at_us=row.fetched_at_us if row else 0,
                    revoked=revoked,
                    suspended=suspended,
                    types=len(issuer.types or ()),
                    error=error,
                )
            )
        return sources

    def issuer_name(self, node_id: str) -> str:
        if node_id == self.node_id:
            return self.node_name
        peer = self.federation.peers.get(node_id)
        return peer.name if peer else node_id


def _count(raw: bytes) -> dict[int, int]:
    counts = {0: 0, 1: 0, 2: 0, 3: 0}
    for byte in raw:
        if byte:
            for shift in range(0, 8, statuslist.BITS):
                counts[(byte >> shift) & 3] += 1
    return counts


def _save_list(
    tx: Tx, issuer: str, signed: str, issued_us: int, fetched_us: int, error: str, *, keep_newer: bool = False
) -> None:
    row = tx.session.get(CertTrustRow, issuer) or CertTrustRow(issuer=issuer)
    if keep_newer and row.status_list and row.list_issued_at_us > issued_us:
        return  # an older list (a replay, or a slow answer) never replaces a newer one
    row.status_list, row.list_issued_at_us, row.fetched_at_us = signed, issued_us, fetched_us
    row.attempted_at_us, row.last_error = fetched_us, error
    tx.session.add(row)


def _note_failure(tx: Tx, issuer: str, at_us: int, error: str) -> None:
    row = tx.session.get(CertTrustRow, issuer) or CertTrustRow(issuer=issuer)
    row.attempted_at_us, row.last_error = at_us, error[:500]
    tx.session.add(row)


def _request_row(item: Request, role: str) -> CertRequestRow:
    return CertRequestRow(
        request_id=item.request_id,
        role=role,
        requester=item.requester,
        issuer=item.issuer,
        cert_type=item.cert_type,
        applicant_id=item.applicant_id,
        applicant_name=item.applicant_name,
        purpose=item.purpose,
        case_id=item.case_id,
        consent_by=item.consent.given_by,
        consent_at_us=item.consent.given_at_us,
        consent_purpose=item.consent.purpose,
        consent_method=item.consent.method,
        clerk=item.clerk,
        requested_at_us=item.requested_at_us,
    )


def _certificate_row(token: sdjwt.Token, item: Issued, role: str, applicant_name: str) -> CertificateRow:
    claims = token.payload
    return CertificateRow(
        certificate_id=item.certificate_id,
        role=role,
        issuer=str(claims["iss"]),
        cert_type=str(claims["vct"]),
        request_id=item.request_id,
        token=token.compact,
        status_index=item.status_index,
        applicant_name=applicant_name,
        issued_at_us=int(claims["iat"]) * 1_000_000,
        valid_from_us=int(claims["nbf"]) * 1_000_000,
        expires_at_us=int(claims["exp"]) * 1_000_000,
    )


def preview(row: CertRequestRow) -> list[tuple[str, str, str, bool, bool]]:
    """(key, label, value known now, required, personal) for each field the certificate would carry."""
    name, number = kinds.PERSONAL
    out = [
        (name.key, name.label, row.applicant_name, True, True),
        (number.key, number.label, row.applicant_id, True, True),
    ]
    out += [
        (s.key, s.label, s.default, s.required, False) for s in kinds.certificate_type(row.cert_type).fields
    ]
    return out
