"""`make demo` runs the demo federation from config/ to the end and leaves its homes behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node import demo
from tests.utils import ROOT

pytestmark = pytest.mark.e2e


def test_the_demo_federation_runs_and_leaves_homes_to_explore(tmp_path: Path) -> None:
    federation = demo.load(ROOT / "config" / "demo.toml", tmp_path / "homes")
    federation.verbose = False
    try:
        federation.create()
        federation.start()
        federation.peer()
        federation.ping()
        for act in demo.ACTS:
            act(federation)
    finally:
        federation.stop()
    federation.farewell()
    text = "\n".join(federation.transcript)
    assert "100 of 100 signed pings receipted" in text
    assert "$ tongban peer join tbj1." in text
    assert "transitions: yes" in text, "the cases story: both nodes hold the same history"
    assert "VALID" in text.splitlines(), "the certificate act verifies the printed PDF"
    assert "NOT VALID: revoked" in text, "and refuses it once revoked"
    assert text.count("the log holds") >= 3, "every node's log verifies"
    # The case number carries the day it was opened: the demo's first case of the day.
    assert re.search(r"^\$ tongban log trace 320509-\d{8}-000001", text, re.MULTILINE), "the auditor's act"
    for node_id in ("cn-320509", "cn-341522", "cn-341500"):
        assert (tmp_path / "homes" / node_id / "node.toml").exists()
        assert not (tmp_path / "homes" / node_id / "run" / "node.json").exists(), "stopped cleanly"
