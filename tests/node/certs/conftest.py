"""Real issuers for the certificate tests: node identities with real keys on disk (rotatable),
tokens signed the way a node signs them, and trust bundles as a node writes them."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from federation.identity import NodeIdentity
from node.certs import sdjwt, statuslist
from node.certs.trust import IssuerTrust, TrustBundle

FIELDS = {
    "applicant_name": "陈添荣",
    "applicant_id": "34152219800101123X",
    "account_balance": "38216.45",
    "as_of": "2026-11-20",
}
TYPE = "pension-balance-proof"


@dataclass
class Issuer:
    identity: NodeIdentity
    types: frozenset[str] = frozenset({TYPE, "household-registration-proof"})
    entries: dict[int, int] = field(default_factory=dict)
    # The moment the issuer's first key came to be: the tests' "now" (keys have windows).
    now: int = field(default_factory=lambda: int(time.time()))

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def token(
        self,
        *,
        vct: str = TYPE,
        fields: dict[str, Any] | None = None,
        iat: int | None = None,
        days: int = 90,
        index: int | None = None,
        seed: bytes | None = None,
        kid: str | None = None,
        iss: str | None = None,
    ) -> str:
        issued = self.now - 60 if iat is None else iat
        chosen = FIELDS if fields is None else fields
        claims = sdjwt.Claims(
            iss=iss or self.node_id,
            jti=str(ULID()),
            vct=vct,
            iat=issued,
            nbf=issued,
            exp=issued + days * 86400,
            purpose="养老保险个人账户一次性提取",
            status=sdjwt.StatusRef(
                statuslist.list_uri(self.node_id),
                secrets.randbelow(statuslist.CAPACITY) if index is None else index,
            ),
        )
        salts = {name: sdjwt.new_salt(secrets.token_bytes(16)) for name in chosen}
        signer = self.identity.signer
        return sdjwt.issue(seed or signer.seed, kid or signer.key_id, claims, chosen, salts)

    def status_list(
        self, *, iat: int | None = None, ttl: int = 3600, entries: dict[int, int] | None = None
    ) -> str:
        signer = self.identity.signer
        return statuslist.sign(
            signer.seed,
            signer.key_id,
            self.node_id,
            self.entries if entries is None else entries,
            self.now - 5 if iat is None else iat,
            ttl,
        )

    def trust(self, status_list: str | None = None, types: frozenset[str] | None = None) -> IssuerTrust:
        return IssuerTrust(
            node_id=self.node_id,
            name="霍邱县政务服务中心",
            keys=self.identity.keys,
            types=self.types if types is None else types,
            status_list=self.status_list() if status_list is None else status_list,
            fetched_at=self.now,
        )

    def rotate(self) -> None:
        self.identity = self.identity.rotate()


def bundle(*issuers: IssuerTrust) -> TrustBundle:
    return TrustBundle.of("cn-320509", int(time.time()), issuers)


@pytest.fixture
def make_issuer(tmp_path: Path) -> Callable[[str], Issuer]:
    def make(node_id: str = "cn-341522") -> Issuer:
        return Issuer(NodeIdentity.create(tmp_path / node_id, node_id, node_id))

    return make


@pytest.fixture
def huoqiu(make_issuer: Callable[[str], Issuer]) -> Issuer:
    return make_issuer("cn-341522")
