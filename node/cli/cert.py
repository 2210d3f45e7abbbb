"""Certificates: request one from a peer, decide at the issuer, fetch it, verify it offline."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from node.cli.output import CliError, Context, common, iso, shown_us, typed_time, when


def _client(ctx: Context) -> Any:
    from node.api.client import ApiClient

    return ApiClient(ctx.home)


def _clerk() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


def _masked_name(value: str) -> str:
    from node.privacy import mask_name

    return mask_name(value)


def _masked_id(value: str) -> str:
    from node.privacy import mask_id_number

    return mask_id_number(value)


@click.group()
def cert() -> None:
    """Certificates (远程出具证明): request, issue, fetch, verify offline, revoke."""


@cert.command()
@common
@click.option("--from", "issuer", required=True, help="The issuing node, e.g. cn-341522.")
@click.option("--type", "cert_type", required=True, help="Certificate type from the issuer's catalog.")
@click.option("--applicant-id", required=True, help="The applicant's resident ID number (18 characters).")
@click.option("--applicant-name", required=True, help="The applicant's name.")
@click.option("--purpose", required=True, help="What the certificate is for (printed on it).")
@click.option("--case", "case_id", default="", help="The case this request belongs to.")
@click.option("--consent-by", default="", help="Who consented (default: the applicant).")
@click.option(
    "--consent-at",
    default="",
    help="When consent was given, ISO 8601, Beijing time unless a zone is given (default: now).",
)
@click.option(
    "--consent-method", default="本人当面签字确认", show_default=True, help="How consent was given."
)
@click.option("--clerk", default=_clerk, help="The clerk recording the request.")
def request(
    ctx: Context,
    issuer: str,
    cert_type: str,
    applicant_id: str,
    applicant_name: str,
    purpose: str,
    case_id: str,
    consent_by: str,
    consent_at: str,
    consent_method: str,
    clerk: str,
) -> None:
    """Ask a peer to issue a certificate, with the applicant's consent record."""
    from google.protobuf import timestamp_pb2

    from tongban_api.v1 import certs_pb2

    moment = datetime.now(UTC)
    if consent_at:
        try:
            moment = datetime.fromisoformat(consent_at)
        except ValueError:
            raise CliError(
                f"--consent-at {consent_at!r} is not ISO 8601, e.g. 2026-11-22T09:30:00+08:00"
            ) from None
        moment = typed_time(moment)
    given_at = timestamp_pb2.Timestamp()
    given_at.FromDatetime(moment.astimezone(UTC))
    consent = certs_pb2.Consent(
        given_by=consent_by or applicant_name, given_at=given_at, purpose=purpose, method=consent_method
    )
    with _client(ctx) as client:
        view = client.call(
            client.certs.Request,
            certs_pb2.RequestCertificateRequest(
                issuer=issuer,
                certificate_type=cert_type,
                applicant_id=applicant_id,
                applicant_name=applicant_name,
                purpose=purpose,
                case_id=case_id,
                consent=consent,
                clerk=clerk,
            ),
        )
    if ctx.out.as_json:
        ctx.out.document(request_json(view, masked=False))
        return
    ctx.out.say(
        f"request {view.request_id} sent to {view.issuer}: {view.type_title} for "
        f"{_masked_name(view.applicant_name)} ({_masked_id(view.applicant_id)})\n"
        f"consent: {view.consent.given_by}, {when(view.consent.given_at)}, for {view.consent.purpose!r} "
        f"({view.consent.method})\n"
        f"Follow it with `tongban cert show {view.request_id}`."
    )


