"""The certificate domain's messages and events as typed objects (`wire` packs them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Consent:
    """The applicant's consent to the request, as the requesting window recorded it."""

    given_by: str
    given_at_us: int
    purpose: str
    method: str = ""


@dataclass(frozen=True)
class Request:
    request_id: str
    requester: str
    issuer: str
    cert_type: str
    applicant_id: str
    applicant_name: str
    purpose: str
    case_id: str
    consent: Consent
    clerk: str
    requested_at_us: int


@dataclass(frozen=True)
class Issued:
    request_id: str
    certificate_id: str
    token: str
    status_index: int
    clerk: str = ""


@dataclass(frozen=True)
class Refused:
    request_id: str
    reason: str
    clerk: str = ""


@dataclass(frozen=True)
class StatusChange:
    certificate_id: str
    state: str  # revoked | suspended | valid
    reason: str = ""
    clerk: str = ""
