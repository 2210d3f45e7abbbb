"""The printable certificate: an A4 PDF with readable Chinese, the QR code and the token attached.

Text is set in reportlab's built-in CID font STSong-Light (Adobe-GB1), which every PDF reader
supplies, so the file needs no font files and stays small. The QR code is drawn as vector
squares, 40 mm wide, so it prints sharp at any resolution. The token itself travels inside the
file as an embedded attachment (`certificate.sd-jwt`, added with pypdf), which is what
`tongban cert verify FILE.pdf` reads: the printed page is for people, the attachment for
machines, and both carry the same signed token.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import segno
from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

FONT = "STSong-Light"
ATTACHMENT = "certificate.sd-jwt"
QR_SIDE_MM = 40.0


class PdfError(ValueError):
    """A file that is not a tongban certificate PDF."""


@dataclass(frozen=True)
class Sheet:
    """What the page shows, already in words (labels and values)."""

    title: str
    issuer: str
    certificate_id: str
    rows: Sequence[tuple[str, str]]
    footer: str
    token: str
    qr: str


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def _draw_qr(page: canvas.Canvas, text: str, x: float, y: float, side: float) -> None:
    """The QR code as vector squares, `side` wide with its quiet zone; each run of dark modules
    in a row is one rectangle, so no hairline seams show between neighbours."""
    code = segno.make(text, error="m", micro=False)
    matrix = [list(row) for row in code.matrix]
    module = side / (len(matrix) + 8)  # four modules of quiet zone on each side
    page.setFillColorRGB(0, 0, 0)
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            top = y + side - (r + 5) * module
            page.rect(x + (start + 4) * module, top, (c - start) * module, module, stroke=0, fill=1)


def render(sheet: Sheet) -> bytes:
    """The certificate as PDF bytes (CPU-bound: call it from a thread in the node)."""
    font = _font()
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    page.setTitle(sheet.title)
    page.setAuthor(sheet.issuer)
    page.setSubject(sheet.certificate_id)
    width, height = A4
    page.setFont(font, 22)
    page.drawCentredString(width / 2, height - 40 * mm, sheet.title)
    page.setFont(font, 11)
    page.drawCentredString(width / 2, height - 50 * mm, f"证明编号 {sheet.certificate_id}")
    y = height - 70 * mm
    for label, value in sheet.rows:
        page.setFont(font, 12)
        page.drawString(30 * mm, y, f"{label}：")
        page.drawString(75 * mm, y, value)
        y -= 9 * mm
    y -= 6 * mm
    page.setFont(font, 11)
    for line in sheet.footer.splitlines():
        page.drawString(30 * mm, y, line)
        y -= 7 * mm
    side = QR_SIDE_MM * mm
    _draw_qr(page, sheet.qr, width - 30 * mm - side, 30 * mm, side)
    page.setFont(font, 9)
    page.drawString(30 * mm, 40 * mm, f"出具机构：{sheet.issuer}")
    page.drawString(30 * mm, 34 * mm, "扫描右侧二维码或运行 tongban cert verify 可离线核验本证明。")
    page.showPage()
    page.save()
    writer = PdfWriter(clone_from=io.BytesIO(buffer.getvalue()))
    writer.add_attachment(ATTACHMENT, sheet.token.encode("ascii"))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def token_from_pdf(data: bytes) -> str:
    """The token attached to a certificate PDF; PdfError when there is none."""
    try:
        reader = PdfReader(io.BytesIO(data))
        attachments = reader.attachments
        found = attachments.get(ATTACHMENT)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PdfError(f"the PDF cannot be read: {error}") from None
    if not found:
        raise PdfError(f"the PDF carries no {ATTACHMENT} attachment: it is not a tongban certificate")
    try:
        return found[0].decode("ascii").strip()
    except UnicodeDecodeError:
        raise PdfError(f"the {ATTACHMENT} attachment is not a token") from None


def page_text(data: bytes) -> str:
    """The text of the first page, as a reader would extract it (for checks)."""
    return PdfReader(io.BytesIO(data)).pages[0].extract_text()
