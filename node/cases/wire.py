"""The cases domain's protobuf forms: the one module of node.cases that imports tongban_api."""

from __future__ import annotations

from federation.units import Payload
from federation.wire import pack, unpack
from node.cases.records import Applicant, CaseRecord, Event, MaterialRef
from tongban_api.v1 import cases_pb2


def material_to_proto(ref: MaterialRef) -> cases_pb2.MaterialRef:
    return cases_pb2.MaterialRef(
        kind=ref.kind, sha256=ref.sha256, size=ref.size, format=ref.format, filename=ref.filename
    )


def material_from_proto(m: cases_pb2.MaterialRef) -> MaterialRef:
    return MaterialRef(m.kind, m.sha256, m.size, m.format, m.filename)


def event_to_proto(e: Event) -> cases_pb2.CaseEvent:
    return cases_pb2.CaseEvent(
        event_id=e.event_id,
        case_id=e.case_id,
        action=e.action,
        node=e.node,
        clerk=e.clerk,
        at_us=e.at_us,
        reason=e.reason,
        state=e.state,
        holder=e.holder,
        materials=[material_to_proto(m) for m in e.materials],
        needs=list(e.needs),
        result=e.result,
        stars=e.stars,
        due_date=e.due_date,
        transfer_to=e.transfer_to,
        note=e.note,
    )


def event_from_proto(m: cases_pb2.CaseEvent) -> Event:
    return Event(
        event_id=m.event_id,
        case_id=m.case_id,
        action=m.action,
        node=m.node,
        clerk=m.clerk,
        at_us=m.at_us,
        reason=m.reason,
        state=m.state,
        holder=m.holder,
        materials=tuple(material_from_proto(x) for x in m.materials),
        needs=tuple(m.needs),
        result=m.result,
        stars=m.stars,
        due_date=m.due_date,
        transfer_to=m.transfer_to,
        note=m.note,
    )


def record_to_proto(r: CaseRecord) -> cases_pb2.CaseRecord:
    return cases_pb2.CaseRecord(
        case_id=r.case_id,
        number=r.number,
        item_code=r.item_code,
        item_name=r.item_name,
        accepting_node=r.accepting_node,
        holder=r.holder,
        state=r.state,
        applicant=cases_pb2.Applicant(
            name=r.applicant.name, id_number=r.applicant.id_number, phone=r.applicant.phone
        ),
        form=dict(r.form),
        materials=[material_to_proto(m) for m in r.materials],
        history=[event_to_proto(e) for e in r.history],
        catalog_version=r.catalog_version,
        opened_at_us=r.opened_at_us,
        due_date=r.due_date,
        transfer_to=r.transfer_to,
        result=r.result,
        stars=r.stars,
    )


def record_from_proto(m: cases_pb2.CaseRecord) -> CaseRecord:
    return CaseRecord(
        case_id=m.case_id,
        number=m.number,
        item_code=m.item_code,
        item_name=m.item_name,
        accepting_node=m.accepting_node,
        holder=m.holder,
        state=m.state,
        applicant=Applicant(m.applicant.name, m.applicant.id_number, m.applicant.phone),
        form=dict(m.form),
        materials=tuple(material_from_proto(x) for x in m.materials),
        history=tuple(event_from_proto(e) for e in m.history),
        catalog_version=m.catalog_version,
        opened_at_us=m.opened_at_us,
        due_date=m.due_date,
        transfer_to=m.transfer_to,
        result=m.result,
        stars=m.stars,
    )


def submit_payload(record: CaseRecord) -> Payload:
    return pack(cases_pb2.CaseSubmit(case=record_to_proto(record)))


def submit_record(payload: Payload) -> CaseRecord:
    return record_from_proto(unpack(payload, cases_pb2.CaseSubmit()).case)


def transition_payload(event: Event, record: CaseRecord | None = None) -> Payload:
    message = cases_pb2.CaseTransition(event=event_to_proto(event))
    if record is not None:
        message.case.CopyFrom(record_to_proto(record))
    return pack(message)


def transition(payload: Payload) -> tuple[Event, CaseRecord | None]:
    message = unpack(payload, cases_pb2.CaseTransition())
    return event_from_proto(message.event), record_from_proto(message.case) if message.HasField(
        "case"
    ) else None


def clerk_payload(name: str, token_sha256: bytes) -> Payload:
    return pack(cases_pb2.ClerkEvent(name=name, token_sha256=token_sha256))


def clerk_event(payload: Payload) -> tuple[str, bytes]:
    message = unpack(payload, cases_pb2.ClerkEvent())
    return message.name, message.token_sha256
