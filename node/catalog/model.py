"""The service catalog as the domain works with it, and its TOML form.

A node's operator writes the catalog as TOML (see config/catalog-*.toml):

    [catalog]
    node = "cn-341522"

    [[item]]
    code = "pension-balance-withdrawal"
    name = "城乡居民基本养老保险个人账户余额一次性提取"
    name_en = "One-time withdrawal of the pension account balance"
    department = "霍邱县人力资源和社会保障局"
    time_limit_days = 5
    modes = ["proxy", "transfer"]
    certificate_types = ["pension-balance-proof"]

    [[item.material]]
    kind = "id-card"
    name = "居民身份证"
    mandatory = true
    formats = ["pdf", "jpeg", "png"]
    max_mb = 10

    [[item.field]]
    key = "bank_account"
    label = "收款银行账号"
    required = true
    type = "text"
    pattern = "[0-9]{12,19}"

`parse_catalog` checks everything and says what to fix, with the item and line of thought an
operator needs ("item pension-balance-withdrawal, material id-card: format 'doc' is not one of
pdf, jpeg, png, ofd").
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from federation.address import InvalidNodeId, validate_node_id

FORMATS = ("pdf", "jpeg", "png", "ofd")
MODES = ("proxy", "transfer")
FIELD_TYPES = ("text", "number", "date", "phone", "id_number", "uscc", "choice")
MAX_MATERIAL_BYTES = 1024 * 1024 * 1024  # one GiB: beyond that a scan is not a scan

_CODE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,63}")
_KIND = re.compile(r"[a-z0-9][a-z0-9\-]{0,47}")
_KEY = re.compile(r"[a-z][a-z0-9_]{0,47}")
_CERT = re.compile(r"[a-z0-9][a-z0-9.\-]{1,63}")


class CatalogError(ValueError):
    """A catalog that cannot be used as written; the message says what to fix."""


@dataclass(frozen=True)
class Material:
    kind: str
    name: str
    mandatory: bool = True
    formats: tuple[str, ...] = FORMATS
    max_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    required: bool = True
    type: str = "text"
    pattern: str = ""
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    name_en: str
    department: str
    materials: tuple[Material, ...] = ()
    fields: tuple[FormField, ...] = ()
    time_limit_days: int = 0
    modes: tuple[str, ...] = MODES
    certificate_types: tuple[str, ...] = ()

    def material(self, kind: str) -> Material | None:
        for material in self.materials:
            if material.kind == kind:
                return material
        return None

    @property
    def mandatory_kinds(self) -> tuple[str, ...]:
        return tuple(m.kind for m in self.materials if m.mandatory)


@dataclass(frozen=True)
class Catalog:
    """One node's catalog at one version."""

    node_id: str
    version: int = 0
    published_at_us: int = 0
    items: tuple[Item, ...] = field(default=())

    def item(self, code: str) -> Item | None:
        for item in self.items:
            if item.code == code:
                return item
        return None

    def require(self, code: str) -> Item:
        """The item with `code`, or CatalogError listing the codes there are."""
        item = self.item(code)
        if item is None:
            known = ", ".join(i.code for i in self.items) or "none"
            raise CatalogError(
                f"{self.node_id} has no service item {code!r} in its catalog (version {self.version}); "
                f"its items are: {known}"
            )
        return item

    @property
    def certificate_types(self) -> frozenset[str]:
        """Every certificate type this node says it issues, over all its items."""
        return frozenset(t for item in self.items for t in item.certificate_types)

    def certificate_types_by_item(self) -> dict[str, tuple[str, ...]]:
        return {item.code: item.certificate_types for item in self.items}

    def same_content(self, other: Catalog) -> bool:
        """Equal items (version and publication time aside)."""
        return self.node_id == other.node_id and self.items == other.items


# -- TOML -------------------------------------------------------------------------------------


