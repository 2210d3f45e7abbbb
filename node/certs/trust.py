"""Trust data for verifying certificates offline: per issuer, its keys, types and status list.

A node keeps it up to date (keys from its peer directory, certificate types from the issuer's
catalog as cached here, the issuer's signed status list as last fetched) and writes it to
`trust/certificates.json` in its home after every refresh, so that `tongban cert verify` works
with no network and even with the node stopped. The same file, copied, lets any other party
verify: it holds no secrets.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.files import write_atomic
from federation.keys import KeyHistory, PublicKey

FORMAT = "tongban-cert-trust/1"
FILE_NAME = "certificates.json"


class TrustError(Exception):
    """A trust file that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class IssuerTrust:
    node_id: str
    name: str
    keys: KeyHistory
    types: frozenset[str] | None  # None: this issuer's catalog is not known here
    status_list: str  # the issuer's signed status list (compact JWS), "" when none was fetched
    fetched_at: int  # seconds; when the status list was fetched

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keys": [
                {
                    "kid": key.key_id,
                    "public_key": base64.b64encode(key.public_key).decode("ascii"),
                    "valid_from_us": key.valid_from_us,
                }
                for key in self.keys.keys
            ],
            "types": sorted(self.types) if self.types is not None else None,
            "status_list": self.status_list,
            "fetched_at": self.fetched_at,
        }

    @classmethod
    def from_json(cls, node_id: str, raw: dict[str, Any]) -> IssuerTrust:
        keys = tuple(
            PublicKey(str(k["kid"]), base64.b64decode(k["public_key"]), int(k["valid_from_us"]))
            for k in raw.get("keys", [])
        )
        types = raw.get("types")
        return cls(
            node_id=node_id,
            name=str(raw.get("name", "")),
            keys=KeyHistory(node_id, keys),
            types=frozenset(str(t) for t in types) if isinstance(types, list) else None,
            status_list=str(raw.get("status_list", "")),
            fetched_at=int(raw.get("fetched_at", 0)),
        )


@dataclass(frozen=True)
class TrustBundle:
    """Everything a verifier needs to know about the issuers it trusts."""

    holder: str  # the node that wrote it
    written_at: int  # seconds
    issuers: dict[str, IssuerTrust]

    @classmethod
    def of(cls, holder: str, written_at: int, issuers: Iterable[IssuerTrust]) -> TrustBundle:
        return cls(holder, written_at, {issuer.node_id: issuer for issuer in issuers})

    def to_bytes(self) -> bytes:
        document = {
            "format": FORMAT,
            "holder": self.holder,
            "written_at": self.written_at,
            "issuers": {node_id: issuer.to_json() for node_id, issuer in sorted(self.issuers.items())},
        }
        return json.dumps(document, ensure_ascii=False, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "trust file") -> TrustBundle:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise TrustError(f"{source} is not a tongban certificate trust file ({FORMAT})")
            issuers = {
                str(node_id): IssuerTrust.from_json(str(node_id), item)
                for node_id, item in raw["issuers"].items()
            }
            return cls(str(raw.get("holder", "")), int(raw.get("written_at", 0)), issuers)
        except TrustError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise TrustError(
                f"{source} is damaged ({error}); run `tongban cert trust refresh` to write it anew"
            ) from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, self.to_bytes(), mode=0o644)

    @classmethod
    def load(cls, path: Path) -> TrustBundle:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TrustError(
                f"no trust data at {path}: run `tongban cert trust refresh` on the node (it writes the file), "
                "or pass --trust FILE"
            ) from None
        return cls.from_bytes(data, str(path))
