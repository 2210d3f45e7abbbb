"""The acceptance receipt (受理回执) handed to the applicant: as text, and as a PDF.

The PDF uses reportlab's built-in CID font STSong-Light (Adobe's Chinese font set, which PDF
viewers supply), so Chinese prints without shipping a font file. The applicant's ID number and
phone number appear masked, as on receipts that may be left lying on a counter.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from federation.clock import CHINA, to_datetime
from node.cases.records import CaseRecord
from node.privacy import mask_id_number, mask_phone


@dataclass(frozen=True)
class ReceiptContext:
    accepting_name: str
    competent_name: str
    time_limit_days: int
    material_names: dict[str, str]


def lines(record: CaseRecord, context: ReceiptContext) -> list[str]:
    opened = to_datetime(record.opened_at_us).astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
    submit = record.history[0] if record.history else None
    out = [
        "受理回执  Acceptance receipt",
        "",
        f"办件编号 Case number:   {record.number}",
        f"事项 Service item:      {record.item_name} ({record.item_code})",
        f"申请人 Applicant:       {record.applicant.name}",
        f"证件号码 ID number:     {mask_id_number(record.applicant.id_number)}",
    ]
    if record.applicant.phone:
        out.append(f"联系电话 Phone:         {mask_phone(record.applicant.phone)}")
    out += [
        f"收件地 Accepted at:     {context.accepting_name} ({record.accepting_node})",
        f"办理地 Decided by:      {context.competent_name} ({record.holder})",
        f"收件时间 Received:      {opened} (北京时间)",
        f"经办人 Clerk:           {submit.clerk if submit else ''}",
        f"办理时限 Time limit:    {context.time_limit_days} 个工作日 working days from acceptance",
        "",
        "收取材料 Materials received:",
    ]
    for material in record.materials:
        name = context.material_names.get(material.kind, material.kind)
        out.append(
            f"  - {name} [{material.kind}] {material.format.upper()} {material.size / 1024:.0f} KiB "
            f"SHA-256 {material.sha256[:16]}…"
        )
    out += [
        "",
        f"凭办件编号 {record.number} 在任一通办窗口查询办理进度。",
        f"Ask at any cross-region window about case {record.number}.",
    ]
    return out


def text(record: CaseRecord, context: ReceiptContext) -> str:
    return "\n".join(lines(record, context)) + "\n"


def pdf(record: CaseRecord, context: ReceiptContext) -> bytes:
    """The receipt as a one-page A4 PDF (CPU work: call it in a thread)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    font = "STSong-Light"
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, invariant=True)
    page.setTitle(f"受理回执 {record.number}")
    _, height = A4
    y = height - 72
    for index, line in enumerate(lines(record, context)):
        size = 18 if index == 0 else 10.5
        page.setFont(font, size)
        page.drawString(56, y, line)
        y -= size + 8
    page.showPage()
    page.save()
    return buffer.getvalue()
