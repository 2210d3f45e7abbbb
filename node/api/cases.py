"""Clerks and Cases on the local API: the cross-region window's work.

Calls that change a case carry, besides the node's API token, the acting clerk's own token in
`x-tongban-clerk` metadata; the node records the clerk that token belongs to (it keeps only
the token's SHA-256). One clerk therefore cannot act in another's name.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from federation.errors import FailedPrecondition, FederationError, InvalidArgument, NotFound
from node.api.errors import refusals
from node.cases import receipt, wire
from node.cases.blobs import CHUNK, Upload, valid_digest
from node.cases.book import Action, CaseBook, Opening
from node.cases.records import Applicant, CaseRecord
from node.catalog.model import MAX_MATERIAL_BYTES
from node.privacy import mask_id_number, mask_name, mask_phone
from tongban_api.v1 import cases_pb2, cases_pb2_grpc

if TYPE_CHECKING:
    from node.cases.component import CasesComponent

CLERK_METADATA = "x-tongban-clerk"
Context = grpc.aio.ServicerContext[Any, Any]


async def clerk_of(book: CaseBook, context: Context) -> str:
    token = ""
    for key, value in context.invocation_metadata() or ():
        if key == CLERK_METADATA:
            token = value if isinstance(value, str) else value.decode()
    name = book.clerk_for(hashlib.sha256(token.encode()).digest()) if token else None
    if name is None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "case actions are recorded with the clerk who takes them: pass --clerk NAME (its token is in "
            "the home's clerks/ folder) or set TONGBAN_CLERK_TOKEN; `tongban clerk add NAME` makes one"
            + (" (the clerk token presented is not known here)" if token else ""),
        )
    assert name is not None
    return name


class ClerksServicer(cases_pb2_grpc.ClerksServicer):
    def __init__(self, book: CaseBook) -> None:
        self._book = book

    async def AddClerk(self, request: cases_pb2.AddClerkRequest, context: Context) -> cases_pb2.AddClerkReply:
        token = secrets.token_urlsafe(32)
        async with refusals(context):
            await self._book.add_clerk(request.name, hashlib.sha256(token.encode()).digest())
        return cases_pb2.AddClerkReply(name=request.name.strip(), token=token)

    async def ListClerks(
        self, request: cases_pb2.ListClerksRequest, context: Context
    ) -> cases_pb2.ListClerksReply:
        rows = await self._book.list_clerks()
        return cases_pb2.ListClerksReply(
            clerks=[cases_pb2.ClerkInfo(name=r.name, created_at_us=r.created_at_us) for r in rows]
        )


class CasesServicer(cases_pb2_grpc.CasesServicer):
    def __init__(self, component: CasesComponent) -> None:
        self._component = component
        self._book = component.book
        self._blobs = component.blobs

    async def Upload(
        self, request_iterator: AsyncIterator[cases_pb2.UploadChunk], context: Context
    ) -> cases_pb2.MaterialRef:
        await clerk_of(self._book, context)
        digest, size, filename = "", 0, ""
        upload: Upload | None = None
        async with refusals(context):
            try:
                async for chunk in request_iterator:
                    if not digest:
                        digest = valid_digest(chunk.sha256)
                        size, filename = chunk.size, chunk.filename
                        if size > MAX_MATERIAL_BYTES:
                            raise FederationError(
                                f"{filename or 'the file'} is {size / 1048576:.0f} MiB; materials are at most "
                                f"{MAX_MATERIAL_BYTES // 1048576} MiB",
                                code=grpc.StatusCode.RESOURCE_EXHAUSTED,
                            )
                        if self._blobs.has(digest):
                            break
                        upload = await asyncio.to_thread(Upload, self._blobs, digest)
                    data = chunk.data  # read once: each read of the field is a fresh copy
                    if data:
                        assert upload is not None
                        if upload.size + len(data) > size:
                            raise InvalidArgument(
                                f"more than the {size} bytes announced arrived; upload again"
                            )
                        await asyncio.to_thread(upload.append, data)
            finally:
                if upload is not None:
                    upload.close()
            if not digest:
                raise InvalidArgument("an upload starts with the file's sha256 and size")
            if not self._blobs.has(digest):
                hashed = upload.hashed() if upload is not None and upload.size == size else None
                await asyncio.to_thread(self._blobs.finish, digest, size, hashed=hashed)
            found = self._blobs.format(digest)
        return cases_pb2.MaterialRef(
            sha256=digest, size=self._blobs.size(digest), format=found, filename=filename
        )

    async def StatBlob(self, request: cases_pb2.StatBlobRequest, context: Context) -> cases_pb2.MaterialRef:
        async with refusals(context):
            digest = valid_digest(request.sha256)
            if not self._blobs.has(digest):
                raise NotFound(f"no material {digest[:12]}… here yet")
            found = self._blobs.format(digest)
        return cases_pb2.MaterialRef(sha256=digest, size=self._blobs.size(digest), format=found)

    async def Open(self, request: cases_pb2.OpenCaseRequest, context: Context) -> cases_pb2.CaseView:
        clerk = await clerk_of(self._book, context)
        async with refusals(context):
            record = await self._book.open(
                clerk,
                Opening(
                    item=request.item.strip(),
                    applicant=Applicant(
                        request.applicant.name, request.applicant.id_number, request.applicant.phone
                    ),
                    to=request.to.strip(),
                    materials=tuple(wire.material_from_proto(m) for m in request.materials),
                    form=dict(request.form),
                ),
            )
        return await self._view(record, [])

    async def List(self, request: cases_pb2.ListCasesRequest, context: Context) -> cases_pb2.ListCasesReply:
        async with refusals(context):
            listing = await self._book.list(
                request.box, request.state, request.overdue, min(request.limit or 100, 10_000)
            )
        return cases_pb2.ListCasesReply(
            cases=[
                cases_pb2.CaseSummary(
                    case_id=row.case_id,
                    number=row.number,
                    item_code=row.item_code,
                    state=row.state,
                    holder=row.holder,
                    accepting_node=row.accepting_node,
                    applicant_name=mask_name(row.applicant_name),
                    applicant_id=mask_id_number(row.applicant_id),
                    applicant_phone=mask_phone(row.applicant_phone) if row.applicant_phone else "",
                    due_date=row.due_date,
                    overdue=row.overdue,
                    updated_at_us=row.updated_at_us,
                )
                for row in listing.rows
            ],
            total=listing.total,
        )

    async def Show(self, request: cases_pb2.CaseRequest, context: Context) -> cases_pb2.CaseView:
        async with refusals(context):
            record, missing = await self._book.show(request.case)
        return await self._view(record, missing)

    async def Act(self, request: cases_pb2.ActRequest, context: Context) -> cases_pb2.CaseView:
        clerk = await clerk_of(self._book, context)
        async with refusals(context):
            record = await self._book.act(
                clerk,
                request.case,
                Action(
                    action=request.action,
                    reason=request.reason,
                    needs=tuple(n.strip() for n in request.needs if n.strip()),
                    note=request.note,
                    result=request.result,
                    stars=request.stars,
                    to=request.to,
                    attachments=tuple(wire.material_from_proto(m) for m in request.attachments),
                ),
            )
        return await self._view(record, [])

    async def AddMaterial(
        self, request: cases_pb2.AddMaterialRequest, context: Context
    ) -> cases_pb2.CaseView:
        clerk = await clerk_of(self._book, context)
        async with refusals(context):
            record = await self._book.add_materials(
                clerk, request.case, tuple(wire.material_from_proto(m) for m in request.materials)
            )
        return await self._view(record, [])

    async def GetMaterial(self, request: cases_pb2.GetMaterialRequest, context: Context) -> Any:
        async with refusals(context):
            record, missing = await self._book.show(request.case)
            found = [m for m in record.materials if m.kind == request.kind]
            if not found:
                kinds = ", ".join(m.kind for m in record.materials) or "none"
                raise NotFound(f"case {record.number} has no material {request.kind!r} (it has {kinds})")
            if request.kind in missing:
                raise FailedPrecondition(
                    f"material {request.kind} of case {record.number} is still arriving here"
                )
        material = found[0]
        total = max(1, -(-material.size // CHUNK))
        for index in range(total):
            data = await asyncio.to_thread(self._blobs.read_chunk, material.sha256, index)
            yield cases_pb2.MaterialChunk(index=index, data=data, size=material.size, chunks=total)

    async def Receipt(self, request: cases_pb2.CaseRequest, context: Context) -> cases_pb2.ReceiptReply:
        async with refusals(context):
            record, _ = await self._book.show(request.case)
            details = await self._receipt_context(record)
        document = await asyncio.to_thread(receipt.pdf, record, details)
        return cases_pb2.ReceiptReply(text=receipt.text(record, details), pdf=document)

    async def _receipt_context(self, record: CaseRecord) -> receipt.ReceiptContext:
        node = self._component.node

        def name(node_id: str) -> str:
            if node_id == node.node_id:
                return node.config.node.name
            peer = node.federation.peers.get(node_id)
            return peer.name if peer else node_id

        days, names = 0, {}
        try:
            catalog = await self._component.catalogs.of(record.holder)
            item = catalog.item(record.item_code)
            if item is not None:
                days, names = item.time_limit_days, {m.kind: m.name for m in item.materials}
        except FederationError:
            pass
        return receipt.ReceiptContext(name(record.accepting_node), name(record.holder), days, names)

    async def _view(self, record: CaseRecord, missing: list[str]) -> cases_pb2.CaseView:
        return cases_pb2.CaseView(
            case=wire.record_to_proto(record),
            overdue=record.overdue,
            role=await self._book.role(record),
            materials_missing=missing,
        )
