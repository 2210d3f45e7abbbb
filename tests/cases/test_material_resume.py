"""A 50 MiB material, interrupted halfway by kill -9 of the fetching node, resumes with only the
missing chunks and arrives with its SHA-256 intact."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.cases.support import LUAN, WUJIANG, Hall, link, open_halls, resident_id, scan_pdf, write
from tests.utils import wait_until

pytestmark = pytest.mark.e2e

CHUNKS = 50  # 50 MiB in 1 MiB chunks


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Hall, Hall]]:
    # Lu'an fetches at 8 MiB/s, so that the test can catch it halfway.
    wujiang, luan = open_halls(
        tmp_path, WUJIANG, replace(LUAN, config={"cases.fetch_bytes_per_second": 8 << 20})
    )
    try:
        link(luan, wujiang)
        yield wujiang, luan
    finally:
        for h in (wujiang, luan):
            if h.node.running:
                h.node.stop()


def chunks_sent(h: Hall) -> float:
    address = h.node.run_info()["metrics"]  # type: ignore[index]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = re.search(r"^tongban_material_chunks_sent_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_50_mib_material_resumes_after_kill_9_with_only_missing_chunks(
    pair: tuple[Hall, Hall], tmp_path: Path
) -> None:
    wujiang, luan = pair
    head = scan_pdf("职工档案")
    archive = write(tmp_path, "档案.pdf", head + os.urandom(CHUNKS * (1 << 20) - len(head)))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    small = write(tmp_path, "id.pdf", scan_pdf("id"))
    opened = wujiang.do(
        "case",
        "open",
        "--item",
        "retirement-one-thing",
        "--to",
        "cn-341500",
        "--applicant-name",
        "刘桂兰",
        "--applicant-id",
        resident_id("34150019650301004"),
        "--material",
        f"id-card={small}",
        "--material",
        f"personnel-file={archive}",
        "--material",
        f"employer-form={small}",
        "--form",
        "employer_credit_code=91350100M000100Y43",
        "--form",
        "retirement_date=2026-12-01",
    )
    number = opened["number"]
    marks = luan.node.home / "blobs" / "partial" / f"{digest}.chunks"

    def written() -> int:
        return len(marks.read_text().split()) if marks.exists() else 0

    before_kill = wait_until(
        lambda: (n := written()) >= 15 and n, interval=0.02, what="a third of the chunks"
    )
    luan.node.kill()
    at_kill = written()
    sent_by_then = chunks_sent(wujiang)
    assert at_kill < CHUNKS, "killed halfway, not after the end"
    luan.node.start()
    view = luan.wait_state(number, "received", timeout=120)
    [material] = [m for m in view["materials"] if m["kind"] == "personnel-file"]
    assert material["sha256"] == digest
    copy = tmp_path / "copy.pdf"
    got = luan.node.json("case", "material", "get", number, "personnel-file", "-o", str(copy))
    assert got["sha256"] == digest
    # Starting over would send all CHUNKS again; resuming sends only the ones missing at the kill
    # (give or take the few Wujiang counted as sent into the broken stream after the snapshot).
    resent = chunks_sent(wujiang) - sent_by_then
    assert before_kill >= 15
    assert resent <= CHUNKS - at_kill + 4, (
        f"{resent} chunks sent after the kill; {CHUNKS - at_kill} were missing"
    )
    assert not marks.exists()