@cert.command()
@common
@click.option("--state", default="", help="Only requests in this state (default: all).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def requests(ctx: Context, state: str, limit: int) -> None:
    """Requests sent from this node, newest first, with their answers."""
    _list(ctx, "sent", state, limit)


@cert.command()
@common
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def pending(ctx: Context, limit: int) -> None:
    """Requests waiting here for a decision, each with a preview of what would be issued."""
    _list(ctx, "received", "pending", limit)


def _list(ctx: Context, role: str, state: str, limit: int) -> None:
    from tongban_api.v1 import certs_pb2

    with _client(ctx) as client:
        reply = client.call(
            client.certs.ListRequests, certs_pb2.ListRequestsRequest(role=role, state=state, limit=limit)
        )
    if ctx.out.as_json:
        ctx.out.lines(request_json(r, masked=True) for r in reply.requests)
        return
    if not reply.requests:
        ctx.out.say("no requests waiting" if role == "received" else "no requests sent")
        return
    if role == "sent":
        ctx.out.table(
            f"{len(reply.requests)} requests sent",
            ["REQUEST", "ISSUER", "TYPE", "APPLICANT", "REQUESTED", "STATE", "CERTIFICATE / REASON"],
            [
                (
                    r.request_id,
                    r.issuer,
                    r.certificate_type,
                    f"{_masked_name(r.applicant_name)} {_masked_id(r.applicant_id)}",
                    when(r.requested_at),
                    r.state,
                    r.certificate_id or r.reason,
                )
                for r in reply.requests
            ],
        )
        return
    for r in reply.requests:
        ctx.out.fields(
            f"━ {r.request_id} from {r.requester}",
            [
                ("certificate", f"{r.type_title} ({r.certificate_type})"),
                ("applicant", f"{_masked_name(r.applicant_name)} {_masked_id(r.applicant_id)}"),
                ("purpose", r.purpose),
                ("consent", f"{r.consent.given_by}, {when(r.consent.given_at)}, {r.consent.method}"),
                (
                    "requested",
                    f"{when(r.requested_at)} by {r.clerk or '?'}"
                    + (f", case {r.case_id}" if r.case_id else ""),
                ),
                ("valid for", f"{r.valid_days} days from issuance"),
                ("issuable", "yes" if r.issuable else f"no: {r.not_issuable_because}"),
            ],
        )
        ctx.out.table(
            "would issue:",
            ["FIELD", "LABEL", "VALUE", ""],
            [
                (
                    f.key,
                    f.label,
                    (_masked_name(f.value) if f.key == "applicant_name" else _masked_id(f.value))
                    if f.personal
                    else (f.value or ("(required: --field " + f.key + "=...)" if f.required else "")),
                    "personal, selectively disclosable" if f.personal else "selectively disclosable",
                )
                for f in r.preview
            ],
        )
        ctx.out.say(
            f"Issue: tongban cert issue {r.request_id} --field KEY=VALUE ...   Refuse: tongban cert refuse {r.request_id} --reason '...'\n"
        )


@cert.command()
@common
@click.argument("request_id")
@click.option("--field", "fields", multiple=True, help="A field of the certificate, KEY=VALUE (repeatable).")
@click.option("--valid-days", default=0, type=click.IntRange(0, 3660), help="Validity (default: the type's).")
@click.option("--clerk", default=_clerk, help="The clerk issuing.")
def issue(ctx: Context, request_id: str, fields: tuple[str, ...], valid_days: int, clerk: str) -> None:
    """Issue the certificate a pending request asks for; it goes to the requester at once."""
    from tongban_api.v1 import certs_pb2

    values: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--field {item!r} is not KEY=VALUE")
        values[key.strip()] = value
    with _client(ctx) as client:
        view = client.call(
            client.certs.Issue,
            certs_pb2.IssueCertificateRequest(
                request_id=request_id, fields=values, valid_days=valid_days, clerk=clerk
            ),
        )
    if ctx.out.as_json:
        ctx.out.document(certificate_json(view))
        return
    ctx.out.say(
        f"issued {view.certificate_id}: {view.type_title}, valid until {when(view.expires_at)}; "
        f"sent to the requester (status slot {view.status_index})"
    )


@cert.command()
@common
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (the requester and the applicant read it).")
@click.option("--clerk", default=_clerk, help="The clerk refusing.")
def refuse(ctx: Context, request_id: str, reason: str, clerk: str) -> None:
    """Refuse a pending request, with the reason."""
    from tongban_api.v1 import certs_pb2

    with _client(ctx) as client:
        view = client.call(
            client.certs.Refuse,
            certs_pb2.RefuseCertificateRequest(request_id=request_id, reason=reason, clerk=clerk),
        )
    if ctx.out.as_json:
        ctx.out.document(request_json(view, masked=False))
        return
    ctx.out.say(f"refused {view.request_id}: {view.reason}; the requester is told")


@cert.command()
@common
@click.argument("certificate_id")
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="FILE.pdf or FILE.json"
)
@click.option("--disclose", default="", help="Only these fields, comma-separated (default: all).")
def get(ctx: Context, certificate_id: str, output: str, disclose: str) -> None:
    """Write a certificate to a PDF (printable, token attached) or a JSON file."""
    from tongban_api.v1 import certs_pb2

    path = Path(output)
    if path.suffix.lower() not in (".pdf", ".json"):
        raise CliError("-o names a .pdf or a .json file")
    names = [n.strip() for n in disclose.split(",") if n.strip()]
    with _client(ctx) as client:
        document = client.call(
            client.certs.Get,
            certs_pb2.GetCertificateRequest(
                certificate_id=certificate_id, pdf=path.suffix.lower() == ".pdf", disclose=names
            ),
        )
    if path.suffix.lower() == ".pdf":
        data = document.pdf
    else:
        from node.certs.reader import JSON_FORMAT

        view = certificate_json(document.certificate)
        body = {"format": JSON_FORMAT, **view, "token": document.token, "qr": document.qr}
        if names:
            body["fields"] = {k: v for k, v in body["fields"].items() if k in names}
        data = (json.dumps(body, ensure_ascii=False, indent=2) + "\n").encode()
    from federation.files import write_atomic

    write_atomic(path, data, mode=0o600)
    if ctx.out.as_json:
        ctx.out.document(
            {
                "certificate_id": certificate_id,
                "file": str(path),
                "bytes": len(data),
                "qr_length": len(document.qr),
            }
        )
        return
    ctx.out.say(
        f"wrote {path} ({len(data):,} bytes): {document.certificate.type_title}, QR {len(document.qr)} characters"
    )


