"""Transfer A→B→C between real nodes, each node killed (-9) at some step: afterwards the case
has exactly one holder, everyone agrees who it is, and no history is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cases.support import (
    Hall,
    history,
    open_hukou_case,
)
from tests.utils import wait_until

pytestmark = pytest.mark.e2e


def crash_and_restart(h: Hall) -> None:
    h.node.kill()
    h.node.start()


def holders(halls: tuple[Hall, ...], number: str) -> dict[str, str]:
    return {h.node.node_id: h.case(number)["holder"] for h in halls}


def settled(halls: tuple[Hall, ...], number: str, holder: str) -> bool:
    views = [h.case(number) for h in halls]
    return all(v["holder"] == holder and not v["transfer_to"] for v in views) and all(
        m["present"] for v in views if v["holder"] == holder for m in v["materials"]
    )


def test_transfer_chain_with_crashes_keeps_one_holder_and_the_whole_history(
    three: tuple[Hall, Hall, Hall], tmp_path: Path
) -> None:
    wujiang, huoqiu, luan = three
    everyone = (wujiang, huoqiu, luan)
    number = open_hukou_case(wujiang, tmp_path, "周秀英", "32050919700505002")
    assert wujiang.case(number)["holder"] == "cn-320509", "a Wujiang resident's matter starts in Wujiang"
    wujiang.wait_state(number, "received")

    # A → B, with B down when the offer is made (its catalog cached before) and A killed after B accepts.
    wujiang.node.json_lines("catalog", "refresh")
    huoqiu.node.kill()
    offered = wujiang.do("case", "transfer", number, "--to", "cn-341522", "--reason", "户籍已迁至霍邱")
    assert offered["transfer_to"] == "cn-341522"
    assert offered["holder"] == "cn-320509", "the holder keeps the case until the commit"
    assert "being transferred" in wujiang.fail("case", "accept", number)
    huoqiu.node.start()
    wait_until(lambda: huoqiu.case(number)["role"] == "offered", what="the offer to reach Huoqiu")
    huoqiu.do("case", "transfer-accept", number)
    crash_and_restart(wujiang)
    wait_until(lambda: settled(everyone[:2], number, "cn-341522"), timeout=90, what="the commit to Huoqiu")

    # B → C: refused once (the case stays), then accepted, with B and C each killed on the way.
    huoqiu.do("case", "transfer", number, "--to", "cn-341500", "--reason", "需市级出具")
    wait_until(lambda: luan.case(number)["role"] == "offered", what="the offer to reach Lu'an")
    luan.do("case", "transfer-refuse", number, "--reason", "材料应先由县级核实")
    wait_until(lambda: not huoqiu.case(number)["transfer_to"], what="the refusal to reach Huoqiu")
    assert holders(everyone, number)["cn-341522"] == "cn-341522"
    huoqiu.do("case", "transfer", number, "--to", "cn-341500", "--reason", "县级已核实，需市级出具")
    crash_and_restart(huoqiu)
    wait_until(lambda: luan.case(number)["transfer_to"] == "cn-341500", what="the second offer at Lu'an")
    luan.do("case", "transfer-accept", number)
    crash_and_restart(luan)
    wait_until(
        lambda: settled(everyone, number, "cn-341500"), timeout=90, what="everyone to see Lu'an hold it"
    )

    assert set(holders(everyone, number).values()) == {"cn-341500"}
    assert [h.node.node_id for h in everyone if h.case(number)["role"] in {"holder", "both"}] == ["cn-341500"]
    luan.do("case", "accept", number)
    final = wujiang.wait_state(number, "accepted")
    held = luan.wait_state(number, "accepted")
    assert history(final) == history(held), "the accepting node and the holder share the whole history"
    assert set(history(huoqiu.case(number))) <= set(history(held)), "the middle node's history is a part"
    actions = [e["action"] for e in held["history"]]
    assert actions.count("transferred") == 2
    assert actions.count("transfer-refuse") == 1
    assert actions[:2] == ["submit", "receive"]


def test_an_offer_accepted_after_a_withdrawal_called_it_off_leaves_one_history_everywhere(
    three: tuple[Hall, Hall, Hall], tmp_path: Path
) -> None:
    """Huoqiu offers a case to Lu'an; the applicant withdraws at Wujiang while Lu'an is away, and
    Lu'an, not knowing, accepts the offer: the case stays withdrawn at Huoqiu and all three
    nodes end with the same history, the too-late acceptance in it."""
    wujiang, huoqiu, luan = three
    everyone = (wujiang, huoqiu, luan)
    number = open_hukou_case(wujiang, tmp_path, "孙丽", "34152219800202002")
    huoqiu.wait_state(number, "received")
    huoqiu.do("case", "transfer", number, "--to", "cn-341500", "--reason", "需市级出具")
    wait_until(
        lambda: luan.case(number)["role"] == "offered" and wujiang.case(number)["transfer_to"] == "cn-341500",
        what="the offer to reach Lu'an and Wujiang",
    )

    luan.node.stop()
    wujiang.do("case", "withdraw", number, "--reason", "申请人已在本地办结")
    wujiang.wait_state(number, "withdrawn")  # Huoqiu decided: the offer is called off
    wujiang.node.stop()
    huoqiu.node.stop()
    luan.node.start()
    accepted = luan.do("case", "transfer-accept", number)  # Lu'an has heard nothing of it
    assert accepted["state"] == "received"
    assert "accepted the transfer already" in luan.fail(
        "case", "transfer-refuse", number, "--reason", "改主意"
    )
    wujiang.node.start()
    huoqiu.node.start()

    def agreed() -> bool:
        views = [h.case(number) for h in everyone]
        return all(v["state"] == "withdrawn" for v in views) and len({tuple(history(v)) for v in views}) == 1

    wait_until(agreed, timeout=90, what="the three nodes to agree on the withdrawn case")
    assert set(holders(everyone, number).values()) == {"cn-341522"}, "Huoqiu keeps the case"
    assert not any(h.case(number)["transfer_to"] for h in everyone)
    actions = [e["action"] for e in huoqiu.case(number)["history"]]
    assert actions.count("transfer-accept") == 1
    assert "transferred" not in actions
    assert actions.index("withdraw") < actions.index("transfer-accept")
