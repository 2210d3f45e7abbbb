"""TLS material for the federation port: self-signed node certificates, pinned by fingerprint.

No outside CA is involved. Each node has its own ECDSA P-256 key and a self-signed certificate
whose subject alternative name is `<node id>.tongban`; peers pin its SHA-256 fingerprint at
peering time and trust exactly that certificate (gRPC is given it as the only root).

Joining needs one more trick, because gRPC's server only asks for client certificates it can
verify. The join token carries a one-time secret; both sides derive from it the same P-256 key
and the same self-signed *join certificate* (deterministic ECDSA, fixed fields), so the inviting
node can trust the joiner's connection before it knows the joiner. The inviter stores only the
join certificate, never the secret.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

# Order of the P-256 group: a derived scalar must fall in [1, n-1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_JOIN_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def server_name(node_id: str) -> str:
    """The TLS name a node's certificate carries and its peers expect."""
    return f"{node_id}.tongban"


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, lower-case hex."""
    return hashlib.sha256(der).hexdigest()


def pretty_fingerprint(hex_fingerprint: str) -> str:
    """A fingerprint in groups of four for people to compare aloud."""
    return " ".join(hex_fingerprint[i : i + 4] for i in range(0, len(hex_fingerprint), 4))


def der_to_pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def pem_to_der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class TlsIdentity:
    """A private key (PEM) with its self-signed certificate."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def cert_der(self) -> bytes:
        return pem_to_der(self.cert_pem)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert_der)


def _self_signed(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    *,
    deterministic: bool,
) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    cert = builder.sign(key, hashes.SHA256(), ecdsa_deterministic=deterministic)
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def create_node_tls(node_id: str) -> TlsIdentity:
    """A fresh key and a ten-year self-signed certificate for `node_id`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = _self_signed(
        key,
        server_name(node_id),
        x509.random_serial_number(),
        now - timedelta(days=1),
        now + timedelta(days=3650),
        deterministic=False,
    )
    return TlsIdentity(_key_pem(key), cert)


def join_identity(secret: bytes) -> TlsIdentity:
    """The join certificate that a token's secret stands for (identical on both sides)."""
    material = HKDF(
        algorithm=hashes.SHA256(), length=48, salt=None, info=b"tongban.v1.join-certificate"
    ).derive(secret)
    scalar = int.from_bytes(material[:40], "big") % (_P256_ORDER - 1) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    serial = int.from_bytes(material[40:48], "big") | 1
    # A subject of its own: TLS stacks find trust anchors by subject name, so two join
    # certificates in one trust store must never share one.
    cert = _self_signed(
        key,
        f"tongban-join-{material[40:48].hex()}",
        serial,
        _JOIN_EPOCH,
        _JOIN_EPOCH + timedelta(days=36500),
        deterministic=True,
    )
    return TlsIdentity(_key_pem(key), cert)


def fetch_server_certificate(endpoint: str, client: TlsIdentity, timeout: float = 10.0) -> bytes:
    """Connect to `endpoint` and return the DER certificate it presents, without trusting it.

    The caller compares the fingerprint with the one it expects before using the certificate.
    Blocking: run it in a thread.
    """
    host, _, port = endpoint.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    with tempfile.TemporaryDirectory() as scratch:
        key_file = Path(scratch) / "key.pem"
        cert_file = Path(scratch) / "cert.pem"
        key_file.write_bytes(client.key_pem)
        cert_file.write_bytes(client.cert_pem)
        context.load_cert_chain(cert_file, key_file)
    address = (host.strip("[]"), int(port))
    with (
        socket.create_connection(address, timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=address[0] or "localhost") as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    if not der:
        raise ConnectionError(f"{endpoint} presented no TLS certificate")
    return der
