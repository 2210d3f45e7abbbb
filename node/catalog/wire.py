"""The catalog's protobuf forms: the one module of node.catalog that imports tongban_api.

A catalog travels and is stored as the deterministic encoding of `tongban.v1.Catalog`; its
digest is the SHA-256 of exactly those bytes, so "unchanged" is a comparison of digests.
"""

from __future__ import annotations

import hashlib

from google.protobuf.message import DecodeError

from federation.clock import MICROS
from federation.units import Payload
from federation.wire import WireError, pack, unpack
from node.catalog.model import Catalog, FormField, Item, Material
from tongban_api.v1 import catalog_pb2


def to_proto(catalog: Catalog) -> catalog_pb2.Catalog:
    message = catalog_pb2.Catalog(node_id=catalog.node_id, version=catalog.version)
    message.published_at.seconds = catalog.published_at_us // MICROS
    message.published_at.nanos = (catalog.published_at_us % MICROS) * 1000
    for item in catalog.items:
        message.items.append(
            catalog_pb2.CatalogItem(
                code=item.code,
                name=item.name,
                name_en=item.name_en,
                department=item.department,
                materials=[
                    catalog_pb2.CatalogMaterial(
                        kind=m.kind,
                        name=m.name,
                        mandatory=m.mandatory,
                        formats=list(m.formats),
                        max_bytes=m.max_bytes,
                    )
                    for m in item.materials
                ],
                fields=[
                    catalog_pb2.CatalogField(
                        key=f.key,
                        label=f.label,
                        required=f.required,
                        type=f.type,
                        pattern=f.pattern,
                        choices=list(f.choices),
                    )
                    for f in item.fields
                ],
                time_limit_days=item.time_limit_days,
                modes=list(item.modes),
                certificate_types=list(item.certificate_types),
            )
        )
    return message


def from_proto(message: catalog_pb2.Catalog) -> Catalog:
    published = message.published_at.seconds * MICROS + message.published_at.nanos // 1000
    return Catalog(
        node_id=message.node_id,
        version=message.version,
        published_at_us=published,
        items=tuple(
            Item(
                code=i.code,
                name=i.name,
                name_en=i.name_en,
                department=i.department,
                materials=tuple(
                    Material(m.kind, m.name, m.mandatory, tuple(m.formats), m.max_bytes) for m in i.materials
                ),
                fields=tuple(
                    FormField(f.key, f.label, f.required, f.type, f.pattern, tuple(f.choices))
                    for f in i.fields
                ),
                time_limit_days=i.time_limit_days,
                modes=tuple(i.modes),
                certificate_types=tuple(i.certificate_types),
            )
            for i in message.items
        ),
    )


def encode(catalog: Catalog) -> bytes:
    """The bytes a catalog is stored, sent and digested as."""
    return to_proto(catalog).SerializeToString(deterministic=True)


def decode(data: bytes) -> Catalog:
    message = catalog_pb2.Catalog()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise WireError(f"catalog does not decode: {error}") from None
    return from_proto(message)


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def event_payload(data: bytes) -> Payload:
    """The payload of a catalog.publish / catalog.cache local event: the catalog's exact bytes."""
    return pack(catalog_pb2.CatalogEvent(catalog=data))


def event_catalog(payload: Payload) -> bytes:
    return unpack(payload, catalog_pb2.CatalogEvent()).catalog