@cert.command()
@common
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--qr", "qr_text", default="", help="The text a QR scanner read (TB1:...).")
@click.option(
    "--trust",
    "trust_file",
    default="",
    type=click.Path(dir_okay=False),
    help="Trust data (default: the home's cached file).",
)
def verify(ctx: Context, file: str | None, qr_text: str, trust_file: str) -> None:
    """Verify a certificate offline. Exit 0 only when valid (1 refused, 3 status unknown)."""
    from node.certs import reader, sdjwt
    from node.certs.trust import FILE_NAME, TrustBundle, TrustError
    from node.certs.verify import Verdict, Verifier

    if bool(file) == bool(qr_text):
        raise CliError("give a FILE (PDF, JSON or token) or --qr STRING, one of the two")
    try:
        trust = TrustBundle.load(Path(trust_file) if trust_file else ctx.home.root / "trust" / FILE_NAME)
    except TrustError as error:
        raise CliError(str(error)) from None
    try:
        token = reader.token_from_text(qr_text) if qr_text else reader.token_from_file(Path(file or ""))
    except OSError as error:
        raise CliError(f"cannot read {file}: {error.strerror}") from None
    except sdjwt.TokenFormatError as error:
        verdict = Verdict.unreadable(error.code, str(error))
    else:
        verdict = Verifier(trust).verify(token)
    status = 0 if verdict.valid else (3 if any(c.result == "unknown" for c in verdict.checks) else 1)
    if ctx.out.as_json:
        ctx.out.document(verdict_json(verdict))
    else:
        _show_verdict(ctx, verdict, trust)
    sys.exit(status)


