"""Certificate messages and events to and from their protobuf payloads (proto/.../certs.proto).

The one module of the certificate domain that imports the generated package for payloads;
decoding never trusts its input and raises WireError (the receiver answers INVALID_ARGUMENT).
"""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from federation import Payload, pack, unpack
from federation.wire import WireError
from node.certs.units import Consent, Issued, Refused, Request, StatusChange
from tongban_api.v1 import certs_pb2

__all__ = [
    "WireError",
    "issued",
    "pack_issued",
    "pack_refused",
    "pack_request",
    "pack_status",
    "refused",
    "request",
    "status",
]


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def micros(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def pack_request(item: Request) -> Payload:
    return pack(
        certs_pb2.CertificateRequest(
            request_id=item.request_id,
            requester=item.requester,
            issuer=item.issuer,
            certificate_type=item.cert_type,
            applicant_id=item.applicant_id,
            applicant_name=item.applicant_name,
            purpose=item.purpose,
            case_id=item.case_id,
            consent=certs_pb2.Consent(
                given_by=item.consent.given_by,
                given_at=timestamp(item.consent.given_at_us),
                purpose=item.consent.purpose,
                method=item.consent.method,
            ),
            clerk=item.clerk,
            requested_at=timestamp(item.requested_at_us),
        )
    )


def request(payload: Payload) -> Request:
    message = unpack(payload, certs_pb2.CertificateRequest())
    consent = message.consent
    return Request(
        request_id=message.request_id,
        requester=message.requester,
        issuer=message.issuer,
        cert_type=message.certificate_type,
        applicant_id=message.applicant_id,
        applicant_name=message.applicant_name,
        purpose=message.purpose,
        case_id=message.case_id,
        consent=Consent(consent.given_by, micros(consent.given_at), consent.purpose, consent.method),
        clerk=message.clerk,
        requested_at_us=micros(message.requested_at),
    )


def pack_issued(item: Issued) -> Payload:
    return pack(
        certs_pb2.CertificateIssued(
            request_id=item.request_id,
            certificate_id=item.certificate_id,
            token=item.token,
            status_index=item.status_index,
            clerk=item.clerk,
        )
    )


def issued(payload: Payload) -> Issued:
    message = unpack(payload, certs_pb2.CertificateIssued())
    return Issued(
        message.request_id, message.certificate_id, message.token, message.status_index, message.clerk
    )


def pack_refused(item: Refused) -> Payload:
    return pack(
        certs_pb2.CertificateRefused(request_id=item.request_id, reason=item.reason, clerk=item.clerk)
    )


def refused(payload: Payload) -> Refused:
    message = unpack(payload, certs_pb2.CertificateRefused())
    return Refused(message.request_id, message.reason, message.clerk)


def pack_status(item: StatusChange) -> Payload:
    return pack(
        certs_pb2.CertificateStatusChange(
            certificate_id=item.certificate_id, state=item.state, reason=item.reason, clerk=item.clerk
        )
    )


def status(payload: Payload) -> StatusChange:
    message = unpack(payload, certs_pb2.CertificateStatusChange())
    return StatusChange(message.certificate_id, message.state, message.reason, message.clerk)
