"""The state machine, as both nodes enforce it."""

from __future__ import annotations

import pytest

from federation.errors import FailedPrecondition, PermissionDenied
from node.cases import lifecycle
from node.cases.lifecycle import Position

RECEIVED = Position("320509-20261122-000001", "received", holder="cn-341522", accepting_node="cn-320509")


def test_the_holder_accepts_a_received_case() -> None:
    rule = lifecycle.check(RECEIVED, "accept", "cn-341522")
    assert lifecycle.next_state(RECEIVED, rule) == "accepted"


def test_an_out_of_order_transition_names_the_current_state() -> None:
    with pytest.raises(
        FailedPrecondition, match="case 320509-20261122-000001 is received; complete needs it to be accepted"
    ):
        lifecycle.check(RECEIVED, "complete", "cn-341522")


def test_only_the_accepting_node_delivers_and_only_the_holder_decides() -> None:
    done = Position("n", "completed", holder="cn-341522", accepting_node="cn-320509")
    with pytest.raises(
        PermissionDenied, match=r"only the accepting node of case n \(cn-320509\) may deliver"
    ):
        lifecycle.check(done, "deliver", "cn-341522")
    with pytest.raises(PermissionDenied, match="only the holder"):
        lifecycle.check(RECEIVED, "accept", "cn-320509")


def test_a_pending_transfer_freezes_the_holder_until_answered() -> None:
    pending = Position(
        "n", "accepted", holder="cn-341522", accepting_node="cn-320509", transfer_to="cn-341500"
    )
    with pytest.raises(FailedPrecondition, match="being transferred to cn-341500"):
        lifecycle.check(pending, "complete", "cn-341522")
    lifecycle.check(pending, "transfer-accept", "cn-341500")
    with pytest.raises(FailedPrecondition, match="already has a transfer"):
        lifecycle.check(pending, "transfer", "cn-341522")
    with pytest.raises(FailedPrecondition, match="no pending transfer"):
        lifecycle.check(RECEIVED, "transfer-accept", "cn-341500")


def test_a_withdrawal_is_asked_by_the_accepting_node_and_decided_by_the_holder() -> None:
    done = Position("n", "completed", holder="cn-341522", accepting_node="cn-320509")
    lifecycle.check(done, "withdraw-request", "cn-320509")  # asking is always possible
    with pytest.raises(PermissionDenied, match="only the holder"):
        lifecycle.check(RECEIVED, "withdraw", "cn-320509")
    with pytest.raises(FailedPrecondition, match="is completed; withdraw needs"):
        lifecycle.check(done, "withdraw", "cn-341522")
    lifecycle.check(done, "withdraw-refused", "cn-341522")
    pending = Position(
        "n", "accepted", holder="cn-341522", accepting_node="cn-320509", transfer_to="cn-341500"
    )
    assert lifecycle.next_state(pending, lifecycle.check(pending, "withdraw", "cn-341522")) == "withdrawn"
