"""The case book of one node: every case it takes part in, changed only by events.

How a case moves (DESIGN.md §5, the rules in node.cases.lifecycle):

* A clerk's action is checked here against the case as this node knows it, then recorded as a
  local event (`case.open`, `case.act`) through `Federation.act`. Everything the event needs —
  case ID and number, event ID, time, due date, the clerk — is chosen before and travels in
  its payload, so applying it depends on nothing else (the log can be replayed).
* The local handler applies the event and, in the same transaction, sends it to every other
  party of the case (the accepting node, the holder, the target of a pending transfer) as a
  `case.event` message; a new case goes to its competent node as `case.submit`, a transfer
  offer to its target as `case.offer` with the whole case. Messages of one case keep their
  order per pair of nodes.
* A receiving node applies the same rules. An event it heard before (same event ID) changes
  nothing. An event from a node it does not yet know as the party allowed to act (a new holder
  whose commit is still on its way) is retried later; an event the state machine forbids is
  refused (FAILED_PRECONDITION naming the state), and a submit for an item the peer may not
  send (PERMISSION_DENIED) or that fails the catalog (INVALID_ARGUMENT) is refused too.
* Some events follow from others at once, with IDs derived from the event that caused them:
  the holder receives a submitted case (`receive`), the accepting node resubmits once every
  material asked for is in (`resubmit`), the holder commits a transfer its target accepted
  (`transferred`).
* A step that leaves the state as it was is kept with the state and holder its author saw, so
  that the history reads the same on every node whatever order the steps of different nodes
  reached it in.

Transfer keeps one holder at every moment: the holder offers, the target accepts, the holder
commits. Until the commit the old holder holds the case (and may not act on it while the offer
is open); the commit moves it in one transaction of the old holder, after which the old
holder can no longer act and the new one acts as soon as the commit reaches it. A refused
offer leaves the case where it was. A withdrawal calls a pending offer off; the target may
answer it before it hears of that, and its answer, recorded wherever it arrives, changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select
from ulid import ULID

from federation import Federation
from federation.address import InvalidNodeId, NodeId, validate_node_id
from federation.errors import (
    FailedPrecondition,
    FederationError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Rejected,
)
from federation.handlers import Delivered
from federation.store import Database, Tx
from federation.units import LocalEvent, SealedEnvelope
from node.cases import lifecycle, validate, wire, workdays
from node.cases.blobs import BlobStore, valid_digest
from node.cases.models import CaseEventRow, CaseMaterialRow, CaseRow, ClerkRow
from node.cases.records import Applicant, CaseRecord, Event, MaterialRef
from node.catalog import Catalog, CatalogError, Item, load_catalog

_log = logging.getLogger("tongban.cases")


class NotYet(Exception):
    """A message that cannot apply yet (an earlier one on another path is still on its way)."""


@dataclass(frozen=True)
class Opening:
    """What a clerk asks for when opening a case."""

    item: str
    applicant: Applicant
    to: str
    materials: tuple[MaterialRef, ...]
    form: dict[str, str]


@dataclass(frozen=True)
class Action:
    """A clerk's action on a case."""

    action: str
    reason: str = ""
    needs: tuple[str, ...] = ()
    note: str = ""
    result: str = ""
    stars: int = 0
    to: str = ""
    attachments: tuple[MaterialRef, ...] = ()


@dataclass(frozen=True)
class Listing:
    rows: list[CaseRow]
    total: int


def new_id() -> str:
    return str(ULID())


def next_number(session: Session, division: str, now_us: int) -> str:
    """The number of the next case this node opens today (Beijing date): DIVISION-YYYYMMDD-NNNNNN.

    Asked as a range of the unique index on `number` (the prefix followed by six digits, which
    sorts the same in any collation): a prefix match alone (LIKE) is not served by that index on
    SQLite or on PostgreSQL, and read every case number the node had ever stored.
    """
    prefix = f"{division}-{workdays.china_date(now_us).strftime('%Y%m%d')}-"
    last = session.execute(last_number_query(prefix)).scalar()
    sequence = int(str(last).rsplit("-", 1)[1]) + 1 if last else 1
    return f"{prefix}{sequence:06d}"


def last_number_query(prefix: str) -> Any:
    """The highest case number starting with `prefix` (DIVISION-YYYYMMDD-), as a range of the index."""
    number = col(CaseRow.number)
    return select(func.max(CaseRow.number)).where(
        number >= f"{prefix}000000", number <= f"{prefix}999999", number.startswith(prefix)
    )


def holder_of(session: Session, case_id: str) -> str | None:
    """The node that holds case `case_id` (an ID or a case number) as this node knows it.

    None when this node does not know the case. The video and certificate domains ask this
    ("does this node hold case X?": `holder_of(session, x) == node_id`).
    """
    row = _find(session, case_id)
    return row.holder if row is not None else None


