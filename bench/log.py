"""Benchmark: `log verify` entries per second against raw Ed25519 verifications per second.

Both on the same signed envelopes, in the same run: the baseline is PyNaCl's verify over each
entry's exact signed bytes on one thread; `log verify` checks the hash chain, the checkpoints
and every signature (on two threads). The last line prints the ratio (target at least 0.7).

Then replay against delivery, with two real node processes: Wujiang delivers N pings to Huoqiu
(`tongban ping`, from queueing to the last signed receipt stored); Huoqiu is restored to a
backup taken before them; Wujiang exports the N and replays them (`tongban log replay`, the
whole command: reading the bundle, sending the original signed bytes in batches, storing the new
receipts). Every replayed message is new to the restored Huoqiu, so both move the same work.
The last line prints both ratios.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(
    str(Path(__file__).resolve().parent)
)  # bench/cases.py: real node processes (last: bench/video.py must not shadow the video package)

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
REPLAYED = 4_000
ROOT = Path(__file__).resolve().parent.parent
TONGBAN = [sys.executable, "-m", "node"]


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
    delivered, replayed = replay_against_delivery(REPLAYED)
    print(f"delivery of {REPLAYED:,} pings between two node processes: {delivered:,.0f} msgs/s")
    print(f"replay of the same {REPLAYED:,} to the restored receiver: {replayed:,.0f} msgs/s")
    print(
        f"ratios: log verify / raw verify {verified / raw:.2f} (target >= 0.7), "
        f"replay / delivery {replayed / delivered:.2f}"
    )


def replay_against_delivery(count: int) -> tuple[float, float]:
    """(delivered, replayed) messages per second between two real node processes."""
    from cases import Node, peer, tongban

    root = Path(tempfile.mkdtemp(prefix="tongban-bench-log-"))
    nodes: list[Node] = []
    try:
        wujiang = Node(root, "cn-320509", "吴江区政务服务中心")
        huoqiu = Node(root, "cn-341522", "霍邱县政务服务中心")
        nodes = [wujiang, huoqiu]
        peer(huoqiu, wujiang)
        huoqiu.stop()
        backup = root / "backup"
        backup.mkdir()
        for path in huoqiu.home.glob("tongban.db*"):
            shutil.copy2(path, backup / path.name)
        huoqiu.start()
        sent = tongban("ping", "cn-341522", "--count", str(count), home=wujiang.home)
        assert sent["receipted"] == count, sent
        delivered = count / float(sent["elapsed_seconds"])
        huoqiu.stop()
        for path in huoqiu.home.glob("tongban.db*"):
            path.unlink()
        for path in backup.iterdir():
            shutil.copy2(path, huoqiu.home / path.name)
        huoqiu.start()
        bundle = root / "pings.tblog"
        tongban(
            "log", "export", "--peer", "cn-341522", "--kind", "ping", "-o", str(bundle), home=wujiang.home
        )
        started = time.perf_counter()
        done = subprocess.run(
            [
                *TONGBAN,
                "log",
                "replay",
                str(bundle),
                "--to",
                "cn-341522",
                "--home",
                str(wujiang.home),
                "--json",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        elapsed = time.perf_counter() - started
        outcomes = [json.loads(line)["outcome"] for line in done.stdout.splitlines() if line.strip()]
        assert outcomes.count("new") == count, {o: outcomes.count(o) for o in set(outcomes)}
        return delivered, count / elapsed
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
