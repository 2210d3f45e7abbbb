"""The certificate tables: requests (sent and received), certificates (issued and received),
and the status lists cached from issuers (this node's own included).

Times are integer microseconds. Personal data (applicant names and ID numbers) is stored in full
because the clerk and the issued certificate need it; views mask it (node.privacy).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class CertRequestRow(SQLModel, table=True):
    """A certificate request, as the requester sent it or as the issuer received it."""

    __tablename__ = "cert_requests"
    __table_args__ = (Index("ix_cert_requests_role_state", "role", "state"),)

    request_id: str = Field(primary_key=True, max_length=26)
    role: str = Field(primary_key=True, max_length=8)  # sent | received
    requester: str = Field(max_length=16)
    issuer: str = Field(max_length=16)
    cert_type: str = Field(max_length=64)
    applicant_id: str = Field(max_length=32)
    applicant_name: str = Field(max_length=64)
    purpose: str = Field(max_length=200)
    case_id: str = Field(default="", max_length=64)
    consent_by: str = Field(max_length=64)
    consent_at_us: int = Field(sa_type=BigInteger)
    consent_purpose: str = Field(max_length=200)
    consent_method: str = Field(default="", max_length=64)
    clerk: str = Field(default="", max_length=64)
    requested_at_us: int = Field(sa_type=BigInteger)
    state: str = Field(default="pending", max_length=16)  # pending | issued | refused | rejected
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    certificate_id: str = Field(default="", max_length=26)
    decided_at_us: int | None = Field(default=None, sa_type=BigInteger)
    decided_by: str = Field(default="", max_length=64)
    message_id: str = Field(default="", max_length=26, index=True)  # the cert.request sent (requester)


class CertificateRow(SQLModel, table=True):
    """A certificate this node issued, or received from its issuer for an applicant."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("issuer", "status_index", name="uq_certificates_status_slot"),)

    certificate_id: str = Field(primary_key=True, max_length=26)
    role: str = Field(max_length=8)  # issued | received
    issuer: str = Field(max_length=16)
    cert_type: str = Field(max_length=64)
    request_id: str = Field(max_length=26, index=True)
    token: str = Field(sa_column=Column(Text, nullable=False))
    status_index: int
    applicant_name: str = Field(max_length=64)
    issued_at_us: int = Field(sa_type=BigInteger)
    valid_from_us: int = Field(sa_type=BigInteger)
    expires_at_us: int = Field(sa_type=BigInteger)
    state: str = Field(default="valid", max_length=16)  # valid | revoked | suspended
    state_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    state_changed_at_us: int | None = Field(default=None, sa_type=BigInteger)


class CertTrustRow(SQLModel, table=True):
    """An issuer's signed status list as last fetched (or, for this node, as last published)."""

    __tablename__ = "cert_status_lists"

    issuer: str = Field(primary_key=True, max_length=16)
    status_list: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    list_issued_at_us: int = Field(default=0, sa_type=BigInteger)
    fetched_at_us: int = Field(default=0, sa_type=BigInteger)
    attempted_at_us: int = Field(default=0, sa_type=BigInteger)
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