def parse_catalog(text: str, *, node_id: str, source: str = "catalog") -> Catalog:
    """A node's catalog from TOML (version 0: the store numbers versions)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"{source} is not valid TOML: {error}") from None
    header = raw.get("catalog", {})
    if not isinstance(header, dict):
        raise CatalogError(f"{source}: [catalog] must be a table, e.g. node = {node_id!r}")
    named = header.get("node", node_id)
    try:
        named = validate_node_id(str(named))
    except InvalidNodeId as error:
        raise CatalogError(f"{source}: [catalog] node: {error}") from None
    if named != node_id:
        raise CatalogError(
            f"{source} is the catalog of {named}, but this node is {node_id}; import it on {named}"
        )
    unknown = set(raw) - {"catalog", "item"}
    if unknown:
        raise CatalogError(f"{source}: unknown sections {sorted(unknown)}; only [catalog] and [[item]]")
    entries = raw.get("item", [])
    if not isinstance(entries, list) or not entries:
        raise CatalogError(f"{source} lists no items; add at least one [[item]] with a code and a name")
    items = [_item(entry, f"{source}, item {index + 1}") for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for item in items:
        if item.code in seen:
            raise CatalogError(f"{source}: item code {item.code!r} appears twice; codes must be unique")
        seen.add(item.code)
    return Catalog(node_id=node_id, items=tuple(items))


def _table(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where} must be a table")
    return entry


def _text(entry: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise CatalogError(f"{where}: {key} must be text")
    value = value.strip()
    if required and not value:
        raise CatalogError(f"{where}: {key} is missing")
    return value


def _strings(entry: dict[str, Any], key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = entry.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where}: {key} must be a list of text, e.g. {list(default) or ['a', 'b']}")
    return tuple(v.strip() for v in value)


def _allowed(values: tuple[str, ...], allowed: tuple[str, ...], key: str, where: str) -> None:
    for value in values:
        if value not in allowed:
            raise CatalogError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")


def _item(entry: Any, where: str) -> Item:
    entry = _table(entry, where)
    code = _text(entry, "code", where)
    if not _CODE.fullmatch(code):
        raise CatalogError(
            f"{where}: code {code!r} must be 2-64 lowercase letters, digits, dots or dashes, "
            "e.g. pension-balance-withdrawal"
        )
    where = f"item {code}"
    unknown = set(entry) - {
        "code",
        "name",
        "name_en",
        "department",
        "time_limit_days",
        "modes",
        "certificate_types",
        "material",
        "field",
    }
    if unknown:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)}")
    days = entry.get("time_limit_days", 0)
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 365:
        raise CatalogError(f"{where}: time_limit_days must be a whole number of working days from 0 to 365")
    modes = _strings(entry, "modes", where, MODES)
    _allowed(modes, MODES, "mode", where)
    certificates = _strings(entry, "certificate_types", where, ())
    for cert in certificates:
        if not _CERT.fullmatch(cert):
            raise CatalogError(
                f"{where}: certificate type {cert!r} must be lowercase letters, digits, dots or dashes"
            )
    materials = [_material(m, where) for m in _list(entry, "material", where)]
    kinds = [m.kind for m in materials]
    if len(set(kinds)) != len(kinds):
        raise CatalogError(f"{where}: a material kind appears twice; each kind once")
    fields = [_field(f, where) for f in _list(entry, "field", where)]
    keys = [f.key for f in fields]
    if len(set(keys)) != len(keys):
        raise CatalogError(f"{where}: a form field key appears twice; each key once")
    return Item(
        code=code,
        name=_text(entry, "name", where),
        name_en=_text(entry, "name_en", where, required=False),
        department=_text(entry, "department", where, required=False),
        materials=tuple(materials),
        fields=tuple(fields),
        time_limit_days=days,
        modes=modes,
        certificate_types=certificates,
    )


def _list(entry: dict[str, Any], key: str, where: str) -> list[Any]:
    value = entry.get(key, [])
    if not isinstance(value, list):
        raise CatalogError(f"{where}: write each {key} as [[item.{key}]]")
    return value


def _material(entry: Any, where: str) -> Material:
    entry = _table(entry, f"{where}, material")
    kind = _text(entry, "kind", f"{where}, material")
    if not _KIND.fullmatch(kind):
        raise CatalogError(f"{where}: material kind {kind!r} must be lowercase letters, digits or dashes")
    at = f"{where}, material {kind}"
    formats = _strings(entry, "formats", at, FORMATS)
    _allowed(formats, FORMATS, "format", at)
    if not formats:
        raise CatalogError(f"{at}: formats must name at least one of {', '.join(FORMATS)}")
    max_mb = entry.get("max_mb", 20)
    if not isinstance(max_mb, int | float) or isinstance(max_mb, bool) or not 0 < max_mb <= 1024:
        raise CatalogError(f"{at}: max_mb must be a size in MiB above 0 and at most 1024")
    mandatory = entry.get("mandatory", True)
    if not isinstance(mandatory, bool):
        raise CatalogError(f"{at}: mandatory must be true or false")
    return Material(
        kind=kind,
        name=_text(entry, "name", at),
        mandatory=mandatory,
        formats=formats,
        max_bytes=int(max_mb * 1024 * 1024),
    )


def _field(entry: Any, where: str) -> FormField:
    entry = _table(entry, f"{where}, field")
    key = _text(entry, "key", f"{where}, field")
    if not _KEY.fullmatch(key):
        raise CatalogError(f"{where}: field key {key!r} must be lowercase letters, digits or underscores")
    at = f"{where}, field {key}"
    kind = _text(entry, "type", at, required=False) or "text"
    _allowed((kind,), FIELD_TYPES, "type", at)
    pattern = _text(entry, "pattern", at, required=False)
    if pattern:
        try:
            re.compile(pattern)
        except re.error as error:
            raise CatalogError(f"{at}: pattern {pattern!r} is not a regular expression: {error}") from None
    choices = _strings(entry, "choices", at, ())
    if kind == "choice" and not choices:
        raise CatalogError(f"{at}: a choice field lists its choices, e.g. choices = ['是', '否']")
    required = entry.get("required", True)
    if not isinstance(required, bool):
        raise CatalogError(f"{at}: required must be true or false")
    return FormField(
        key=key,
        label=_text(entry, "label", at),
        required=required,
        type=kind,
        pattern=pattern,
        choices=choices,
    )
