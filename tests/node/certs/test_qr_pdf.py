"""The QR code and the PDF: compact enough to print in 40 mm, read back by a real decoder, and
a PDF whose Chinese text reads and whose attached token `cert verify` accepts."""

from __future__ import annotations

import io
import re

import pytest
import segno
import zxingcpp
from PIL import Image, ImageDraw
from pypdf import PdfReader

from node.certs import kinds, pdf, qr, reader, sdjwt
from node.certs.verify import Verifier
from tests.node.certs.conftest import Issuer, bundle

# 40 mm at 300 dots per inch is 472 dots; the printer needs whole dots per module.
DOTS_40MM_300DPI = 472


def test_qr_text_round_trips_to_the_exact_token(huoqiu: Issuer) -> None:
    token = huoqiu.token()
    text = qr.encode(token)
    assert text.startswith("TB1:")
    assert qr.decode(text) == token
    partial = sdjwt.parse(token).present({"applicant_name"})
    assert qr.decode(qr.encode(partial)) == partial


def test_qr_prints_in_40mm_and_a_real_barcode_reader_decodes_it(huoqiu: Issuer) -> None:
    token = huoqiu.token()
    text = qr.encode(token)
    assert len(text) <= 700
    code = segno.make(text, error="m", micro=False)
    modules = code.symbol_size(border=4)[0]
    scale = DOTS_40MM_300DPI // modules
    assert scale >= 3, f"{modules} modules leave {scale} dots per module in 40 mm at 300 dpi"
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=scale, border=4)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    assert image.size[0] <= DOTS_40MM_300DPI
    found = zxingcpp.read_barcodes(image)
    assert [r.format for r in found] == [zxingcpp.BarcodeFormat.QRCode]
    assert found[0].text == text
    verdict = Verifier(bundle(huoqiu.trust()), clock=lambda: huoqiu.now).verify(
        reader.token_from_text(found[0].text)
    )
    assert verdict.valid


def test_every_demo_certificate_type_fits_the_qr_budget(huoqiu: Issuer) -> None:
    for ctype in kinds.TYPES.values():
        text = qr.encode(huoqiu.token(vct=ctype.code, fields=kinds.example_fields(ctype)))
        assert len(text) <= 700, f"{ctype.code}: {len(text)} characters"


def test_the_pdf_reads_in_chinese_and_carries_the_token(huoqiu: Issuer) -> None:
    token = huoqiu.token()
    data = pdf.render(
        pdf.Sheet(
            "城乡居民养老保险个人账户余额证明",
            "霍邱县政务服务中心",
            "01KAB3XYZ",
            [("姓名", "陈添荣"), ("个人账户余额（元）", "38216.45")],
            "用途：养老保险个人账户一次性提取\n特此证明。",
            token,
            qr.encode(token),
        )
    )
    text = pdf.page_text(data)
    for words in ("城乡居民养老保险个人账户余额证明", "陈添荣", "霍邱县政务服务中心", "特此证明"):
        assert words in text
    assert reader.token_from_bytes(data) == token
    assert (
        Verifier(bundle(huoqiu.trust()), clock=lambda: huoqiu.now).verify(reader.token_from_bytes(data)).valid
    )


def test_a_pdf_without_a_token_is_refused_as_malformed() -> None:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    page.drawString(100, 100, "not a certificate")
    page.save()
    with pytest.raises(sdjwt.TokenFormatError, match="attachment") as refused:
        reader.token_from_bytes(buffer.getvalue())
    assert refused.value.code == "malformed"


def test_the_qr_printed_on_the_pdf_is_40mm_and_decodes_at_300_dpi(huoqiu: Issuer) -> None:
    """Rasterise the PDF's own QR drawing (its rectangles) as a 300 dpi printer would, and read it."""
    token = huoqiu.token()
    text = qr.encode(token)
    data = pdf.render(pdf.Sheet("证明", "霍邱县政务服务中心", "x", [], "", token, text))
    content = PdfReader(io.BytesIO(data)).pages[0].get_contents().get_data()
    rects = [
        tuple(float(v) for v in m)
        for m in re.findall(rb"([-\d.]+) ([-\d.]+) ([-\d.]+) ([-\d.]+) re", content)
    ]
    assert rects
    left = min(r[0] for r in rects)
    right = max(r[0] + r[2] for r in rects)
    side_mm = (right - left) / 72 * 25.4
    assert side_mm <= 40, f"the dark modules span {side_mm:.1f} mm"
    dpi = 300
    scale = dpi / 72
    bottom = min(r[1] for r in rects)
    top = max(r[1] + r[3] for r in rects)
    margin = 20
    width, height = int((right - left) * scale) + 2 * margin, int((top - bottom) * scale) + 2 * margin
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for x, y, w, h in rects:
        x0 = margin + (x - left) * scale
        y0 = margin + (top - (y + h)) * scale
        draw.rectangle([round(x0), round(y0), round(x0 + w * scale) - 1, round(y0 + h * scale) - 1], fill=0)
    found = zxingcpp.read_barcodes(image)
    assert [r.text for r in found] == [text]
