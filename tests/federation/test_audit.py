"""Verifying the message log with its signatures, in a database and in a bundle: tampering is
found and the first bad entry is named."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import text

from federation import audit, wire
from federation.bundle import Bundle
from federation.envelope import seal, seal_many
from federation.identity import NodeIdentity
from federation.log import Entry, MessageLog, chain_hash
from federation.store import Database, Tx
from federation.units import Envelope
from node.storage import open_database
from tests.utils import tongban

pytestmark = pytest.mark.asyncio
NODE = "cn-320509"
PEER = "cn-341522"


@pytest.fixture(params=["signed alone", "signed in batches"])
async def log_db(tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    db = await asyncio.to_thread(open_database, f"sqlite:///{tmp_path / 'log.db'}")
    identity = NodeIdentity.create(tmp_path / "keys", NODE, "吴江")
    log = MessageLog(NODE)

    def fill(tx: Tx) -> None:
        envelopes = [
            Envelope(f"01J{n:023d}", NODE, PEER, "ping", tx.now_us, wire.ping_payload(f"n{n}"))
            for n in range(1, 41)
        ]
        if request.param == "signed alone":
            sealed_all = [seal(envelope, identity.signer) for envelope in envelopes]
        else:  # batches of 16, 16 and 8: a batch spans the first checkpoint
            sealed_all = [
                s for start in (0, 16, 32) for s in seal_many(envelopes[start : start + 16], identity.signer)
            ]
            assert all(s.batch is not None for s in sealed_all)
        entries = []
        for sealed in sealed_all:
            envelope = sealed.envelope
            entries.append(Entry("out", "envelope", sealed.wire, PEER, envelope.message_id, "ping"))
        log.append_many(tx, entries[:30])
        log.checkpoint(tx, identity.signer)
        log.append_many(tx, entries[30:])
        log.checkpoint(tx, identity.signer)

    await db.write(fill)
    yield db, identity
    await asyncio.to_thread(db.close)


async def check(db: Database, identity: NodeIdentity) -> audit.Report:
    return await db.read(lambda s: audit.verify(audit.database_chain(s, identity.keys)))


async def tamper(db: Database, *statements: str) -> None:
    def run(tx: Tx) -> None:
        tx.session.execute(text("DROP TRIGGER IF EXISTS log_entries_no_update"))
        tx.session.execute(text("DROP TRIGGER IF EXISTS log_entries_no_delete"))
        tx.session.execute(text("DROP TRIGGER IF EXISTS log_checkpoints_no_update"))
        for statement in statements:
            tx.session.execute(text(statement))

    await db.write(run)


async def test_a_whole_log_verifies_with_every_signature(log_db) -> None:  # type: ignore[no-untyped-def]
    db, identity = log_db
    report = await check(db, identity)
    assert report.ok, report.problem
    assert (report.entries, report.signatures, report.checkpoints) == (40, 40, 2)


async def test_an_edited_entry_is_named(log_db) -> None:  # type: ignore[no-untyped-def]
    db, identity = log_db
    await tamper(
        db, "UPDATE log_entries SET record = (SELECT record FROM log_entries WHERE seq = 8) WHERE seq = 7"
    )
    report = await check(db, identity)
    assert report.problem_seq == 7
    assert "record of entry 8" in report.problem


async def test_an_edited_envelope_with_a_recomputed_chain_fails_its_signature(log_db) -> None:  # type: ignore[no-untyped-def]
    db, identity = log_db
    rows = await db.read(lambda s: s.execute(text("SELECT seq, record FROM log_entries ORDER BY seq")).all())
    previous, statements = bytes(32), []
    for seq, record in rows:
        if seq == 12:
            decoded = wire.decode_log_record(record)
            envelope_bytes, signature, key_id, batch = wire.decode_signed_envelope(decoded.body)
            forged = wire.signed_envelope_bytes(
                envelope_bytes.replace(b"n12", b"X12"), signature, key_id, batch
            )
            record = wire.log_record_bytes(dataclasses.replace(decoded, body=forged))
            statements.append(f"UPDATE log_entries SET record = x'{record.hex()}' WHERE seq = {seq}")  # noqa: S608 - playing an attacker with raw SQL
        previous = chain_hash(previous, record)
        statements.append(f"UPDATE log_entries SET hash = x'{previous.hex()}' WHERE seq = {seq}")  # noqa: S608 - playing an attacker with raw SQL
    await tamper(db, *statements)
    report = await check(db, identity)
    assert report.problem_seq == 12
    assert "signature" in report.problem


async def test_a_deleted_entry_is_named(log_db) -> None:  # type: ignore[no-untyped-def]
    db, identity = log_db
    await tamper(db, "DELETE FROM log_entries WHERE seq = 5")
    report = await check(db, identity)
    assert report.problem_seq == 5
    assert "missing" in report.problem


async def test_reordered_entries_are_named(log_db) -> None:  # type: ignore[no-untyped-def]
    db, identity = log_db
    await tamper(
        db,
        "UPDATE log_entries SET seq = -1 WHERE seq = 20",
        "UPDATE log_entries SET seq = 20 WHERE seq = 21",
        "UPDATE log_entries SET seq = 21 WHERE seq = -1",
    )
    report = await check(db, identity)
    assert report.problem_seq == 20


async def test_an_inserted_entry_is_named(log_db) -> None:  # type: ignore[no-untyped-def]
    db, identity = log_db
    await tamper(
        db,
        "UPDATE log_entries SET seq = seq + 1000 WHERE seq >= 15",
        "UPDATE log_entries SET seq = seq - 999 WHERE seq >= 1015",
        "INSERT INTO log_entries (seq, recorded_at_us, direction, entry_type, peer, message_id, kind, case_id, "
        "record, hash) SELECT 15, recorded_at_us, direction, entry_type, peer, message_id, kind, case_id, record, "
        "hash FROM log_entries WHERE seq = 14",
    )
    report = await check(db, identity)
    assert report.problem_seq == 15


async def test_a_forged_checkpoint_is_named(log_db) -> None:  # type: ignore[no-untyped-def]
    db, identity = log_db
    other = NodeIdentity.create(Path(str(identity.folder) + "-other"), NODE, "forger")
    data = wire.checkpoint_bytes(
        wire.decode_checkpoint(
            wire.decode_signed_checkpoint(
                await db.read(
                    lambda s: s.execute(text("SELECT signed FROM log_checkpoints WHERE seq = 30")).scalar()
                )
            )[0]
        )
    )
    forged = wire.signed_checkpoint_bytes(
        data, other.signer.sign(b"tongban.v1.Checkpoint\n", data), identity.signer.key_id
    )
    await tamper(db, f"UPDATE log_checkpoints SET signed = x'{forged.hex()}' WHERE seq = 30")  # noqa: S608 - playing an attacker with raw SQL
    report = await check(db, identity)
    assert report.problem_seq == 30
    assert "checkpoint" in report.problem


async def bundle_of(db: Database, identity: NodeIdentity) -> Bundle:
    return await db.read(
        lambda s: audit.export(s, identity.keys, audit.LogFilter(), now_us=1, signer=identity.signer)
    )


def bundle_report(bundle: Bundle) -> audit.Report:
    return audit.verify(audit.bundle_chain(wire.decode_bundle(wire.bundle_bytes(bundle))))


async def test_a_bundle_verifies_alone_and_tampering_in_it_is_named(log_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, identity = log_db
    bundle = await bundle_of(db, identity)
    path = tmp_path / "log.tblog"
    path.write_bytes(wire.bundle_bytes(bundle))
    assert tongban("log", "verify", "--file", str(path)).returncode == 0

    entries = list(bundle.entries)
    edited = dataclasses.replace(entries[9], record=entries[10].record)
    assert (
        bundle_report(dataclasses.replace(bundle, entries=(*entries[:9], edited, *entries[10:]))).problem_seq
        == 10
    )
    assert bundle_report(dataclasses.replace(bundle, entries=(*entries[:4], *entries[5:]))).problem_seq == 5
    swapped = (*entries[:19], entries[20], entries[19], *entries[21:])
    assert bundle_report(dataclasses.replace(bundle, entries=swapped)).problem_seq == 20
    last = entries[-1]
    extra = dataclasses.replace(
        last,
        seq=last.seq + 1,
        record=wire.log_record_bytes(
            dataclasses.replace(wire.decode_log_record(last.record), seq=last.seq + 1)
        ),
    )
    extra = dataclasses.replace(extra, hash=chain_hash(last.hash, extra.record))
    appended = bundle_report(dataclasses.replace(bundle, entries=(*entries, extra)))
    assert appended.problem_seq == last.seq + 1
    assert "checkpoint" in appended.problem
    forged = bytes(reversed(bundle.checkpoints[0]))
    assert not bundle_report(dataclasses.replace(bundle, checkpoints=(forged, *bundle.checkpoints[1:]))).ok

    damaged = tmp_path / "damaged.tblog"
    damaged.write_bytes(wire.bundle_bytes(dataclasses.replace(bundle, entries=(*entries[:4], *entries[5:]))))
    failed = tongban("log", "verify", "--file", str(damaged), check=False)
    assert failed.returncode == 1
    assert "entry 5 is bad" in failed.stderr