def _show_verdict(ctx: Context, verdict: Any, trust: Any) -> None:
    from node.certs import kinds

    def shown(claim: str) -> str:  # Beijing time, as every table shows times (JSON keeps UTC)
        return shown_us(int(claims.get(claim, 0)) * 1_000_000)

    ctx.out.table(
        None,
        ["CHECK", "RESULT", "CODE", "DETAIL"],
        [(c.name, c.result.upper(), c.code, c.detail) for c in verdict.checks],
    )
    claims = verdict.claims
    if claims:
        issuer = trust.issuers.get(claims.get("iss"))
        ctx.out.fields(
            None,
            [
                (
                    "certificate",
                    f"{kinds.certificate_type(str(claims.get('vct'))).title} ({claims.get('vct')})",
                ),
                ("ID", claims.get("jti")),
                ("issuer", f"{claims.get('iss')} {issuer.name if issuer else ''}"),
                ("issued", shown("iat")),
                ("valid", f"{shown('nbf')} to {shown('exp')}"),
                ("purpose", claims.get("purpose")),
                *((kinds.label(k, str(claims.get("vct"))), v) for k, v in verdict.fields.items()),
            ],
        )
    if verdict.valid:
        ctx.out.say("VALID")
    else:
        first = next(c for c in verdict.checks if c.result != "pass")
        ctx.out.say(f"NOT VALID: {first.code} ({first.detail})")


def verdict_json(verdict: Any) -> dict[str, Any]:
    return {
        "valid": verdict.valid,
        "code": verdict.code,
        "checks": [
            {"check": c.name, "result": c.result, "code": c.code, "detail": c.detail} for c in verdict.checks
        ],
        "claims": verdict.claims,
        "fields": verdict.fields,
    }


@cert.command()
@common
@click.argument("identifier")
def show(ctx: Context, identifier: str) -> None:
    """One certificate (or request), in full."""
    from tongban_api.v1 import certs_pb2

    with _client(ctx) as client:
        reply = client.call(client.certs.Show, certs_pb2.ShowCertificateRequest(id=identifier))
    has_cert = reply.HasField("certificate")
    if ctx.out.as_json:
        ctx.out.document(
            {
                "certificate": certificate_json(reply.certificate) if has_cert else None,
                "request": request_json(reply.request, masked=False) if reply.HasField("request") else None,
            }
        )
        return
    if reply.HasField("request"):
        r = reply.request
        ctx.out.fields(
            f"request {r.request_id} ({r.role})",
            [
                ("from → to", f"{r.requester} → {r.issuer}"),
                ("certificate", f"{r.type_title} ({r.certificate_type})"),
                ("applicant", f"{r.applicant_name} {r.applicant_id}"),
                ("purpose", r.purpose),
                (
                    "consent",
                    f"{r.consent.given_by}, {when(r.consent.given_at)}, for {r.consent.purpose!r} ({r.consent.method})",
                ),
                ("requested", f"{when(r.requested_at)} by {r.clerk}"),
                ("state", r.state + (f": {r.reason}" if r.reason else "")),
                ("decided", when(r.decided_at)),
                ("certificate ID", r.certificate_id),
            ],
        )
    if has_cert:
        c = reply.certificate
        ctx.out.fields(
            f"certificate {c.certificate_id} ({c.role})",
            [
                ("type", f"{c.type_title} ({c.certificate_type})"),
                ("issuer", f"{c.issuer} {c.issuer_name}"),
                ("issued", when(c.issued_at)),
                ("valid", f"{when(c.valid_from)} to {when(c.expires_at)}"),
                ("purpose", c.purpose),
                (
                    "status",
                    c.state
                    + (f": {c.state_reason}" if c.state_reason else "")
                    + (f" ({when(c.state_changed_at)})" if c.HasField("state_changed_at") else ""),
                ),
                ("status slot", c.status_index),
                *((k, v) for k, v in c.fields.items()),
            ],
        )


def _status(ctx: Context, certificate_id: str, state: str, reason: str, clerk: str) -> None:
    from tongban_api.v1 import certs_pb2

    with _client(ctx) as client:
        view = client.call(
            client.certs.ChangeStatus,
            certs_pb2.ChangeStatusRequest(
                certificate_id=certificate_id, state=state, reason=reason, clerk=clerk
            ),
        )
    if ctx.out.as_json:
        ctx.out.document(certificate_json(view))
        return
    ctx.out.say(f"{view.certificate_id} is now {view.state}; the signed status list is published anew")


@cert.command()
@common
@click.argument("certificate_id")
@click.option("--reason", required=True, help="Why (kept with the certificate).")
@click.option("--clerk", default=_clerk)
def revoke(ctx: Context, certificate_id: str, reason: str, clerk: str) -> None:
    """Revoke a certificate this node issued (final)."""
    _status(ctx, certificate_id, "revoked", reason, clerk)


