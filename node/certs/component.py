"""Certificates as a node component: services on both ports, handlers, the scheduled refresh.

The catalog decides which certificate types a node may issue (`catalog.certificate_types`) and,
for a verifier, which types an issuer may have issued (the issuer's catalog as cached here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from sqlmodel import Session

from node.catalog import load_catalog
from node.catalog.component import CatalogComponent
from node.certs.api import CertificatesFederationServicer, CertificatesServicer, fetch_status_list
from node.certs.service import CertificateOffice
from node.certs.settings import CertSettings
from node.certs.trust import FILE_NAME
from node.peerlink import PeerChannels
from tongban_api.v1 import certs_pb2_grpc

if TYPE_CHECKING:
    from node.runtime import Node

_log = logging.getLogger("tongban.certs")


def catalog_types(session: Session, node_id: str) -> frozenset[str] | None:
    """The certificate types `node_id`'s catalog lists, or None when its catalog is not known here."""
    catalog = load_catalog(session, node_id)
    return catalog.certificate_types if catalog is not None else None


class CertificatesComponent:
    name = "certificates"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.settings = CertSettings.load(node.home.config_path)
        self.channels = PeerChannels(node.federation)
        node_id = node.node_id

        def items_for(session: Session, cert_type: str) -> frozenset[str]:
            catalog = load_catalog(session, node_id)
            if catalog is None:
                return frozenset()
            return frozenset(
                code for code, types in catalog.certificate_types_by_item().items() if cert_type in types
            )

        self.office = CertificateOffice(
            node.federation,
            node.db,
            node_name=node.config.node.name,
            trust_path=node.home.root / "trust" / FILE_NAME,
            settings=self.settings,
            types_of=catalog_types,
            items_for=items_for,
            fetch_status=lambda peer_id: fetch_status_list(self.channels.channel(peer_id)),
            refresh_catalog=self._catalog_refresher(node),
        )
        self._first: asyncio.Task[Any] | None = None

    @staticmethod
    def _catalog_refresher(node: Node) -> Callable[[str], Awaitable[object]] | None:
        """The catalog component's fetch of one peer's catalog (it starts before this one)."""
        for component in node.components:
            if isinstance(component, CatalogComponent):
                return component.catalogs.refresh
        return None

    def attach(self, node: Node, api: grpc.aio.Server, federation_port: grpc.aio.Server) -> list[str]:
        self.office.register()
        certs_pb2_grpc.add_CertificatesServicer_to_server(CertificatesServicer(self.office), api)
        certs_pb2_grpc.add_CertificatesFederationServicer_to_server(
            CertificatesFederationServicer(self.office, node.federation), federation_port
        )
        return ["tongban.v1.Certificates", "tongban.v1.CertificatesFederation"]

    async def start(self) -> None:
        self.node.scheduler.add_job(
            self.refresh,
            "interval",
            seconds=self.settings.refresh_seconds,
            id="cert-trust-refresh",
            jobstore="default",
            replace_existing=True,
        )
        self._first = asyncio.create_task(self.refresh())

    async def refresh(self) -> None:
        try:
            for source in await self.office.refresh():
                if source.error:
                    _log.info("status list of %s: %s", source.issuer, source.error)
        except Exception:
            _log.exception("refreshing certificate trust data failed")

    async def stop(self) -> None:
        if self._first is not None:
            self._first.cancel()
            with contextlib.suppress(BaseException):
                await self._first
        await self.channels.close()
