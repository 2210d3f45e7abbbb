"""Benchmark: `log verify` entries per second against raw Ed25519 verifications per second.

Both on the same signed envelopes, in the same run: the baseline is PyNaCl's verify over each
entry's exact signed bytes on one thread; `log verify` checks the hash chain, the checkpoints
and every signature (on two threads). The last line prints the ratio (target at least 0.7).
Replay against delivery is not measured yet (see CHANGELOG).
"""

from __future__ import annotations

import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from federation import audit, wire
from federation.envelope import open_envelope, seal
from federation.identity import NodeIdentity
from federation.keys import CONTEXT_ENVELOPE
from federation.log import Entry, MessageLog
from federation.models import LOG
from federation.store import Tx
from federation.units import Envelope
from node.storage import open_database

COUNT = 20_000


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        db = open_database(f"sqlite:///{root / 'bench.db'}")
        identity = NodeIdentity.create(root / "keys", "cn-320509", "吴江")
        log = MessageLog("cn-320509")

        def fill(tx: Tx) -> None:
            entries = []
            for n in range(COUNT):
                e = Envelope(
                    f"01J{n:023d}", "cn-320509", "cn-341522", "ping", tx.now_us, wire.ping_payload(f"{n}")
                )
                sealed = seal(e, identity.signer)
                entries.append(Entry("out", "envelope", sealed.wire, "cn-341522", e.message_id, "ping"))
            log.append_many(tx, entries)
            log.checkpoint(tx, identity.signer)

        db.write_blocking(fill)
        bodies = [
            open_envelope(wire.decode_log_record(r).body)
            for r in db.read_blocking(lambda s: [row[0] for row in s.execute(select(LOG.c.record))])
        ]
        key = nacl.signing.VerifyKey(identity.signer.public_key)
        started = time.perf_counter()
        for sealed in bodies:
            key.verify(CONTEXT_ENVELOPE + sealed.envelope_bytes, sealed.signature)
        raw = COUNT / (time.perf_counter() - started)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            started = time.perf_counter()
            report = db.read_blocking(
                lambda s: audit.verify(audit.database_chain(s, identity.keys), executor=pool)
            )
            elapsed = time.perf_counter() - started
        assert report.ok, report.problem
        verified = report.entries / elapsed
        db.close()
    print(f"entries: {COUNT:,} signed envelopes")
    print(f"raw Ed25519 verify (1 thread): {raw:,.0f}/s")
    print(f"log verify (chain + checkpoints + signatures, 2 threads): {verified:,.0f} entries/s")
    print(f"ratio log verify / raw verify: {verified / raw:.2f}")


if __name__ == "__main__":
    main()