@cert.command()
@common
@click.argument("certificate_id")
@click.option("--reason", default="", help="Why.")
@click.option("--clerk", default=_clerk)
def suspend(ctx: Context, certificate_id: str, reason: str, clerk: str) -> None:
    """Suspend a certificate this node issued (until reinstated)."""
    _status(ctx, certificate_id, "suspended", reason, clerk)


@cert.command()
@common
@click.argument("certificate_id")
@click.option("--reason", default="", help="Why.")
@click.option("--clerk", default=_clerk)
def reinstate(ctx: Context, certificate_id: str, reason: str, clerk: str) -> None:
    """Make a suspended certificate valid again."""
    _status(ctx, certificate_id, "valid", reason, clerk)


@cert.group()
def trust() -> None:
    """The trust data `cert verify` uses: issuers' keys, certificate types and status lists."""


@trust.command(name="refresh")
@common
def trust_refresh(ctx: Context) -> None:
    """Fetch every peer's signed status list now (the node also does it on a schedule)."""
    from tongban_api.v1 import certs_pb2

    with _client(ctx) as client:
        reply = client.call(client.certs.RefreshTrust, certs_pb2.RefreshTrustRequest())
    if ctx.out.as_json:
        ctx.out.document(
            {
                "trust_file": reply.trust_file,
                "sources": [
                    {
                        "issuer": s.issuer,
                        "name": s.name,
                        "list_issued_at": iso(s.list_issued_at, present=s.HasField("list_issued_at")),
                        "fetched_at": iso(s.fetched_at, present=s.HasField("fetched_at")),
                        "revoked": s.revoked,
                        "suspended": s.suspended,
                        "types": s.types,
                        "error": s.error,
                    }
                    for s in reply.sources
                ],
            }
        )
        return
    ctx.out.table(
        f"trust data written to {reply.trust_file}",
        ["ISSUER", "NAME", "LIST ISSUED", "REVOKED", "SUSPENDED", "TYPES", "PROBLEM"],
        [
            (s.issuer, s.name, when(s.list_issued_at), s.revoked, s.suspended, s.types, s.error)
            for s in reply.sources
        ],
    )


def request_json(r: Any, *, masked: bool) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "role": r.role,
        "requester": r.requester,
        "issuer": r.issuer,
        "certificate_type": r.certificate_type,
        "type_title": r.type_title,
        "applicant_id": _masked_id(r.applicant_id) if masked else r.applicant_id,
        "applicant_name": _masked_name(r.applicant_name) if masked else r.applicant_name,
        "purpose": r.purpose,
        "case_id": r.case_id,
        "consent": {
            "given_by": _masked_name(r.consent.given_by) if masked else r.consent.given_by,
            "given_at": iso(r.consent.given_at),
            "purpose": r.consent.purpose,
            "method": r.consent.method,
        },
        "clerk": r.clerk,
        "requested_at": iso(r.requested_at),
        "state": r.state,
        "reason": r.reason,
        "certificate_id": r.certificate_id,
        "decided_at": iso(r.decided_at, present=r.HasField("decided_at")),
        "preview": [
            {
                "key": f.key,
                "label": f.label,
                "required": f.required,
                "personal": f.personal,
                "value": "" if f.personal and masked else f.value,
            }
            for f in r.preview
        ],
        "valid_days": r.valid_days,
        "issuable": r.issuable,
    }


def certificate_json(c: Any) -> dict[str, Any]:
    return {
        "certificate_id": c.certificate_id,
        "role": c.role,
        "issuer": c.issuer,
        "issuer_name": c.issuer_name,
        "certificate_type": c.certificate_type,
        "type_title": c.type_title,
        "request_id": c.request_id,
        "issued_at": iso(c.issued_at),
        "valid_from": iso(c.valid_from),
        "expires_at": iso(c.expires_at),
        "state": c.state,
        "state_reason": c.state_reason,
        "state_changed_at": iso(c.state_changed_at, present=c.HasField("state_changed_at")),
        "status_index": c.status_index,
        "purpose": c.purpose,
        "fields": dict(c.fields),
    }
