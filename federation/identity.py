"""A node's identity on disk: its signing keys and its TLS key and certificate.

Layout of the keys folder (in the node's home):

    signing-<key id>.key   current Ed25519 private key, PKCS#8 PEM, mode 0600
    signing-keys.json      public history of every signing key, with endorsements
    tls.key                ECDSA P-256 private key, PKCS#8 PEM, mode 0600
    tls.crt                self-signed certificate, PEM

Rotation writes the new private key, then the history (atomically), then deletes the old
private key: old public keys stay in the history, so what they signed still verifies.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation import tls, wire
from federation.clock import now_us
from federation.files import FileExists, write_atomic, write_secret
from federation.keys import CONTEXT_ENDORSEMENT, Endorsement, KeyHistory, PublicKey, Signer
from federation.units import NodeInfo

HISTORY_FILE = "signing-keys.json"


class IdentityError(Exception):
    """The keys folder is missing something or holds something it should not."""


def _private_pem(signer: Signer) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(signer.seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_signer(path: Path) -> Signer:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} is not an Ed25519 private key")
    return Signer(
        key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
    )


def _history_json(history: KeyHistory) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    keys = [
        {
            "key_id": key.key_id,
            "public_key": b64(key.public_key),
            "valid_from_us": key.valid_from_us,
            "endorsement": b64(key.endorsement_bytes),
            "endorsement_signature": b64(key.endorsement_signature),
        }
        for key in history.keys
    ]
    return json.dumps({"node_id": history.node_id, "keys": keys}, indent=2).encode() + b"\n"


def _history_from_json(data: bytes) -> KeyHistory:
    raw = json.loads(data)
    keys = tuple(
        wire.public_key(
            item["key_id"],
            base64.b64decode(item["public_key"]),
            int(item["valid_from_us"]),
            base64.b64decode(item["endorsement"]),
            base64.b64decode(item["endorsement_signature"]),
        )
        for item in raw["keys"]
    )
    return KeyHistory(raw["node_id"], keys)


@dataclass(frozen=True)
class NodeIdentity:
    """Who this node is: ID, name, current signer, key history and TLS material."""

    node_id: str
    name: str
    signer: Signer
    keys: KeyHistory
    tls: tls.TlsIdentity
    folder: Path

    @classmethod
    def create(cls, folder: Path, node_id: str, name: str) -> NodeIdentity:
        """Make new keys in `folder`; refuses when any key file is already there."""
        folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(p.name for p in folder.iterdir() if p.suffix in {".key", ".crt", ".json"})
        if existing:
            raise FileExists(
                f"{folder} already holds keys ({', '.join(existing)}); refusing to overwrite them"
            )
        signer = Signer.generate()
        history = KeyHistory(node_id, (PublicKey(signer.key_id, signer.public_key, now_us()),))
        node_tls = tls.create_node_tls(node_id)
        write_secret(folder / f"signing-{signer.key_id}.key", _private_pem(signer), exclusive=True)
        write_atomic(folder / HISTORY_FILE, _history_json(history), exclusive=True)
        write_secret(folder / "tls.key", node_tls.key_pem, exclusive=True)
        write_atomic(folder / "tls.crt", node_tls.cert_pem, exclusive=True)
        return cls(node_id, name, signer, history, node_tls, folder)

    @classmethod
    def load(cls, folder: Path, node_id: str, name: str) -> NodeIdentity:
        history_path = folder / HISTORY_FILE
        if not history_path.exists():
            raise IdentityError(
                f"{history_path} is missing: is {folder.parent} a node home? (`tongban init`)"
            )
        history = _history_from_json(history_path.read_bytes())
        if history.node_id != node_id:
            raise IdentityError(f"{history_path} belongs to {history.node_id}, but this home is {node_id}")
        history.validate()
        current = folder / f"signing-{history.current.key_id}.key"
        if not current.exists():
            raise IdentityError(f"{current} is missing: the current signing key's private half is gone")
        signer = _load_signer(current)
        if signer.key_id != history.current.key_id:
            raise IdentityError(f"{current} does not hold key {history.current.key_id}")
        node_tls = tls.TlsIdentity((folder / "tls.key").read_bytes(), (folder / "tls.crt").read_bytes())
        return cls(node_id, name, signer, history, node_tls, folder)

    def rotate(self) -> NodeIdentity:
        """A new current signing key, endorsed by this one; returns the updated identity."""
        signer = Signer.generate()
        valid_from = max(now_us(), self.keys.current.valid_from_us + 1)
        endorsement = Endorsement(
            self.node_id, signer.key_id, signer.public_key, valid_from, self.signer.key_id
        )
        endorsement_bytes = wire.endorsement_bytes(endorsement)
        new_key = PublicKey(
            signer.key_id,
            signer.public_key,
            valid_from,
            endorsement,
            endorsement_bytes,
            self.signer.sign(CONTEXT_ENDORSEMENT, endorsement_bytes),
        )
        history = KeyHistory(self.node_id, (*self.keys.keys, new_key))
        history.validate()
        write_secret(self.folder / f"signing-{signer.key_id}.key", _private_pem(signer), exclusive=True)
        write_atomic(self.folder / HISTORY_FILE, _history_json(history))
        (self.folder / f"signing-{self.signer.key_id}.key").unlink(missing_ok=True)
        return replace(self, signer=signer, keys=history)

    def info(self, endpoint: str) -> NodeInfo:
        """How peers should know this node, reachable at `endpoint`."""
        return NodeInfo(self.node_id, self.name, endpoint, self.tls.cert_der, self.keys)
