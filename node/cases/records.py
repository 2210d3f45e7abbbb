"""A case as the domain passes it around: typed, immutable, free of protobuf and SQL."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MaterialRef:
    kind: str
    sha256: str
    size: int
    format: str
    filename: str = ""


@dataclass(frozen=True)
class Applicant:
    name: str
    id_number: str
    phone: str = ""


@dataclass(frozen=True)
class Event:
    """One transition: who (node, clerk), when, why, and what came with it."""

    event_id: str
    case_id: str
    action: str
    node: str
    clerk: str
    at_us: int
    reason: str = ""
    state: str = ""
    holder: str = ""
    materials: tuple[MaterialRef, ...] = ()
    needs: tuple[str, ...] = ()
    result: str = ""
    stars: int = 0
    due_date: str = ""
    transfer_to: str = ""
    note: str = ""


@dataclass(frozen=True)
class CaseRecord:
    case_id: str
    number: str
    item_code: str
    item_name: str
    accepting_node: str
    holder: str
    state: str
    applicant: Applicant
    form: dict[str, str] = field(default_factory=dict)
    materials: tuple[MaterialRef, ...] = ()
    history: tuple[Event, ...] = ()
    catalog_version: int = 0
    opened_at_us: int = 0
    due_date: str = ""
    transfer_to: str = ""
    result: str = ""
    stars: int = 0
    overdue: bool = False
