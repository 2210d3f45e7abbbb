"""Checks of what a clerk types, each failing with a message that says what to fix.

* Resident ID numbers (GB 11643-1999): 17 digits and a check character, ISO 7064 MOD 11-2
  over the first 17 with weights 2^(17-i) mod 11, 'X' standing for 10; digits 7-14 a real date.
* Unified social credit codes (GB 32100-2015): 18 characters from the 31-character set
  0-9 A-H J-N P-R T U W-Y, the last a check character, MOD 31 with weights 3^i mod 31.
* Form fields against the competent node's catalog: required, type, pattern, choices.
* Materials against the catalog item: missing mandatory kinds, kinds the item does not list,
  formats it does not accept, sizes over its limit.
"""

from __future__ import annotations

import re
from datetime import date

import grpc

from federation.errors import FederationError, InvalidArgument
from node.catalog.model import FormField, Item

_ID_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]
_ID_CHECK = "10X98765432"
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = [3**i % 31 for i in range(17)]
_PHONE = re.compile(r"(?:\+?86[- ]?)?1[3-9]\d{9}|0\d{2,3}-?\d{7,8}")


def id_check_character(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def resident_id(text: str) -> str:
    """A valid 18-character resident ID number (upper-case X), or InvalidArgument."""
    value = text.strip().upper()
    if len(value) != 18 or not value[:17].isdigit() or not (value[17].isdigit() or value[17] == "X"):
        raise InvalidArgument(
            f"resident ID number {_shown(value)} must be 18 characters: 17 digits and a digit or X "
            f"(it has {len(value)})"
        )
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidArgument(
            f"resident ID number {_shown(value)} holds no real birth date in digits 7-14 "
            f"({value[6:14]}); check the digits against the ID card"
        ) from None
    expected = id_check_character(value[:17])
    if value[17] != expected:
        raise InvalidArgument(
            f"resident ID number {_shown(value)} ends in {value[17]}, but its check character (GB 11643) "
            f"is {expected}: a digit was mistyped; compare it with the ID card"
        )
    return value


def uscc_check_character(first17: str) -> str:
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def credit_code(text: str) -> str:
    """A valid unified social credit code, or InvalidArgument."""
    value = text.strip().upper()
    if len(value) != 18:
        raise InvalidArgument(
            f"unified social credit code {value!r} must be 18 characters (it has {len(value)})"
        )
    wrong = sorted({c for c in value if c not in _USCC_CHARS})
    if wrong:
        raise InvalidArgument(
            f"unified social credit code {value!r} contains {''.join(wrong)}, which GB 32100 never uses "
            "(no I, O, Z, S or V); check the code on the business licence"
        )
    expected = uscc_check_character(value[:17])
    if value[17] != expected:
        raise InvalidArgument(
            f"unified social credit code {value!r} ends in {value[17]}, but its check character (GB 32100) "
            f"is {expected}: a character was mistyped; compare it with the business licence"
        )
    return value


def phone(text: str) -> str:
    value = text.strip()
    if not _PHONE.fullmatch(value):
        raise InvalidArgument(
            f"phone number {value!r} is neither a mobile number (11 digits from 13x-19x) "
            "nor a landline with area code (0512-63000000)"
        )
    return value


def applicant_number(text: str) -> str:
    """A resident ID number, or (for an enterprise applicant) a unified social credit code."""
    value = text.strip().upper()
    if len(value) == 18 and value[:17].isdigit():
        return resident_id(value)
    if len(value) == 18 and not value[:17].isdigit():
        return credit_code(value)
    return resident_id(value)


def division_of(number: str) -> str:
    """The six-digit division code inside a resident ID (digits 1-6) or a credit code (3-8)."""
    return number[:6] if number[:17].isdigit() else number[2:8]


def _shown(value: str) -> str:
    """An ID number as an error message may show it: masked in the middle, like in logs."""
    from node.privacy import mask_id_number

    return mask_id_number(value) if len(value) >= 8 else repr(value)


def form(item: Item, values: dict[str, str], node_id: str) -> dict[str, str]:
    """The form's values checked against the item's fields; every problem listed at once."""
    problems: list[str] = []
    known = {f.key: f for f in item.fields}
    extra = sorted(set(values) - set(known))
    if extra:
        problems.append(
            f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not a field of {item.code} "
            f"(its fields: {', '.join(known) or 'none'})"
        )
    cleaned: dict[str, str] = {}
    for key, spec in known.items():
        value = values.get(key, "").strip()
        if not value:
            if spec.required:
                problems.append(f"{key} ({spec.label}) is required")
            continue
        problem = _field_problem(spec, value)
        if problem:
            problems.append(problem)
        else:
            cleaned[key] = value.upper() if spec.type in {"id_number", "uscc"} else value
    if problems:
        raise InvalidArgument(
            f"the form for {item.code} does not meet {node_id}'s catalog: " + "; ".join(problems)
        )
    return cleaned


def _field_problem(spec: FormField, value: str) -> str:
    label = f"{spec.key} ({spec.label})"
    try:
        if spec.type == "id_number":
            resident_id(value)
        elif spec.type == "uscc":
            credit_code(value)
        elif spec.type == "phone":
            phone(value)
    except InvalidArgument as error:
        return f"{label}: {error.message}"
    if spec.type == "number":
        try:
            float(value)
        except ValueError:
            return f"{label} must be a number, not {value!r}"
    if spec.type == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return f"{label} must be a date written YYYY-MM-DD, not {value!r}"
    if spec.type == "choice" and value not in spec.choices:
        return f"{label} must be one of {' / '.join(spec.choices)}, not {value!r}"
    if spec.pattern and not re.fullmatch(spec.pattern, value):
        return f"{label} {value!r} does not match the form's rule {spec.pattern}"
    return ""


def materials(item: Item, given: dict[str, tuple[str, int]], node_id: str, *, complete: bool = True) -> None:
    """Materials {kind: (format, size)} against the item; `complete`: all mandatory ones present."""
    problems: list[str] = []
    listed = {m.kind: m for m in item.materials}
    extra = sorted(set(given) - set(listed))
    if extra:
        problems.append(
            f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not listed for {item.code} "
            f"(it lists {', '.join(listed) or 'no materials'})"
        )
    if complete:
        missing = [m for m in item.materials if m.mandatory and m.kind not in given]
        if missing:
            problems.append("missing mandatory " + ", ".join(f"{m.kind} ({m.name})" for m in missing))
    for kind, (fmt, size) in sorted(given.items()):
        spec = listed.get(kind)
        if spec is None:
            continue
        if fmt not in spec.formats:
            problems.append(
                f"{kind} is a {fmt.upper()} file, but {node_id} accepts {', '.join(spec.formats)}"
            )
        if size > spec.max_bytes:
            problems.append(
                f"{kind} is {size / 1048576:.1f} MiB, over {node_id}'s limit of {spec.max_bytes / 1048576:g} MiB"
            )
    if problems:
        message = f"the materials for {item.code} do not meet {node_id}'s catalog: " + "; ".join(problems)
        if all("over " in p and "limit" in p for p in problems):
            raise FederationError(message, code=grpc.StatusCode.RESOURCE_EXHAUSTED)
        raise InvalidArgument(message)
