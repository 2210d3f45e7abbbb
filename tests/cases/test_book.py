"""The case book on one node, on SQLite and on PostgreSQL: a local case from opening to overdue,
with the time-limit jobs in the node's own database."""

from __future__ import annotations

import hashlib
from pathlib import Path

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import create_engine

from federation.clock import now_us
from federation.errors import Unavailable
from node.cases import timers, workdays
from node.cases.blobs import BlobStore
from node.cases.book import Action, CaseBook, Opening, holder_of
from node.cases.records import Applicant, MaterialRef
from node.catalog.service import Catalogs
from node.storage import normalize_url
from tests.cases.support import resident_id, scan_pdf
from tests.utils import ROOT, FedNode, eventually


async def no_peers(peer_id: str, version: int, digest: bytes) -> tuple[bool, bytes]:
    raise Unavailable(f"{peer_id}: this test's node has no peers")


async def test_a_local_case_is_accepted_falls_due_and_is_listed_overdue(tmp_path: Path, db_url: str) -> None:
    node = await FedNode(tmp_path, "cn-320509", db_url=db_url).start()
    scheduler = AsyncIOScheduler(
        jobstores={"persistent": SQLAlchemyJobStore(engine=create_engine(normalize_url(db_url)))}
    )
    try:
        catalogs = Catalogs(node.federation, node.db, no_peers)
        await catalogs.import_toml((ROOT / "config" / "catalog-cn-320509.toml").read_text(encoding="utf-8"))
        book = CaseBook(node.federation, node.db, BlobStore(tmp_path / "blobs"), catalogs.of)
        due: list[tuple[str, str]] = []
        book.on_due = lambda case_id, number, day: due.append((case_id, day))
        await book.add_clerk("王芳", hashlib.sha256(b"token").digest())
        await book.load()
        assert book.clerk_for(hashlib.sha256(b"token").digest()) == "王芳"
        digest, _ = book.blobs.put(scan_pdf("hukou"))

        opened = await book.open(
            "王芳",
            Opening(
                item="household-registration-proof",
                applicant=Applicant("周秀英", resident_id("32050919700505002")),
                to="",
                materials=(MaterialRef("id-card", digest, 0, "", "户口.pdf"),),
                form={"purpose": "子女入学"},
            ),
        )
        assert opened.holder == "cn-320509", "a Wujiang resident's matter stays in Wujiang"
        assert opened.state == "received", "a local case is received at once"
        assert await node.db.read(lambda s: holder_of(s, opened.number)) == "cn-320509"
        assert await node.db.read(lambda s: holder_of(s, "320509-19990101-000001")) is None

        accepted = await book.act("王芳", opened.number, Action("accept"))
        expected = workdays.due_date(accepted.history[-1].at_us, 3).isoformat()
        assert accepted.due_date == expected
        assert due == [(opened.case_id, expected)]

        scheduler.start()
        timers.register(book)
        timers.schedule(scheduler, "cn-320509", opened.case_id, expected, overdue_at_us=now_us() + 1_000_000)

        async def listed_overdue() -> bool:
            listing = await book.list("all", "", True, 10)
            return [row.number for row in listing.rows] == [opened.number]

        await eventually(listed_overdue, timeout=30, what="the case to be listed overdue")
        record, _ = await book.show(opened.number)
        assert record.overdue
        assert [e.action for e in record.history][-2:] in (["remind", "overdue"], ["overdue", "remind"])
        assert not await book.mark(opened.case_id, "overdue"), "an overdue case is marked once"
    finally:
        timers.unregister(book)
        if scheduler.running:
            scheduler.shutdown(wait=False)
        await node.stop()
