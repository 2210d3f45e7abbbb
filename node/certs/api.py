"""The certificate services: `Certificates` on the local API, `CertificatesFederation` on the
federation port (peers fetch this node's signed status list)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from federation.errors import InvalidArgument, NotFound
from node.api.convert import ts as _ts
from node.api.errors import refusals
from node.certs import document, kinds, sdjwt
from node.certs.models import CertificateRow, CertRequestRow
from node.certs.service import CertificateOffice, TrustSource, preview
from node.certs.units import Consent
from node.certs.wire import micros as _us
from tongban_api.v1 import certs_pb2, certs_pb2_grpc

if TYPE_CHECKING:
    from federation import Federation


def request_view(
    office: CertificateOffice, row: CertRequestRow, issuable: frozenset[str] | None = None
) -> certs_pb2.RequestView:
    view = certs_pb2.RequestView(
        request_id=row.request_id,
        role=row.role,
        requester=row.requester,
        issuer=row.issuer,
        certificate_type=row.cert_type,
        type_title=kinds.certificate_type(row.cert_type).title,
        applicant_id=row.applicant_id,
        applicant_name=row.applicant_name,
        purpose=row.purpose,
        case_id=row.case_id,
        consent=certs_pb2.Consent(
            given_by=row.consent_by,
            given_at=_ts(row.consent_at_us),
            purpose=row.consent_purpose,
            method=row.consent_method,
        ),
        clerk=row.clerk,
        requested_at=_ts(row.requested_at_us),
        state=row.state,
        reason=row.reason,
        certificate_id=row.certificate_id,
        decided_at=_ts(row.decided_at_us),
    )
    if row.role == "received" and row.state == "pending":
        view.valid_days = kinds.certificate_type(row.cert_type).valid_days
        for key, label, value, required, personal in preview(row):
            view.preview.append(
                certs_pb2.FieldPreview(
                    key=key, label=label, value=value, required=required, personal=personal
                )
            )
        if issuable is not None:
            view.issuable = row.cert_type in issuable
            if not view.issuable:
                view.not_issuable_because = f"this node's catalog does not list {row.cert_type}"
    return view


def certificate_view(office: CertificateOffice, row: CertificateRow) -> certs_pb2.CertificateView:
    token = sdjwt.parse(row.token)
    return certs_pb2.CertificateView(
        certificate_id=row.certificate_id,
        role=row.role,
        issuer=row.issuer,
        issuer_name=office.issuer_name(row.issuer),
        certificate_type=row.cert_type,
        type_title=kinds.certificate_type(row.cert_type).title,
        request_id=row.request_id,
        issued_at=_ts(row.issued_at_us),
        valid_from=_ts(row.valid_from_us),
        expires_at=_ts(row.expires_at_us),
        state=row.state,
        state_reason=row.state_reason,
        state_changed_at=_ts(row.state_changed_at_us),
        status_index=row.status_index,
        purpose=str(token.payload.get("purpose", "")),
        fields={name: str(value) for name, value in token.fields.items()},
    )


def trust_source(source: TrustSource) -> certs_pb2.TrustSource:
    return certs_pb2.TrustSource(
        issuer=source.issuer,
        name=source.name,
        list_issued_at=_ts(source.list_issued_at * 1_000_000),
        fetched_at=_ts(source.fetched_at_us),
        revoked=source.revoked,
        suspended=source.suspended,
        types=source.types,
        error=source.error,
    )


class CertificatesServicer(certs_pb2_grpc.CertificatesServicer):
    def __init__(self, office: CertificateOffice) -> None:
        self._office = office

    async def Request(
        self, request: certs_pb2.RequestCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.RequestView:
        async with refusals(context):
            if not request.HasField("consent"):
                raise InvalidArgument("the applicant's consent record is required")
            consent = request.consent
            row = await self._office.request(
                issuer=request.issuer,
                cert_type=request.certificate_type,
                applicant_id=request.applicant_id,
                applicant_name=request.applicant_name,
                purpose=request.purpose,
                case_id=request.case_id,
                consent=Consent(consent.given_by, _us(consent.given_at), consent.purpose, consent.method),
                clerk=request.clerk,
            )
        return request_view(self._office, row)

    async def ListRequests(
        self, request: certs_pb2.ListRequestsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.ListRequestsReply:
        role = request.role or "received"
        async with refusals(context):
            if role not in ("received", "sent"):
                raise InvalidArgument("role is 'received' or 'sent'")
            rows = await self._office.pending(role, request.state, min(request.limit or 200, 10_000))
            issuable = await self._office.issuable_types() if role == "received" else None
        return certs_pb2.ListRequestsReply(requests=[request_view(self._office, r, issuable) for r in rows])

    async def Issue(
        self, request: certs_pb2.IssueCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.CertificateView:
        async with refusals(context):
            row = await self._office.issue(
                request.request_id, dict(request.fields), request.valid_days, request.clerk
            )
        return certificate_view(self._office, row)

    async def Refuse(
        self, request: certs_pb2.RefuseCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.RequestView:
        async with refusals(context):
            row = await self._office.refuse(request.request_id, request.reason, request.clerk)
        return request_view(self._office, row)

    async def Get(
        self, request: certs_pb2.GetCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.CertificateDocument:
        async with refusals(context):
            row = await self._office.certificate(request.certificate_id)
            made = await document.render(
                row, list(request.disclose), self._office.issuer_name(row.issuer), request.pdf
            )
        return certs_pb2.CertificateDocument(
            certificate=certificate_view(self._office, row), token=made.token, qr=made.qr, pdf=made.pdf
        )

    async def Show(
        self, request: certs_pb2.ShowCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.ShowCertificateReply:
        async with refusals(context):
            try:
                row = await self._office.certificate(request.id)
            except NotFound:
                found = await self._office.find_request(request.id)
                reply = certs_pb2.ShowCertificateReply(request=request_view(self._office, found))
                if found.certificate_id:
                    issued = await self._office.certificate(found.certificate_id)
                    reply.certificate.CopyFrom(certificate_view(self._office, issued))
                return reply
            reply = certs_pb2.ShowCertificateReply(certificate=certificate_view(self._office, row))
            role = "received" if row.role == "issued" else "sent"
            origin = await self._office.find_request(row.request_id, role)
            reply.request.CopyFrom(request_view(self._office, origin))
        return reply

    async def ChangeStatus(
        self, request: certs_pb2.ChangeStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.CertificateView:
        async with refusals(context):
            row = await self._office.change_status(
                request.certificate_id, request.state, request.reason, request.clerk
            )
        return certificate_view(self._office, row)

    async def RefreshTrust(
        self, request: certs_pb2.RefreshTrustRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.RefreshTrustReply:
        async with refusals(context):
            sources = await self._office.refresh()
        return certs_pb2.RefreshTrustReply(
            sources=[trust_source(s) for s in sources], trust_file=str(self._office.trust_path)
        )


class CertificatesFederationServicer(certs_pb2_grpc.CertificatesFederationServicer):
    def __init__(self, office: CertificateOffice, federation: Federation) -> None:
        self._office = office
        self._federation = federation

    async def FetchStatusList(
        self, request: certs_pb2.FetchStatusListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certs_pb2.FetchStatusListReply:
        await self._federation.authenticate(context)
        return certs_pb2.FetchStatusListReply(status_list=await self._office.own_status_list())


async def fetch_status_list(channel: grpc.aio.Channel, timeout: float = 15.0) -> str:
    """Call a peer's FetchStatusList over an open federation channel."""
    stub = certs_pb2_grpc.CertificatesFederationStub(channel)
    reply = await stub.FetchStatusList(certs_pb2.FetchStatusListRequest(), timeout=timeout)
    return str(reply.status_list)
