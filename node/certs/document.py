"""A certificate as files a person takes away: the token, its QR text and the printable PDF.

The PDF machinery (reportlab, pypdf, segno: some 40 MB) is imported on the first PDF, not when
the node starts: most nodes print few certificates, and an idle node should stay small.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from federation.errors import InvalidArgument
from node.certs import kinds, qr, sdjwt
from node.certs.models import CertificateRow

if TYPE_CHECKING:
    from node.certs import pdf

# Dates on the page are in China Standard Time, as a reader there expects.
_CST = timedelta(hours=8)


@dataclass(frozen=True)
class Document:
    token: str
    qr: str
    pdf: bytes = b""


def _day(seconds: int) -> str:
    return (datetime.fromtimestamp(seconds, tz=UTC) + _CST).strftime("%Y年%m月%d日")


def presentation(row: CertificateRow, disclose: list[str]) -> str:
    """The token with all fields, or only the named ones (a holder's selective disclosure)."""
    token = sdjwt.parse(row.token)
    if not disclose:
        return token.compact
    unknown = sorted(set(disclose) - set(token.fields))
    if unknown:
        raise InvalidArgument(
            f"the certificate has no field {', '.join(unknown)}; it has {', '.join(token.fields)}"
        )
    return token.present(set(disclose))


def sheet(row: CertificateRow, token_text: str, issuer_name: str) -> pdf.Sheet:
    from node.certs import pdf

    token = sdjwt.parse(token_text)
    claims = token.payload
    ctype = kinds.certificate_type(row.cert_type)
    rows = [(kinds.label(name, row.cert_type), str(value)) for name, value in token.fields.items()]
    hidden = len(claims["_sd"]) - len(token.disclosures)
    if hidden:
        rows.append(("未披露项", f"{hidden} 项（持证人未出示）"))
    footer = (
        f"用途：{claims['purpose']}\n"
        f"出具日期：{_day(claims['iat'])}    有效期：{_day(claims['nbf'])} 至 {_day(claims['exp'])}\n"
        "特此证明。"
    )
    return pdf.Sheet(
        ctype.title, issuer_name, row.certificate_id, rows, footer, token_text, qr.encode(token_text)
    )


async def render(row: CertificateRow, disclose: list[str], issuer_name: str, with_pdf: bool) -> Document:
    token_text = presentation(row, disclose)
    code = qr.encode(token_text)
    if not with_pdf:
        return Document(token_text, code)
    from node.certs import pdf

    data = await asyncio.to_thread(pdf.render, sheet(row, token_text, issuer_name))
    return Document(token_text, code, data)
