"""Catalogs between real nodes: import, fetch by a peer, versioned refresh that costs nothing
when unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from federation.models import LOG
from tests.e2e.test_federation_e2e import count
from tests.utils import ROOT, NodeProcess, launch, peer_processes

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    wujiang, huoqiu = launch(
        NodeProcess(tmp_path, "cn-320509", "吴江区政务服务中心"),
        NodeProcess(tmp_path, "cn-341522", "霍邱县政务服务中心"),
    )
    try:
        peer_processes(huoqiu, wujiang)
        yield wujiang, huoqiu
    finally:
        for node in (wujiang, huoqiu):
            if node.running:
                node.stop()


def test_a_peer_fetches_caches_and_refreshes_a_catalog_by_version(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, huoqiu = pair
    source = ROOT / "config" / "catalog-cn-341522.toml"
    first = huoqiu.json("catalog", "import", str(source))
    assert (first["version"], first["changed"]) == (1, True)
    again = huoqiu.json("catalog", "import", str(source))
    assert (again["version"], again["changed"]) == (1, False), "importing the same catalog is a no-op"

    cached = wujiang.json("catalog", "show", "--peer", "cn-341522")
    assert (cached["node_id"], cached["version"], cached["source"]) == ("cn-341522", 1, "peer")
    pension = next(i for i in cached["items"] if i["code"] == "pension-balance-withdrawal")
    assert pension["time_limit_days"] == 5
    assert pension["certificate_types"] == ["pension-balance-proof"]
    assert {m["kind"] for m in pension["materials"] if m["mandatory"]} == {"id-card", "application-form"}
    assert cached["digest"] == huoqiu.json("catalog", "show")["digest"]

    entries = select(func.count()).select_from(LOG)
    before = count(wujiang, entries)
    [unchanged] = wujiang.json_lines("catalog", "refresh", "--peer", "cn-341522")
    assert (unchanged["version"], unchanged["changed"], unchanged["error"]) == (1, False, "")
    assert count(wujiang, entries) == before, "an unchanged catalog writes nothing"

    changed = source.read_text(encoding="utf-8").replace("time_limit_days = 5", "time_limit_days = 4")
    edited = tmp_path / "catalog.toml"
    edited.write_text(changed, encoding="utf-8")
    assert huoqiu.json("catalog", "import", str(edited))["version"] == 2
    [fresh] = wujiang.json_lines("catalog", "refresh")
    # The node's own refresh (scheduled two seconds after start) may have fetched version 2 a
    # moment before: then this one found it current. Either way version 2 is what Wujiang holds.
    assert (fresh["peer"], fresh["version"], fresh["error"]) == ("cn-341522", 2, "")
    shown = wujiang.json("catalog", "show", "--peer", "cn-341522")
    assert (
        next(i for i in shown["items"] if i["code"] == "pension-balance-withdrawal")["time_limit_days"] == 4
    )


def test_catalog_import_errors_name_the_problem(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    wujiang, _ = pair
    wrong = wujiang.cli("catalog", "import", str(ROOT / "config" / "catalog-cn-341522.toml"))
    assert wrong.returncode == 1
    assert "is the catalog of cn-341522, but this node is cn-320509" in wrong.stderr
    assert "[INVALID_ARGUMENT]" in wrong.stderr
    none_yet = wujiang.cli("catalog", "show")
    assert "has no catalog yet" in none_yet.stderr
    stranger = wujiang.cli("catalog", "show", "--peer", "cn-110105")
    assert "cn-110105 is not a peer of cn-320509" in stranger.stderr
