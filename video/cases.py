"""What a call needs to know of cases: which case a reference names, and which node holds it.

A call is always about a case (DESIGN.md §7): the caller's node rings the node that holds the
case, and a node refuses a call about a case it does not hold. Holding is the cases domain's
business, so `video` asks through this one small interface: `CasesDomain` answers it with the
cases domain's own lookup (`node.cases.known_case`); `FakeCaseHolders` stands in for it in tests
that run calls without cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlmodel import Session


@dataclass(frozen=True)
class CaseRef:
    case_id: str  # the case's ID, the same at every node
    number: str  # the human-readable case number, e.g. 320509-20261122-000123
    holder: str  # the node holding the case, as this node knows it


class CaseHolders(Protocol):
    def find(self, session: Session, ref: str) -> CaseRef | None:
        """The case `ref` names (its ID or its number), or None when this node knows no such case."""
        ...


class CasesDomain:
    """The cases domain's answer."""

    def find(self, session: Session, ref: str) -> CaseRef | None:
        from node.cases import known_case

        case = known_case(session, ref)
        return CaseRef(case.case_id, case.number, case.holder) if case is not None else None


class FakeCaseHolders:
    """A fixed table of case → holder, for tests that run calls without the cases domain."""

    def __init__(self, holders: dict[str, str] | None = None) -> None:
        self.holders = dict(holders or {})

    def find(self, session: Session, ref: str) -> CaseRef | None:
        holder = self.holders.get(ref)
        return CaseRef(ref, ref, holder) if holder is not None else None
