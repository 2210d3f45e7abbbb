"""The certificate office on both storage engines: two in-process nodes on real mutual TLS, the
issuer's database SQLite or PostgreSQL. Request, issue, refuse and status changes travel as real
federation messages and local events; the message log holds what replaying needs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from ulid import ULID

from federation.errors import FailedPrecondition, InvalidArgument
from federation.models import LOG
from federation.outbox import Outbox
from federation.wire import decode_local_event, decode_log_record
from node.certs import wire
from node.certs.service import CertificateOffice
from node.certs.settings import CertSettings
from node.certs.trust import TrustBundle
from node.certs.units import Consent, Request
from node.certs.verify import Verifier
from tests.utils import FedNode, eventually, peer

TYPES = frozenset({"pension-balance-proof"})


def office(node: FedNode, folder: Path, fetch: object = None) -> CertificateOffice:
    made = CertificateOffice(
        node.federation,
        node.db,
        node_name=node.node_id,
        trust_path=folder / "trust" / "certificates.json",
        settings=CertSettings(status_ttl_seconds=600),
        types_of=lambda session, node_id: TYPES,
        items_for=lambda session, cert_type: frozenset({"pension-balance-withdrawal"}),
        fetch_status=fetch,  # type: ignore[arg-type]
    )
    made.register()
    return made


@pytest.fixture
async def offices(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[CertificateOffice, CertificateOffice]]:
    wujiang = await FedNode(tmp_path / "a", "cn-320509").start()
    huoqiu = await FedNode(tmp_path / "b", "cn-341522", db_url=db_url).start()
    try:
        await peer(huoqiu, wujiang)
        issuer = office(huoqiu, tmp_path / "b")
        await huoqiu.federation.set_access("cn-320509", ["pension-balance-withdrawal"], allow=True)

        async def fetch(peer_id: str) -> str:  # in-process stand-in for the FetchStatusList call
            return await issuer.own_status_list()

        requester = office(wujiang, tmp_path / "a", fetch)
        yield requester, issuer
    finally:
        await wujiang.stop()
        await huoqiu.stop()


async def ask(requester: CertificateOffice) -> str:
    row = await requester.request(
        issuer="cn-341522",
        cert_type="pension-balance-proof",
        applicant_id="34152219800101123X",
        applicant_name="陈添荣",
        purpose="养老保险个人账户一次性提取",
        case_id="",
        consent=Consent("陈添荣", int(time.time() * 1e6), "养老保险个人账户一次性提取", "当面签字"),
        clerk="王芳",
    )
    return row.request_id


async def test_request_issue_revoke_on_both_engines(
    offices: tuple[CertificateOffice, CertificateOffice],
) -> None:
    requester, issuer = offices
    request_id = await ask(requester)
    await eventually(lambda: _pending(issuer, request_id), what="the request at the issuer")
    with pytest.raises(InvalidArgument, match="needs account_balance, as_of"):
        await issuer.issue(request_id, {}, 0, "李强")
    issued = await issuer.issue(
        request_id, {"account_balance": "38216.45", "as_of": "2026-11-20"}, 30, "李强"
    )
    received = await eventually(
        lambda: _answered(requester, request_id), what="the certificate at the requester"
    )
    assert received.certificate_id == issued.certificate_id
    copy = await requester.certificate(issued.certificate_id)
    assert copy.role == "received"
    assert copy.token == issued.token

    # The issuer's log carries the signed token in the cert.issue event: replay needs no secrets.
    events = await issuer.db.read(
        lambda s: [r for (r,) in s.execute(select(LOG.c.record).where(LOG.c.kind == "cert.issue")).all()]
    )
    [event] = [decode_local_event(decode_log_record(r).body) for r in events]
    assert wire.issued(event.payload).token == issued.token

    await requester.refresh()
    assert Verifier(TrustBundle.load(requester.trust_path)).verify(copy.token).valid

    await issuer.change_status(issued.certificate_id, "revoked", "余额有误", "李强")
    with pytest.raises(FailedPrecondition, match="cannot become valid"):
        await issuer.change_status(issued.certificate_id, "valid", "", "李强")
    await requester.refresh()
    assert Verifier(TrustBundle.load(requester.trust_path)).verify(copy.token).code == "revoked"


async def test_refusal_reaches_the_requester(offices: tuple[CertificateOffice, CertificateOffice]) -> None:
    requester, issuer = offices
    request_id = await ask(requester)
    await eventually(lambda: _pending(issuer, request_id), what="the request at the issuer")
    await issuer.refuse(request_id, "无此参保记录", "李强")
    answered = await eventually(lambda: _answered(requester, request_id), what="the refusal at the requester")
    assert (answered.state, answered.reason, answered.certificate_id) == ("refused", "无此参保记录", "")
    with pytest.raises(FailedPrecondition, match="already refused"):
        await issuer.issue(request_id, {"account_balance": "1", "as_of": "2026-01-01"}, 0, "李强")


async def _pending(issuer: CertificateOffice, request_id: str) -> bool:
    return any(r.request_id == request_id for r in await issuer.pending())


async def _answered(requester: CertificateOffice, request_id: str) -> object:
    row = await requester.find_request(request_id, "sent")
    return row if row.state != "pending" else None


async def test_a_peers_overlong_request_is_rejected_not_retried(
    offices: tuple[CertificateOffice, CertificateOffice],
) -> None:
    """A field longer than its column would fail PostgreSQL's write and be retried for ever;
    the issuer refuses it at once instead, and the requester's outbox sees the refusal."""
    requester, issuer = offices
    crafted = Request(
        request_id=str(ULID()),
        requester="cn-320509",
        issuer="cn-341522",
        cert_type="pension-balance-proof",
        applicant_id="34152219800101123X",
        applicant_name="陈" * 65,
        purpose="养老保险个人账户一次性提取",
        case_id="",
        consent=Consent("陈添荣", int(time.time() * 1e6), "养老保险个人账户一次性提取"),
        clerk="王芳",
        requested_at_us=int(time.time() * 1e6),
    )
    sent = await requester.db.write(
        lambda tx: requester.federation.enqueue(
            tx, to="cn-341522", kind="cert.request", payload=wire.pack_request(crafted)
        )
    )

    async def refused() -> str:
        rows, _ = await requester.db.read(lambda s: Outbox.list(s, include_delivered=True, limit=100))
        row = next((r for r in rows if r.message_id == sent.message_id), None)
        return row.outcome_reason if row is not None and row.outcome == "rejected" else ""

    reason = await eventually(refused, what="the issuer's refusal of the over-long request")
    assert "applicant_name is longer than 64 characters" in reason
    assert not await issuer.pending()
