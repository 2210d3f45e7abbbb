"""The video tables (SQLModel): calls as this node saw them, and recordings in the case file.

Every change to these rows happens in a handler of a federation message or a local event
(`video.calls`), so the message log holds the whole story of every call. Times are integer
microseconds since the epoch. Figures are the endpoint's final figures, as JSON.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel


class CallRow(SQLModel, table=True):
    __tablename__ = "video_calls"

    call_id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(index=True, max_length=64)
    case_number: str = Field(default="", max_length=64)
    peer: str = Field(max_length=16)
    direction: str = Field(max_length=4)  # out: we called; in: we were called
    state: str = Field(index=True, max_length=16)  # ringing, answered, active, ended
    outcome: str = Field(default="", max_length=16)
    end_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    ended_by: str = Field(default="", max_length=16)
    caller_shares: bool = False
    caller_records: bool = False
    peer_label: str = Field(default="", max_length=200)
    ring_timeout_seconds: float = 60.0
    offer_sdp: str = Field(sa_column=Column(Text, nullable=False))
    answer_sdp: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at_us: int = Field(sa_type=BigInteger)
    answered_at_us: int | None = Field(default=None, sa_type=BigInteger)
    connected_at_us: int | None = Field(default=None, sa_type=BigInteger)
    ended_at_us: int | None = Field(default=None, sa_type=BigInteger)
    setup_seconds: float = 0.0
    # The last signal this node sent about the call (invite or answer), to match its receipt.
    signal_message_id: str = Field(default="", index=True, max_length=32)
    figures: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class RecordingRow(SQLModel, table=True):
    __tablename__ = "video_recordings"

    recording_id: str = Field(primary_key=True, max_length=32)
    call_id: str = Field(index=True, max_length=32)
    case_id: str = Field(index=True, max_length=64)
    sha256: str = Field(max_length=64)
    size_bytes: int = Field(sa_type=BigInteger)
    duration_seconds: float = 0.0
    complete: bool = True
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    streams: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))  # JSON
    container: str = Field(default="matroska", max_length=16)
    recorded_at_us: int = Field(sa_type=BigInteger)