@dataclass(frozen=True)
class KnownCase:
    """A case as other domains see it: its ID, its number, and the node holding it as known here."""

    case_id: str
    number: str
    holder: str


def known_case(session: Session, ref: str) -> KnownCase | None:
    """The case `ref` names (an ID or a case number), or None when this node does not know it."""
    row = _find(session, ref)
    return KnownCase(row.case_id, row.number, row.holder) if row is not None else None


def case_id_of(session: Session, ref: str) -> str:
    """The case ID for `ref`: a case ID, or a case number as clerks read it; `ref` when unknown."""
    row = _find(session, ref)
    return row.case_id if row is not None else ref


def _find(session: Session, ref: str) -> CaseRow | None:
    row = session.get(CaseRow, ref)
    if row is None:
        row = session.exec(select(CaseRow).where(col(CaseRow.number) == ref)).first()
    return row


class CaseBook:
    def __init__(
        self,
        federation: Federation,
        db: Database,
        blobs: BlobStore,
        catalog_of: Callable[[str], Awaitable[Catalog]],
    ) -> None:
        self.federation = federation
        self.node_id = federation.node_id
        self.division = NodeId.parse(self.node_id).division
        self.db = db
        self.blobs = blobs
        self.catalog_of = catalog_of  # async: node_id -> Catalog (fetched when not cached)
        self.clerks: dict[bytes, str] = {}
        # Hooks the component sets: what to do after a commit that brought material references
        # or changed a due date.
        self.on_materials: Callable[[], None] = lambda: None
        self.on_due: Callable[[str, str, str], None] = lambda case_id, number, due: None
        handlers = federation.handlers
        handlers.register_local("clerk.add", self._apply_clerk)
        handlers.register_local("case.open", self._apply_open)
        handlers.register_local("case.act", self._apply_act)
        handlers.register("case.submit", self._receive_submit, on_receipt=self._submit_receipt)
        handlers.register("case.event", self._receive_event)
        handlers.register("case.offer", self._receive_offer)

    async def load(self) -> None:
        rows = await self.db.read(lambda s: list(s.exec(select(ClerkRow)).all()))
        self.clerks = {row.token_sha256: row.name for row in rows}

    # -- clerks -----------------------------------------------------------------------------------

    async def add_clerk(self, name: str, token_sha256: bytes) -> None:
        name = name.strip()
        if not name or len(name) > 64 or any(c in name for c in "/\\\n\t"):
            raise InvalidArgument("a clerk's name is 1-64 characters without slashes, e.g. 王芳 or wang.fang")

        def add(tx: Tx) -> None:
            if tx.session.get(ClerkRow, name) is not None:
                raise FailedPrecondition(f"clerk {name} already exists here; choose another name")
            self.federation.act(tx, "clerk.add", wire.clerk_payload(name, token_sha256))

        await self.db.write(add)

    def _apply_clerk(self, tx: Tx, event: LocalEvent) -> None:
        name, digest = wire.clerk_event(event.payload)
        tx.session.add(ClerkRow(name=name, token_sha256=digest, created_at_us=tx.now_us))
        tx.session.flush()
        tx.after_commit(lambda: self.clerks.__setitem__(digest, name))

    def clerk_for(self, token_sha256: bytes) -> str | None:
        return self.clerks.get(token_sha256)

    async def list_clerks(self) -> list[ClerkRow]:
        return await self.db.read(lambda s: list(s.exec(select(ClerkRow).order_by(col(ClerkRow.name))).all()))

    # -- opening ------------------------------------------------------------------------------------

    async def route(self, applicant_id: str, item: str) -> str:
        """The competent node for an applicant: their division's node, then its city, province."""
        division = validate.division_of(applicant_id)
        try:
            chain = NodeId.parse(f"cn-{division}").route()
        except InvalidNodeId:
            raise InvalidArgument(
                f"the applicant's number starts with {division}, not a division code; pass --to NODE"
            ) from None
        tried = []
        first: Catalog | None = None
        for candidate in chain:
            node_id = str(candidate)
            if node_id != self.node_id and self.federation.peers.get(node_id) is None:
                continue
            tried.append(node_id)
            try:
                catalog = await self.catalog_of(node_id)
            except FederationError:
                continue
            if catalog.item(item) is not None:
                return node_id
            first = first or catalog
        route = " → ".join(str(c) for c in chain)
        if first is not None:
            try:
                first.require(item)
            except CatalogError as error:
                raise InvalidArgument(
                    f"{error} (nor do the other nodes along {route} that are known here)"
                ) from None
        raise FailedPrecondition(
            f"no known node handles {item} for division {division} (looked along {route}; "
            f"known there: {', '.join(tried) or 'none'}); pass --to NODE, or peer with the competent node"
        )

    async def open(self, clerk: str, opening: Opening) -> CaseRecord:
        applicant = self._applicant(opening.applicant)
        if opening.to:
            try:
                to = validate_node_id(opening.to)
            except InvalidNodeId as error:
                raise InvalidArgument(str(error)) from None
        else:
            to = await self.route(applicant.id_number, opening.item)
        if to != self.node_id:
            peer = self.federation.peers.require(to)
        catalog = await self.catalog_of(to)
        try:
            item = catalog.require(opening.item)
        except CatalogError as error:
            raise InvalidArgument(str(error)) from None
        if to != self.node_id:
            if "proxy" not in item.modes:
                raise FailedPrecondition(
                    f"{to} does not take {item.code} by proxy acceptance (its modes: {', '.join(item.modes)}); "
                    "the applicant applies there in person"
                )
            if not peer.allows(item.code):
                raise PermissionDenied(
                    f"cases for {item.code} are not allowed with {to} here; its operator may allow them with "
                    f"`tongban peer allow {to} {item.code}`"
                )
        form = validate.form(item, opening.form, to)
        materials = self._checked_materials(item, opening.materials, to, complete=True)
        case_id = new_id()
        event_id = new_id()

        def open_case(tx: Tx) -> CaseRecord:
            number = self._next_number(tx.session, tx.now_us)
            event = Event(
                event_id,
                case_id,
                "submit",
                self.node_id,
                clerk,
                tx.now_us,
                state=lifecycle.SUBMITTED,
                holder=to,
                materials=materials,
            )
            record = CaseRecord(
                case_id=case_id,
                number=number,
                item_code=item.code,
                item_name=item.name,
                accepting_node=self.node_id,
                holder=to,
                state=lifecycle.SUBMITTED,
                applicant=applicant,
                form=form,
                materials=materials,
                history=(event,),
                catalog_version=catalog.version,
                opened_at_us=tx.now_us,
            )
            self.federation.act(tx, "case.open", wire.submit_payload(record), case_id=case_id)
            return self._record(tx.session, case_id)

        return await self.db.write(open_case)

    def _applicant(self, applicant: Applicant) -> Applicant:
        name = applicant.name.strip()
        if not name:
            raise InvalidArgument("the applicant's name is required (--applicant-name 陈添荣)")
        if len(name) > 100:
            raise InvalidArgument("the applicant's name is longer than 100 characters")
        number = validate.applicant_number(applicant.id_number)
        phone = validate.phone(applicant.phone) if applicant.phone.strip() else ""
        return Applicant(name, number, phone)

    def _stored(self, kind: str, ref: MaterialRef) -> MaterialRef:
        """A reference to a file uploaded here, with its size and format read from the file."""
        digest = self._digest(ref.sha256)
        if not self.blobs.has(digest):
            raise FailedPrecondition(
                f"material {kind} ({digest[:12]}…) has not been uploaded to {self.node_id}; upload it first"
            )
        return MaterialRef(
            kind, digest, self.blobs.size(digest), self.blobs.format(digest), ref.filename[:200]
        )

    def _checked_materials(
        self, item: Item, given: Iterable[MaterialRef], node_id: str, *, complete: bool
    ) -> tuple[MaterialRef, ...]:
        checked: dict[str, MaterialRef] = {}
        for ref in given:
            if ref.kind in checked:
                raise InvalidArgument(f"material {ref.kind} is given twice; give each kind once")
            checked[ref.kind] = self._stored(ref.kind, ref)
        validate.materials(
            item, {k: (m.format, m.size) for k, m in checked.items()}, node_id, complete=complete
        )
        return tuple(checked[k] for k in sorted(checked))

    @staticmethod
    def _digest(text: str) -> str:
        return valid_digest(text)

    def _next_number(self, session: Session, now_us: int) -> str:
        return next_number(session, self.division, now_us)

    def _apply_open(self, tx: Tx, event: LocalEvent) -> None:
        record = wire.submit_record(event.payload)
        self._insert(tx, record, fetch_from="")
        if record.holder != self.node_id:
            self.federation.enqueue(
                tx,
                to=record.holder,
                kind="case.submit",
                payload=wire.submit_payload(record),
                case_id=record.case_id,
            )
        else:
            self._follow(tx, record.case_id, record.history[-1])

    # -- clerks' actions -------------------------------------------------------------------------

    async def act(self, clerk: str, ref: str, action: Action) -> CaseRecord:
        if action.action not in lifecycle.CLERK_ACTIONS:
            raise InvalidArgument(
                f"{action.action!r} is not a case action; use one of {', '.join(lifecycle.CLERK_ACTIONS)}"
            )
        prepared = await self._prepare(ref, action)
        event_id = new_id()

        def act(tx: Tx) -> CaseRecord:
            row = self._require(tx.session, ref)
            event = self._event_for(tx, row, event_id, clerk, prepared)
            lifecycle.check(self._position(row), event.action, self.node_id)
            self.federation.act(tx, "case.act", wire.transition_payload(event), case_id=row.case_id)
            return self._record(tx.session, row.case_id)

        return await self.db.write(act)

    async def _prepare(self, ref: str, action: Action) -> Action:
        """Checks that need no transaction (and may fetch a catalog)."""
        row = await self.db.read(lambda s: self._require(s, ref))
        name = action.action
        if name in {"reject", "withdraw", "transfer", "transfer-refuse"} and not action.reason.strip():
            raise InvalidArgument(f"{name} needs a reason (--reason) that the applicant can be told")
        if name == "complete" and not action.result.strip():
            raise InvalidArgument("complete needs the decision (--result), e.g. --result 准予提取")
        if name == "rate" and not 1 <= action.stars <= 5:
            raise InvalidArgument("a rating is 1 (very dissatisfied) to 5 (very satisfied) stars")
        if name == "supplement":
            catalog = await self.catalog_of(self.node_id)
            item = catalog.item(row.item_code)
            listed = {m.kind for m in item.materials} if item else set()
            unknown = sorted(set(action.needs) - listed)
            if not action.needs:
                raise InvalidArgument(
                    "a supplement request names the materials needed (--need KIND[,KIND]), all at once"
                )
            if unknown:
                raise InvalidArgument(
                    f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a material of {row.item_code} "
                    f"(it lists {', '.join(sorted(listed))})"
                )
        if name == "transfer":
            try:
                to = validate_node_id(action.to)
            except InvalidNodeId as error:
                raise InvalidArgument(str(error)) from None
            if to == self.node_id:
                raise InvalidArgument(f"case {row.number} is already here; transfer it to another node")
            peer = self.federation.peers.require(to)
            catalog = await self.catalog_of(to)
            item = catalog.item(row.item_code)
            if item is None or "transfer" not in item.modes:
                raise FailedPrecondition(
                    f"{to} does not take {row.item_code} by transfer (see `tongban catalog show --peer {to}`)"
                )
            if not peer.allows(row.item_code):
                raise PermissionDenied(
                    f"cases for {row.item_code} are not allowed with {to} here (`tongban peer allow {to} {row.item_code}`)"
                )
            action = replace(action, to=to)
        if action.attachments:
            if name != "complete":
                raise InvalidArgument("only a decision (complete) carries result documents (--attach)")
            action = replace(action, attachments=tuple(self._stored("result", a) for a in action.attachments))
        return action

    def _event_for(self, tx: Tx, row: CaseRow, event_id: str, clerk: str, action: Action) -> Event:
        due = ""
        if action.action == "accept":
            catalog = load_catalog(tx.session, self.node_id)
            item = catalog.item(row.item_code) if catalog else None
            days = item.time_limit_days if item else 0
            due = workdays.due_date(tx.now_us, days).isoformat()
        return Event(
            event_id=event_id,
            case_id=row.case_id,
            # The accepting node asks; the holder decides in its own order (see lifecycle).
            action="withdraw-request" if action.action == "withdraw" else action.action,
            node=self.node_id,
            clerk=clerk,
            at_us=tx.now_us,
            reason=action.reason.strip(),
            needs=tuple(action.needs),
            result=action.result.strip(),
            stars=action.stars,
            due_date=due,
            transfer_to=action.to,
            note=action.note.strip(),
            materials=action.attachments,
        )

    async def add_materials(self, clerk: str, ref: str, materials: tuple[MaterialRef, ...]) -> CaseRecord:
        row = await self.db.read(lambda s: self._require(s, ref))
        if not materials:
            raise InvalidArgument("name at least one material: KIND=PATH")
        catalog = await self.catalog_of(row.holder)
        item = catalog.item(row.item_code)
        if item is None:
            raise FailedPrecondition(f"{row.holder}'s catalog no longer lists {row.item_code}")
        checked = self._checked_materials(item, materials, row.holder, complete=False)
        event_id = new_id()

        def add(tx: Tx) -> CaseRecord:
            current = self._require(tx.session, ref)
            event = Event(
                event_id, current.case_id, "add-material", self.node_id, clerk, tx.now_us, materials=checked
            )
            lifecycle.check(self._position(current), "add-material", self.node_id)
            self.federation.act(tx, "case.act", wire.transition_payload(event), case_id=current.case_id)
            return self._record(tx.session, current.case_id)

        return await self.db.write(add)

    async def mark(self, case_id: str, action: str) -> bool:
        """A timer's event (remind, overdue) on a case this node holds; False if it no longer applies."""
        event_id = f"{case_id}+{action}"

        def mark(tx: Tx) -> bool:
            row = tx.session.get(CaseRow, case_id)
            if row is None or tx.session.get(CaseEventRow, event_id) is not None:
                return False
            try:
                lifecycle.check(self._position(row), action, self.node_id)
            except FederationError:
                return False
            event = Event(event_id, case_id, action, self.node_id, "", tx.now_us, due_date=row.due_date)
            self.federation.act(tx, "case.act", wire.transition_payload(event), case_id=case_id)
            return True

        return await self.db.write(mark)

    def _apply_act(self, tx: Tx, local: LocalEvent) -> None:
        event, _ = wire.transition(local.payload)
        row = self._require(tx.session, event.case_id)
        applied = self._apply(tx, row, event, sender=self.node_id)
        self._follow(tx, row.case_id, applied)

    # -- receiving ------------------------------------------------------------------------------

    def _receive_submit(self, tx: Tx, sealed: SealedEnvelope) -> None:
        sender = sealed.envelope.sender
        record = wire.submit_record(sealed.envelope.payload)
        if record.accepting_node != sender or record.holder != self.node_id:
            raise Rejected(
                f"case {record.number} names {record.accepting_node} as accepting node and {record.holder} "
                f"as holder, but came from {sender} to {self.node_id}",
                code=InvalidArgument.code,
            )
        if tx.session.get(CaseRow, record.case_id) is not None:
            return
        peer = self.federation.peers.get(sender)
        if peer is None or not peer.allows(record.item_code):
            raise Rejected(
                f"{sender} may not send cases for {record.item_code} to {self.node_id}; its operator may allow "
                f"it with `tongban peer allow {sender} {record.item_code}`",
                code=PermissionDenied.code,
            )
        catalog = load_catalog(tx.session, self.node_id)
        item = catalog.item(record.item_code) if catalog else None
        if item is None:
            raise Rejected(
                f"{self.node_id} has no service item {record.item_code} in its catalog",
                code=InvalidArgument.code,
            )
        try:
            validate.form(item, record.form, self.node_id)
            validate.materials(
                item, {m.kind: (m.format, m.size) for m in record.materials}, self.node_id, complete=True
            )
            validate.applicant_number(record.applicant.id_number)
        except InvalidArgument as error:
            raise Rejected(error.message, code=InvalidArgument.code) from None
        self._insert(tx, record, fetch_from=sender)
        self._follow(tx, record.case_id, record.history[-1])

    def _submit_receipt(self, tx: Tx, delivered: Delivered) -> None:
        if delivered.ack.outcome == "applied":
            return
        row = tx.session.get(CaseRow, delivered.case_id)
        if row is None:
            return
        event = Event(
            f"{delivered.message_id}+refused",
            row.case_id,
            "refused-by-peer",
            self.node_id,
            "",
            tx.now_us,
            reason=f"{delivered.peer}: {delivered.ack.reason}",
        )
        try:
            self._apply(tx, row, event, sender=self.node_id, check_role=False)
        except FederationError:
            _log.warning("case %s was refused by %s: %s", row.number, delivered.peer, delivered.ack.reason)

    def _receive_event(self, tx: Tx, sealed: SealedEnvelope) -> None:
        event, _ = wire.transition(sealed.envelope.payload)
        if tx.session.get(CaseEventRow, event.event_id) is not None:
            return
        row = tx.session.get(CaseRow, event.case_id)
        if row is None:
            raise NotYet(f"case {event.case_id} is not known here yet")
        if event.action == "add-material" and row.holder == self.node_id:
            self._check_added(tx.session, row, event)
        applied = self._apply(tx, row, event, sender=sealed.envelope.sender)
        self._follow(tx, row.case_id, applied)

    def _check_added(self, session: Session, row: CaseRow, event: Event) -> None:
        """The holder checks added materials against its own catalog, as the sender did."""
        catalog = load_catalog(session, self.node_id)
        item = catalog.item(row.item_code) if catalog else None
        if item is None:
            raise Rejected(f"{self.node_id} no longer lists {row.item_code}", code=InvalidArgument.code)
        try:
            validate.materials(
                item, {m.kind: (m.format, m.size) for m in event.materials}, self.node_id, complete=False
            )
        except FederationError as error:
            raise Rejected(error.message, code=error.code) from None

    def _receive_offer(self, tx: Tx, sealed: SealedEnvelope) -> None:
        event, record = wire.transition(sealed.envelope.payload)
        sender = sealed.envelope.sender
        if record is None or event.transfer_to != self.node_id or record.holder != sender:
            raise Rejected(
                "a transfer offer must come from the holder, with the case", code=InvalidArgument.code
            )
        if tx.session.get(CaseEventRow, event.event_id) is not None:
            return
        peer = self.federation.peers.get(sender)
        if peer is None or not peer.allows(record.item_code):
            raise Rejected(
                f"{sender} may not transfer cases for {record.item_code} to {self.node_id} "
                f"(`tongban peer allow {sender} {record.item_code}`)",
                code=PermissionDenied.code,
            )
        earlier = tuple(e for e in record.history if e.event_id != event.event_id)
        if tx.session.get(CaseRow, record.case_id) is None:
            self._insert(tx, replace(record, transfer_to="", history=earlier), fetch_from=sender)
        row = self._require(tx.session, record.case_id)
        for past in earlier:
            if tx.session.get(CaseEventRow, past.event_id) is None:
                self._store_event(tx, past)
        row.holder, row.state, row.due_date = record.holder, record.state, record.due_date
        applied = self._apply(tx, row, event, sender=sender)
        self._follow(tx, row.case_id, applied)

    # -- applying -------------------------------------------------------------------------------

    def _apply(self, tx: Tx, row: CaseRow, event: Event, *, sender: str, check_role: bool = True) -> Event:
        """Check an event against the case as known here, record it, send it on."""
        position = self._position(row)
        answering = event.action in {"transfer-accept", "transfer-refuse"}
        if answering and event.node == self.node_id and self._accepted_the_offer(tx.session, row):
            raise FailedPrecondition(
                f"case {row.number}: {self.node_id} accepted the transfer already; "
                f"it moves here when {row.holder} commits it"
            )
        if check_role:
            try:
                rule = lifecycle.check(position, event.action, event.node)
            except PermissionDenied as error:
                if event.node == self.node_id:
                    raise
                # The node may have become the holder on a path this node has not heard yet.
                raise NotYet(error.message) from None
            except FailedPrecondition as error:
                if event.node == self.node_id:
                    raise
                if not self._answers_a_called_off_offer(tx.session, row, event):
                    raise Rejected(error.message) from None
                # The target answered an offer that a withdrawal called off before the answer
                # came: it happened, so it is recorded as everywhere else, and changes nothing.
                rule = lifecycle.RULES[event.action]
        else:
            rule = lifecycle.RULES[event.action]
        parties_before = self._parties(row)
        state = lifecycle.next_state(position, rule)
        row.state = state
        if event.action == "transfer":
            row.transfer_to = event.transfer_to
        elif event.action == "transfer-refuse":
            row.transfer_to = ""
        elif event.action == "transferred":
            row.holder, row.transfer_to = row.transfer_to, ""
        elif event.action == "withdraw":
            row.transfer_to = ""  # a pending transfer is called off
        elif event.action == "accept":
            row.due_date = event.due_date
        elif event.action == "complete":
            row.result = event.result
        elif event.action == "rate":
            row.stars = event.stars
        elif event.action == "overdue":
            row.overdue = True
        row.updated_at_us = max(row.updated_at_us, event.at_us)
        applied = replace(event, state=state, holder=row.holder)
        if event.node != self.node_id and rule.target is None and event.state:
            # A step that leaves the state as it was is kept with the state and holder its
            # author saw: steps of different nodes may reach each node in a different order (a
            # withdrawal overtaking a note), and the history must read the same everywhere.
            applied = replace(event, holder=event.holder or row.holder)
        self._store_event(tx, applied)
        fetch_from = "" if sender == self.node_id else sender
        for ref in event.materials:
            self._store_material(tx, row.case_id, ref, fetch_from)
        tx.session.add(row)
        tx.session.flush()
        self._send(tx, row, applied, parties_before | self._parties(row), sender)
        if event.action in {"accept", "transferred"} and row.holder == self.node_id and row.due_date:
            number, due = row.number, row.due_date
            tx.after_commit(lambda: self.on_due(row.case_id, number, due))
        if event.materials and fetch_from:
            tx.after_commit(self.on_materials)
        return applied

    def _accepted_the_offer(self, session: Session, row: CaseRow) -> bool:
        """Whether this node, the target of the pending offer, accepted it already."""
        if row.transfer_to != self.node_id:
            return False
        events = self._events(session, row.case_id)
        offered = max((i for i, e in enumerate(events) if e.action == "transfer"), default=-1)
        return any(e.action == "transfer-accept" and e.node == self.node_id for e in events[offered + 1 :])

    def _answers_a_called_off_offer(self, session: Session, row: CaseRow, event: Event) -> bool:
        """Whether `event` is the target's answer to a transfer offer a withdrawal called off."""
        if event.action not in {"transfer-accept", "transfer-refuse"} or row.transfer_to:
            return False
        if row.state != lifecycle.WITHDRAWN:
            return False
        offers = [e for e in self._events(session, row.case_id) if e.action == "transfer"]
        return bool(offers) and offers[-1].transfer_to == event.node

    def _send(self, tx: Tx, row: CaseRow, event: Event, parties: set[str], sender: str) -> None:
        """Tell the other parties. A node passes on what it hears only to a holder the event's
        author may not know yet (an event of the accepting node that reached the old holder
        after it transferred the case)."""
        if event.action == "refused-by-peer":
            return  # the peer refused the case: it has nothing to hear about
        if sender == self.node_id:
            targets = parties - {self.node_id}
        elif event.action == "transfer":
            targets = set()
        else:
            targets = {row.holder} - {self.node_id, event.node, sender}
        for party in sorted(targets):
            if self.federation.peers.get(party) is None:
                continue
            if event.action == "transfer" and party == event.transfer_to:
                record = self._record(tx.session, row.case_id)
                payload = wire.transition_payload(event, record)
                self.federation.enqueue(tx, to=party, kind="case.offer", payload=payload, case_id=row.case_id)
            else:
                payload = wire.transition_payload(event)
                self.federation.enqueue(tx, to=party, kind="case.event", payload=payload, case_id=row.case_id)

    def _follow(self, tx: Tx, case_id: str, event: Event) -> None:
        """The events that follow from `event` here at once."""
        row = self._require(tx.session, case_id)
        follow: str | None = None
        if row.holder == self.node_id and row.state == lifecycle.SUBMITTED:
            follow = "receive"
        elif (
            event.action == "add-material"
            and row.state == lifecycle.SUPPLEMENT
            and row.accepting_node == self.node_id
            and not self._outstanding(tx.session, row)
        ):
            follow = "resubmit"
        elif event.action == "transfer-accept" and row.holder == self.node_id and row.transfer_to:
            follow = "transferred"
        elif event.action == "withdraw-request" and row.holder == self.node_id:
            follow = "withdraw" if row.state in lifecycle.RULES["withdraw"].sources else "withdraw-refused"
        if follow is None:
            return
        reason = ""
        if follow == "withdraw":
            reason = event.reason
        elif follow == "withdraw-refused":
            reason = f"case {row.number} was already {row.state} at {row.holder}"
        then = Event(
            f"{event.event_id}+{follow}", case_id, follow, self.node_id, "", event.at_us, reason=reason
        )
        applied = self._apply(tx, row, then, sender=self.node_id)
        self._follow(tx, case_id, applied)

    def _outstanding(self, session: Session, row: CaseRow) -> set[str]:
        """Kinds asked for by the last supplement request and not added since."""
        events = self._events(session, row.case_id)
        asked: set[str] = set()
        for event in events:
            if event.action == "supplement":
                asked = set(event.needs)
            elif event.action == "add-material":
                asked -= {m.kind for m in event.materials}
        return asked

    @staticmethod
    def _parties(row: CaseRow) -> set[str]:
        return {p for p in (row.accepting_node, row.holder, row.transfer_to) if p}

    @staticmethod
    def _position(row: CaseRow) -> lifecycle.Position:
        return lifecycle.Position(row.number, row.state, row.holder, row.accepting_node, row.transfer_to)

    # -- storing --------------------------------------------------------------------------------

    def _insert(self, tx: Tx, record: CaseRecord, *, fetch_from: str) -> None:
        last = record.history[-1] if record.history else None
        row = CaseRow(
            case_id=record.case_id,
            number=record.number,
            item_code=record.item_code,
            item_name=record.item_name,
            accepting_node=record.accepting_node,
            holder=record.holder,
            state=record.state,
            transfer_to=record.transfer_to,
            applicant_name=record.applicant.name,
            applicant_id=record.applicant.id_number,
            applicant_phone=record.applicant.phone,
            form=json.dumps(record.form, ensure_ascii=False, sort_keys=True),
            catalog_version=record.catalog_version,
            opened_at_us=record.opened_at_us,
            updated_at_us=last.at_us if last else record.opened_at_us,
            due_date=record.due_date,
            result=record.result,
            stars=record.stars,
        )
        tx.session.add(row)
        tx.session.flush()
        for event in record.history:
            self._store_event(tx, event)
        for ref in record.materials:
            self._store_material(tx, record.case_id, ref, fetch_from)
        if fetch_from and record.materials:
            tx.after_commit(self.on_materials)

    def _store_event(self, tx: Tx, event: Event) -> None:
        detail = {
            "materials": [m.__dict__ for m in event.materials],
            "needs": list(event.needs),
            "result": event.result,
            "stars": event.stars,
            "due_date": event.due_date,
            "transfer_to": event.transfer_to,
            "note": event.note,
        }
        tx.session.add(
            CaseEventRow(
                event_id=event.event_id,
                case_id=event.case_id,
                action=event.action,
                node=event.node,
                clerk=event.clerk,
                at_us=event.at_us,
                reason=event.reason,
                state=event.state,
                holder=event.holder,
                detail=json.dumps(detail, ensure_ascii=False, sort_keys=True),
            )
        )
        tx.session.flush()

    def _store_material(self, tx: Tx, case_id: str, ref: MaterialRef, fetch_from: str) -> None:
        row = tx.session.get(CaseMaterialRow, (case_id, ref.kind)) or CaseMaterialRow(
            case_id=case_id,
            kind=ref.kind,
            sha256=ref.sha256,
            size=ref.size,
            format=ref.format,
            added_at_us=tx.now_us,
        )
        row.sha256, row.size, row.format, row.filename = ref.sha256, ref.size, ref.format, ref.filename
        row.present = self.blobs.has(ref.sha256)
        row.fetch_from = "" if row.present else fetch_from
        row.added_at_us = tx.now_us
        tx.session.add(row)
        tx.session.flush()

    # -- reading --------------------------------------------------------------------------------

    def _require(self, session: Session, ref: str) -> CaseRow:
        row = _find(session, ref.strip())
        if row is None:
            raise NotFound(
                f"no case {ref!r} at {self.node_id}; `tongban case list --all` shows the cases this node knows"
            )
        return row

    @staticmethod
    def _events(session: Session, case_id: str) -> list[Event]:
        rows = session.exec(
            select(CaseEventRow)
            .where(col(CaseEventRow.case_id) == case_id)
            .order_by(col(CaseEventRow.at_us), col(CaseEventRow.event_id))
        ).all()
        return [_event(row) for row in rows]

    def _record(self, session: Session, case_id: str) -> CaseRecord:
        row = self._require(session, case_id)
        materials = session.exec(
            select(CaseMaterialRow)
            .where(col(CaseMaterialRow.case_id) == case_id)
            .order_by(col(CaseMaterialRow.kind))
        ).all()
        return CaseRecord(
            case_id=row.case_id,
            number=row.number,
            item_code=row.item_code,
            item_name=row.item_name,
            accepting_node=row.accepting_node,
            holder=row.holder,
            state=row.state,
            applicant=Applicant(row.applicant_name, row.applicant_id, row.applicant_phone),
            form=json.loads(row.form),
            materials=tuple(MaterialRef(m.kind, m.sha256, m.size, m.format, m.filename) for m in materials),
            history=tuple(self._events(session, case_id)),
            catalog_version=row.catalog_version,
            opened_at_us=row.opened_at_us,
            due_date=row.due_date,
            transfer_to=row.transfer_to,
            result=row.result,
            stars=row.stars,
            overdue=row.overdue,
        )

    async def show(self, ref: str) -> tuple[CaseRecord, list[str]]:
        """A case with its history, and the kinds whose files have not arrived here yet."""

        def read(session: Session) -> tuple[CaseRecord, list[str]]:
            row = self._require(session, ref)
            missing = session.exec(
                select(CaseMaterialRow.kind).where(
                    col(CaseMaterialRow.case_id) == row.case_id, col(CaseMaterialRow.present).is_(False)
                )
            ).all()
            return self._record(session, row.case_id), sorted(missing)

        return await self.db.read(read)

    async def list(self, box: str, state: str, overdue: bool, limit: int) -> Listing:
        if state and state not in lifecycle.STATES:
            raise InvalidArgument(f"{state!r} is not a case state; states are {', '.join(lifecycle.STATES)}")
        conditions = []
        if box == "inbox":
            conditions.append(col(CaseRow.holder) == self.node_id)
        elif box == "outbox":
            conditions.append(col(CaseRow.accepting_node) == self.node_id)
            conditions.append(col(CaseRow.holder) != self.node_id)
        elif box not in {"all", ""}:
            raise InvalidArgument(f"{box!r} is not a list; use --inbox, --outbox or --all")
        if state:
            conditions.append(col(CaseRow.state) == state)
        if overdue:
            conditions.append(col(CaseRow.overdue).is_(True))

        def read(session: Session) -> Listing:
            rows = session.exec(
                select(CaseRow).where(*conditions).order_by(col(CaseRow.updated_at_us).desc()).limit(limit)
            ).all()
            total = session.execute(select(func.count()).select_from(CaseRow).where(*conditions)).scalar_one()
            return Listing(list(rows), int(total))

        return await self.db.read(read)

    async def role(self, record: CaseRecord) -> str:
        me = self.node_id
        if record.holder == me and record.accepting_node == me:
            return "both"
        if record.holder == me:
            return "holder"
        if record.transfer_to == me:
            return "offered"
        if record.accepting_node == me:
            return "accepting"
        return "former"


def _event(row: CaseEventRow) -> Event:
    detail = json.loads(row.detail)
    return Event(
        event_id=row.event_id,
        case_id=row.case_id,
        action=row.action,
        node=row.node,
        clerk=row.clerk,
        at_us=row.at_us,
        reason=row.reason,
        state=row.state,
        holder=row.holder,
        materials=tuple(MaterialRef(**m) for m in detail.get("materials", [])),
        needs=tuple(detail.get("needs", [])),
        result=detail.get("result", ""),
        stars=int(detail.get("stars", 0)),
        due_date=detail.get("due_date", ""),
        transfer_to=detail.get("transfer_to", ""),
        note=detail.get("note", ""),
    )
