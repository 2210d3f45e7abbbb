"""Materials between nodes: pulled in chunks over the federation port, resumable.

A node that learns of a material it does not hold (a submitted case, a supplement, a transfer,
a result attachment) fetches it from the node that told it, in 1 MiB chunks. Each chunk is
written at its offset in `blobs/partial/<sha256>` and then its index appended to
`<sha256>.chunks`, so after a broken connection or a `kill -9` the next attempt asks only for
the chunks not yet written. When all are in, the whole file's SHA-256 and its type (by
content) are checked and it moves into place; a mismatch discards it and starts over.

One thread per fetch writes and hashes the chunks in the order they came, while the stream
runs up to four chunks ahead of it; the bytes go on to the disk as they are written and leave
the page cache behind them (`blobs.WriteBehind`), so a 50 MiB scan takes a few MiB of memory.

The serving side (CasesFederation/FetchMaterial) sends chunks only of materials of a case the
calling peer takes part in, read straight out of the mapped blob. Chunks travel as ordinary
MaterialChunk messages, encoded and decoded by `chunkwire` rather than the generated class,
which would copy each MiB four times.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import math
import mmap
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import false, or_, update
from sqlmodel import Session, col, select

from federation.errors import FederationError, InvalidArgument
from federation.store import Tx
from node.cases import chunkwire
from node.cases.blobs import CHUNK, BlobStore, Partial, valid_digest
from node.cases.models import CaseMaterialRow, CaseRow
from node.peerlink import PeerChannels
from tongban_api.v1 import cases_pb2, cases_pb2_grpc

if TYPE_CHECKING:
    from federation import Federation
    from federation.store import Database

_log = logging.getLogger("tongban.cases.materials")
SERVICE = "tongban.v1.CasesFederation"
FETCH_METHOD = f"/{SERVICE}/FetchMaterial"
_WRITES_AHEAD = 4  # chunks received but not yet written, at most (4 MiB)


class MaterialMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "tongban_material_chunks_sent", "Material chunks served to peers", registry=registry
        )
        self.fetched = Counter(
            "tongban_material_chunks_fetched", "Material chunks fetched from peers", registry=registry
        )
        # Bytes over time spent fetching (first request to the checked file in place) is the
        # fetch throughput an operator watches; bench/cases.py reads it too.
        self.fetched_bytes = Counter(
            "tongban_material_fetched_bytes", "Bytes of materials fetched and stored", registry=registry
        )
        self.fetch_seconds = Counter(
            "tongban_material_fetch_seconds",
            "Time spent fetching materials, from the request to the checked file in place",
            registry=registry,
        )


class MaterialFetcher:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        channels: PeerChannels,
        metrics: MaterialMetrics,
        *,
        bytes_per_second: float = 0.0,
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._channels = channels
        self._metrics = metrics
        self._rate = bytes_per_second
        self._running: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}

    def wake(self) -> None:
        """Look for materials that have not arrived, and fetch each (once at a time)."""
        asyncio.get_running_loop().create_task(self.scan())

    async def scan(self) -> None:
        wanted = await self._db.read(_wanted)
        for digest, size, source, case_id in wanted:
            if digest in self._running:
                continue
            task = asyncio.create_task(self._fetch(digest, size, source, case_id))
            self._running[digest] = task
            task.add_done_callback(self._done(digest))

    def _done(self, digest: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(task: asyncio.Task[None]) -> None:
            if self._running.get(digest) is task:
                del self._running[digest]

        return forget

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _fetch(self, digest: str, size: int, source: str, case_id: str) -> None:
        try:
            if not self._blobs.has(digest):
                await self._pull(digest, size, source, case_id)
        except (grpc.aio.AioRpcError, FederationError, OSError) as error:
            failures = self._failures[digest] = self._failures.get(digest, 0) + 1
            _log.info("fetching material %s… from %s failed (%s); retrying", digest[:12], source, error)
            await asyncio.sleep(min(30.0, 0.5 * 2**failures))
            self._running.pop(digest, None)
            await self.scan()
            return
        self._failures.pop(digest, None)
        await self._db.write(lambda tx: _present(tx, digest))

    async def _pull(self, digest: str, size: int, source: str, case_id: str) -> None:
        total = max(1, math.ceil(size / CHUNK))
        started = time.monotonic()
        partial = await asyncio.to_thread(Partial, self._blobs, digest, total)
        try:
            hashed = await self._receive(partial, digest, total, source, case_id)
        finally:
            partial.close()
        streamed = time.monotonic()
        try:
            await asyncio.to_thread(self._blobs.finish, digest, size, hashed=hashed)
        finally:
            self._blobs.marks(digest).unlink(missing_ok=True)
        self._metrics.fetched_bytes.inc(size)
        self._metrics.fetch_seconds.inc(time.monotonic() - started)
        _log.info(
            "material %s… (%.1f MiB) fetched from %s in %.3f s (checked and stored in %.3f s)",
            digest[:12],
            size / 2**20,
            source,
            time.monotonic() - started,
            time.monotonic() - streamed,
        )

    async def _receive(
        self, partial: Partial, digest: str, total: int, source: str, case_id: str
    ) -> str | None:
        """Fetch the chunks the partial file lacks; returns the SHA-256 if computed on the way."""
        missing = [i for i in range(total) if i not in partial.done]
        if partial.done:
            _log.info(
                "resuming material %s… from %s: %d of %d chunks here, fetching %d",
                digest[:12],
                source,
                len(partial.done),
                total,
                len(missing),
            )
        if not missing:
            return None
        fetch = self._channels.channel(source).unary_stream(
            FETCH_METHOD,
            request_serializer=cases_pb2.FetchMaterialRequest.SerializeToString,
            response_deserializer=chunkwire.decode,
        )
        call = fetch(
            cases_pb2.FetchMaterialRequest(sha256=digest, case_id=case_id, chunk_size=CHUNK, chunks=missing)
        )
        started = time.monotonic()
        received = 0
        loop = asyncio.get_running_loop()
        writing: collections.deque[asyncio.Future[None]] = collections.deque()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="material") as writer:
            try:
                async for chunk in call:
                    if chunk is None:  # what gRPC hands on when the deserializer refused the bytes
                        raise InvalidArgument(f"{source} sent a material chunk that does not decode")
                    if chunk.index >= total:
                        raise InvalidArgument(
                            f"{source} sent chunk {chunk.index} of a {total}-chunk material"
                        )
                    data = chunk.data  # a view into the received message (see chunkwire)
                    # One thread writes and hashes the chunks in the order they came; the
                    # stream runs up to _WRITES_AHEAD chunks ahead of it.
                    writing.append(loop.run_in_executor(writer, partial.write, chunk.index, data))
                    while len(writing) > _WRITES_AHEAD:
                        await writing.popleft()
                    self._metrics.fetched.inc()
                    received += len(data)
                    if self._rate > 0:
                        ahead = received / self._rate - (time.monotonic() - started)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
            finally:
                # Never close the file under a write in flight, also when the stream broke.
                await asyncio.gather(*writing, return_exceptions=True)
        for done in writing:
            done.result()  # a failed write fails the fetch
        return partial.hashed()


# The materials still to fetch, answered by ix_case_materials_wanted. `= false`, not `IS false`:
# PostgreSQL's B-tree index serves only the former.
WANTED = select(CaseMaterialRow).where(
    col(CaseMaterialRow.present) == false(), col(CaseMaterialRow.fetch_from) != ""
)


def _wanted(session: Session) -> list[tuple[str, int, str, str]]:
    rows = session.exec(WANTED).all()
    seen: dict[str, tuple[str, int, str, str]] = {}
    for row in rows:
        seen.setdefault(row.sha256, (row.sha256, row.size, row.fetch_from, row.case_id))
    return list(seen.values())


def _present(tx: Tx, digest: str) -> None:
    tx.session.execute(
        update(CaseMaterialRow)
        .where(col(CaseMaterialRow.sha256) == digest)
        .values(present=True, fetch_from="")
    )


class CasesFederationServicer(cases_pb2_grpc.CasesFederationServicer):
    """CasesFederation on the federation port; FetchMaterial yields encoded chunks (chunkwire)."""

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register the service, with chunkwire as FetchMaterial's serializer (not the generated class)."""
        fetch = grpc.unary_stream_rpc_method_handler(
            self.FetchMaterial, request_deserializer=cases_pb2.FetchMaterialRequest.FromString
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"FetchMaterial": fetch}),)
        )

    def __init__(
        self, federation: Federation, db: Database, blobs: BlobStore, metrics: MaterialMetrics
    ) -> None:
        self._federation = federation
        self._db = db
        self._blobs = blobs
        self._metrics = metrics

    async def FetchMaterial(
        self, request: cases_pb2.FetchMaterialRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        peer = await self._federation.authenticate(context)
        try:
            digest = valid_digest(request.sha256)
        except InvalidArgument as error:
            await context.abort(error.code, error.message)
            return
        allowed = await self._db.read(lambda s: _may_fetch(s, peer.node_id, request.case_id, digest))
        if not allowed:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{peer.node_id} takes no part in a case {request.case_id} with material {digest[:12]}… here",
            )
        if not self._blobs.has(digest):
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"material {digest[:12]}… has not arrived at this node yet; try later",
            )
        chunk_size = request.chunk_size or CHUNK
        if chunk_size != CHUNK:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"chunks are {CHUNK} bytes")
        size = self._blobs.size(digest)
        total = max(1, math.ceil(size / CHUNK))
        wanted = list(request.chunks) or list(range(total))
        if any(index >= total for index in wanted):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the material has {total} chunks")
        # Blobs never change once in place: the chunks are read straight out of the mapped file
        # into the messages (one copy; a read() would make a second), on a thread, so that a
        # chunk not in the page cache holds up no one but this stream.
        with (
            self._blobs.path(digest).open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
        ):
            view = memoryview(mapped)

            def read(index: int) -> bytes:
                return chunkwire.encode(index, view[index * CHUNK : (index + 1) * CHUNK], size, total)

            reading = asyncio.ensure_future(asyncio.to_thread(read, wanted[0]))
            try:
                for position, _ in enumerate(wanted):
                    message = await reading
                    if position + 1 < len(wanted):  # read the next chunk while this one is sent
                        reading = asyncio.ensure_future(asyncio.to_thread(read, wanted[position + 1]))
                    self._metrics.sent.inc()
                    yield message
            finally:
                with contextlib.suppress(Exception):
                    await reading  # never unmap the file under a read in flight
                view.release()


def _may_fetch(session: Session, peer: str, case_id: str, digest: str) -> bool:
    """Whether `peer` takes part in case `case_id` and the case has material `digest` (one query:
    this check stands between a peer's request and the first chunk)."""
    found = session.execute(
        select(CaseMaterialRow.case_id)
        .join(CaseRow, col(CaseRow.case_id) == col(CaseMaterialRow.case_id))
        .where(
            col(CaseMaterialRow.case_id) == case_id,
            col(CaseMaterialRow.sha256) == digest,
            or_(
                col(CaseRow.accepting_node) == peer,
                col(CaseRow.holder) == peer,
                col(CaseRow.transfer_to) == peer,
            ),
        )
        .limit(1)
    ).first()
    return found is not None
