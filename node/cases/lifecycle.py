"""The case state machine (DESIGN.md §5), enforced alike by the node that acts and by every
node that hears of the act.

    submitted ─receive→ received ─accept→ accepted ─complete→ completed ─deliver→ delivered ─rate→ closed
                            │  └─reject→ rejected ─rate→ closed
                            └─supplement→ supplement_requested ─(materials added: resubmit)→ submitted
    withdraw: the accepting node asks (withdraw-request), the holder decides in its own order:
              withdrawn from submitted, received, supplement_requested or accepted (a pending
              transfer is called off), else withdraw-refused; so an applicant's withdrawal
              racing the holder's decision ends the same on both nodes
    transfer: offer (holder) → accept or refuse (target) → commit (holder): the holder moves,
              the state stays; a withdrawal calls a pending offer off, and the target's answer
              that comes after it is recorded everywhere and changes nothing

Each action names who may take it: the holder (当前承办方), the accepting node (收件地), or the
target of a pending transfer. `check` says, for a case as this node knows it, whether an event
may happen now, with a message naming the current state when it may not.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.errors import FailedPrecondition, PermissionDenied

SUBMITTED = "submitted"
RECEIVED = "received"
ACCEPTED = "accepted"
REJECTED = "rejected"
SUPPLEMENT = "supplement_requested"
COMPLETED = "completed"
DELIVERED = "delivered"
CLOSED = "closed"
WITHDRAWN = "withdrawn"
STATES = (SUBMITTED, RECEIVED, ACCEPTED, REJECTED, SUPPLEMENT, COMPLETED, DELIVERED, CLOSED, WITHDRAWN)
FINISHED = frozenset({REJECTED, COMPLETED, DELIVERED, CLOSED, WITHDRAWN})

HOLDER = "holder"
ACCEPTING = "accepting"
TARGET = "target"


@dataclass(frozen=True)
class Rule:
    action: str
    role: str
    sources: frozenset[str]  # empty: any state
    target: str | None  # None: the state stays
    label: str  # Chinese, for the history as clerks read it


def _rule(action: str, role: str, sources: tuple[str, ...], target: str | None, label: str) -> Rule:
    return Rule(action, role, frozenset(sources), target, label)


_OPEN = (SUBMITTED, RECEIVED, SUPPLEMENT, ACCEPTED)
RULES = {
    rule.action: rule
    for rule in (
        _rule("submit", ACCEPTING, (), SUBMITTED, "收件并提交"),
        _rule("receive", HOLDER, (SUBMITTED,), RECEIVED, "已接收"),
        _rule("accept", HOLDER, (RECEIVED,), ACCEPTED, "受理"),
        _rule("reject", HOLDER, (RECEIVED,), REJECTED, "不予受理"),
        _rule("supplement", HOLDER, (RECEIVED,), SUPPLEMENT, "一次性告知补正"),
        _rule("add-material", ACCEPTING, (), None, "补充材料"),
        _rule("resubmit", ACCEPTING, (SUPPLEMENT,), SUBMITTED, "补正后重新提交"),
        _rule("complete", HOLDER, (ACCEPTED,), COMPLETED, "办结"),
        _rule("deliver", ACCEPTING, (COMPLETED,), DELIVERED, "送达申请人"),
        _rule("rate", ACCEPTING, (DELIVERED, REJECTED), CLOSED, "好差评"),
        _rule("withdraw-request", ACCEPTING, (), None, "申请人申请撤回"),
        _rule("withdraw", HOLDER, _OPEN, WITHDRAWN, "申请人撤回"),
        _rule("withdraw-refused", HOLDER, (), None, "撤回未获准(已办结)"),
        _rule("transfer", HOLDER, (RECEIVED, ACCEPTED), None, "转办提议"),
        _rule("transfer-accept", TARGET, (RECEIVED, ACCEPTED), None, "接受转办"),
        _rule("transfer-refuse", TARGET, (RECEIVED, ACCEPTED), None, "拒绝转办"),
        _rule("transferred", HOLDER, (RECEIVED, ACCEPTED), None, "转办完成"),
        _rule("refused-by-peer", ACCEPTING, (SUBMITTED,), REJECTED, "对方节点拒收"),
        _rule("remind", HOLDER, (ACCEPTED, SUPPLEMENT), None, "时限提醒"),
        _rule("overdue", HOLDER, (ACCEPTED, SUPPLEMENT), None, "已超期"),
    )
}
# Actions a clerk asks for by name (the rest follow from them).
CLERK_ACTIONS = (
    "accept",
    "reject",
    "supplement",
    "complete",
    "deliver",
    "withdraw",
    "rate",
    "transfer",
    "transfer-accept",
    "transfer-refuse",
)


@dataclass(frozen=True)
class Position:
    """What the lifecycle needs to know of a case as one node sees it."""

    number: str
    state: str
    holder: str
    accepting_node: str
    transfer_to: str = ""


def role_node(position: Position, role: str) -> str:
    if role == HOLDER:
        return position.holder
    if role == ACCEPTING:
        return position.accepting_node
    return position.transfer_to


def check(position: Position, action: str, node: str) -> Rule:
    """The rule for `action` by `node`, or the error that says why it cannot happen now."""
    rule = RULES.get(action)
    if rule is None:
        raise FailedPrecondition(f"{action!r} is not something a case can undergo")
    who = role_node(position, rule.role)
    if node != who:
        if rule.role == TARGET and not position.transfer_to:
            raise FailedPrecondition(
                f"case {position.number} has no pending transfer (it is {position.state}, held by "
                f"{position.holder}); nothing to {action}"
            )
        what = {HOLDER: "the holder", ACCEPTING: "the accepting node", TARGET: "the transfer's target"}[
            rule.role
        ]
        raise PermissionDenied(
            f"only {what} of case {position.number} ({who}) may {action} it; {node} is not"
        )
    if rule.sources and position.state not in rule.sources:
        allowed = ", ".join(sorted(rule.sources))
        raise FailedPrecondition(
            f"case {position.number} is {position.state}; {action} needs it to be {allowed}"
        )
    pending = bool(position.transfer_to)
    if action == "transfer" and pending:
        raise FailedPrecondition(
            f"case {position.number} already has a transfer to {position.transfer_to} pending"
        )
    if action in {"transfer-accept", "transfer-refuse", "transferred"} and not pending:
        raise FailedPrecondition(f"case {position.number} has no pending transfer")
    if pending and rule.role == HOLDER and action not in {"transferred", "remind", "overdue", "withdraw"}:
        raise FailedPrecondition(
            f"case {position.number} is being transferred to {position.transfer_to}; "
            f"it can {action} once that is accepted or refused"
        )
    return rule


def next_state(position: Position, rule: Rule) -> str:
    return rule.target or position.state
