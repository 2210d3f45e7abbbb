"""Masking of personal data for logs and list views (DESIGN.md §9).

Full values appear only where a clerk needs them (`tongban case show`); everywhere else:

    resident ID number   341522198001011234  ->  341522********1234
    mobile number        13812345678         ->  138****5678
    Chinese name         陈添荣              ->  陈*荣
"""

from __future__ import annotations

import re

# 18-character resident ID numbers (last character a digit or X), and the old 15-digit ones.
_ID18 = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Za-z])")
_ID15 = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{6}(\d{3})(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?![0-9])")

# Event keys whose values are personal, and how to mask them.
NAME_KEYS = frozenset({"applicant_name", "person_name", "holder_name", "consent_by"})
ID_KEYS = frozenset({"applicant_id", "id_number", "resident_id"})
PHONE_KEYS = frozenset({"phone", "applicant_phone", "mobile"})


def mask_id_number(value: str) -> str:
    value = value.strip()
    if len(value) == 18:
        return value[:6] + "*" * 8 + value[-4:]
    if len(value) == 15:
        return value[:6] + "*" * 6 + value[-3:]
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) < 8:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_name(value: str) -> str:
    value = value.strip()
    if len(value) <= 1:
        return "*" * len(value)
    if len(value) == 2:
        return value[0] + "*"
    return value[0] + "*" * (len(value) - 2) + value[-1]


def mask_text(text: str) -> str:
    """Mask ID numbers and mobile numbers wherever they appear in free text."""
    text = _ID18.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text)
    text = _ID15.sub(lambda m: m.group(1) + "*" * 6 + m.group(2), text)
    return _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(3), text)


def mask_field(key: str, value: object) -> object:
    """The masked form of one logged field."""
    if not isinstance(value, str):
        return value
    if key in NAME_KEYS:
        return mask_name(value)
    if key in ID_KEYS:
        return mask_id_number(value)
    if key in PHONE_KEYS:
        return mask_phone(value)
    return mask_text(value)
