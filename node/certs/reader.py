"""Reading a certificate from what a verifier is handed: a PDF, a JSON file, a token or QR text.

Whatever the form, the result is the compact SD-JWT the verifier judges; a file that holds none
becomes a TokenFormatError with reason "malformed", so `cert verify` reports it like any other
refusal instead of failing.
"""

from __future__ import annotations

import json
from pathlib import Path

from node.certs import pdf, qr, sdjwt

JSON_FORMAT = "tongban-certificate/1"
# A certificate PDF is some tens of kilobytes; anything far larger is not one.
MAX_FILE_BYTES = 16 * 1024 * 1024


def token_from_file(path: Path) -> str:
    """The token in a certificate file; OSError when it cannot be read."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise sdjwt.TokenFormatError("malformed", f"{path} is larger than any certificate file could be")
    return token_from_bytes(path.read_bytes())


def token_from_text(text: str) -> str:
    text = text.strip()
    return qr.decode(text) if qr.looks_like_qr(text) else text


def token_from_bytes(data: bytes) -> str:
    """The token in a certificate file (PDF, JSON, or text holding a token or QR payload)."""
    if data.startswith(b"%PDF"):
        try:
            return pdf.token_from_pdf(data)
        except pdf.PdfError as error:
            raise sdjwt.TokenFormatError("malformed", str(error)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise sdjwt.TokenFormatError("malformed", "the file is neither a PDF nor text") from None
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
            token = document["token"]
        except (ValueError, KeyError, TypeError):
            raise sdjwt.TokenFormatError("malformed", 'the JSON file carries no "token"') from None
        if not isinstance(token, str):
            raise sdjwt.TokenFormatError("malformed", 'the JSON file\'s "token" is not text')
        return token
    return token_from_text(text)
