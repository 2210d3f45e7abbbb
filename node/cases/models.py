"""The cases domain's tables (SQLModel): clerks, cases, their history and their materials.

Every node that takes part in a case keeps its own row for it, with the full history of
transitions (`case_events`, one row per event ID, so hearing of an event twice changes
nothing). Materials are rows pointing at files in the home's blob folder by SHA-256;
`present` says whether the file has arrived here yet.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel


class ClerkRow(SQLModel, table=True):
    __tablename__ = "clerks"

    name: str = Field(primary_key=True, max_length=64)
    token_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False, unique=True))
    created_at_us: int = Field(sa_type=BigInteger)


class CaseRow(SQLModel, table=True):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_state", "state"),
        Index("ix_cases_holder", "holder"),
    )

    case_id: str = Field(primary_key=True, max_length=40)
    number: str = Field(unique=True, max_length=32)
    item_code: str = Field(max_length=64)
    item_name: str
    accepting_node: str = Field(max_length=16)
    holder: str = Field(max_length=16)
    state: str = Field(max_length=24)
    transfer_to: str = Field(default="", max_length=16)
    applicant_name: str
    applicant_id: str = Field(max_length=32)
    applicant_phone: str = Field(default="", max_length=32)
    form: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON object
    catalog_version: int = Field(default=0, sa_type=BigInteger)
    opened_at_us: int = Field(sa_type=BigInteger)
    updated_at_us: int = Field(sa_type=BigInteger)
    due_date: str = Field(default="", max_length=10)
    overdue: bool = False
    result: str = ""
    stars: int = 0


class CaseEventRow(SQLModel, table=True):
    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_case_at", "case_id", "at_us"),)

    event_id: str = Field(primary_key=True, max_length=80)
    case_id: str = Field(max_length=40)
    action: str = Field(max_length=24)
    node: str = Field(max_length=16)
    clerk: str = Field(default="", max_length=64)
    at_us: int = Field(sa_type=BigInteger)
    reason: str = ""
    state: str = Field(max_length=24)
    holder: str = Field(max_length=16)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON object


class CaseMaterialRow(SQLModel, table=True):
    __tablename__ = "case_materials"
    __table_args__ = (
        Index("ix_case_materials_sha256", "sha256"),
        # The fetcher's question after every case that arrives: which files are still missing?
        # Nearly every row is present, so this finds the few that are not without a full scan.
        Index("ix_case_materials_wanted", "present", "fetch_from"),
    )

    case_id: str = Field(primary_key=True, max_length=40)
    kind: str = Field(primary_key=True, max_length=48)
    sha256: str = Field(max_length=64)
    size: int = Field(sa_type=BigInteger)
    format: str = Field(max_length=8)
    filename: str = ""
    present: bool = False
    fetch_from: str = Field(default="", max_length=16)
    added_at_us: int = Field(sa_type=BigInteger)
