"""A running node: `tongban serve` builds one `Node` and runs it until SIGTERM or SIGINT.

Start-up, in order: take the home's serve lock; open the database and bring its schema up to
date; load the identity; assemble the federation; bind the federation port (mutual TLS) and the
local API (token, loopback); attach the domain components; start the scheduler, the delivery
queues and the metrics endpoint; write run/node.json with the bound addresses. Shutdown runs the
other way and ends with a final signed checkpoint of the message log.

Domain components (cases, certificates, video...) plug in through `Component`: each registers its
message handlers with the federation, its services on the two gRPC servers and its jobs with the
scheduler, and is started and stopped with the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import IO, Any, Protocol

import grpc
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine

from federation import Federation, FederationSettings, NodeIdentity, SenderSettings
from federation.clock import STOP_SECONDS, now_us, within
from federation.server import server_options
from federation.store import Database
from node import __version__, components
from node.config import NodeConfig, is_loopback, parse_address
from node.home import Home
from node.signals import on_signals
from node.storage import masked, normalize_url, open_database

_log = logging.getLogger("tongban.node")


class Component(Protocol):
    """A domain part of the node (cases, certificates, video...)."""

    name: str

    def attach(self, node: Node, api: grpc.aio.Server, federation_port: grpc.aio.Server) -> list[str]:
        """Register handlers and services; returns the full names of the gRPC services added."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Addresses:
    federation: str
    api: str
    metrics: str


def sender_settings(config: NodeConfig) -> SenderSettings:
    section = config.federation
    return SenderSettings(
        max_batch=section.max_batch,
        max_in_flight=section.max_in_flight,
        unary=section.unary,
        park_after=section.park_after,
        backoff_cap=section.backoff_cap_seconds,
    )


class Node:
    def __init__(self, home: Home, config: NodeConfig) -> None:
        self.home = home
        self.config = config
        self.db_url = normalize_url(config.storage.url or home.default_db_url())
        self.registry = CollectorRegistry()
        self.started_at_us = 0
        self.addresses = Addresses("", "", "")
        self.components: list[Component] = []
        self.db: Database
        self.federation: Federation
        self.scheduler: AsyncIOScheduler
        self._stop = asyncio.Event()
        self._metrics_server: Any = None
        self._health: list[Any] = []

    @property
    def node_id(self) -> str:
        return self.config.node.id

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Serve until asked to stop (signal or `request_stop`)."""
        keep_large_buffers_in_the_heap()
        lock = self.home.lock()
        try:
            await self._start()
            freeze_start_up_objects()
            on_signals(
                asyncio.get_running_loop(), {signal.SIGTERM: self._stop.set, signal.SIGINT: self._stop.set}
            )
            _log.info(
                "serving %s (%s): federation %s, api %s, metrics %s",
                self.node_id,
                self.config.node.name,
                self.addresses.federation,
                self.addresses.api,
                self.addresses.metrics or "off",
            )
            await self._stop.wait()
            _log.info("stopping %s", self.node_id)
        finally:
            await self._shutdown()
            _unlock(lock)

    async def _start(self) -> None:
        config = self.config
        self.db = await asyncio.to_thread(
            open_database, self.db_url, synchronous=config.storage.sqlite_synchronous
        )
        identity = NodeIdentity.load(self.home.keys, config.node.id, config.node.name)
        self.federation = Federation(
            identity,
            self.db,
            endpoint=config.federation.advertise or config.federation.listen,
            settings=FederationSettings(sender=sender_settings(config)),
            registry=self.registry,
        )
        await self.federation.load()

        options = server_options(self.federation.settings.max_message_bytes)
        self.federation_server = grpc.aio.server(options=options)
        self.api_server = grpc.aio.server(interceptors=[self._api_interceptor()], options=options)
        self.federation.add_to_server(self.federation_server)
        federation_services = ["tongban.v1.Federation"]

        from node.api.server import attach_api  # the servicers import this module's Node for typing

        api_services = attach_api(self, self.api_server)
        for factory in components.factories():
            component = factory(self)
            added = component.attach(self, self.api_server, self.federation_server)
            for name in added:
                (federation_services if name.endswith("Federation") else api_services).append(name)
            self.components.append(component)
        self._health = [
            await _standard_services(self.federation_server, federation_services),
            await _standard_services(self.api_server, api_services),
        ]

        host, port = parse_address(config.federation.listen, "federation listen address")
        bound = self.federation_server.add_secure_port(
            _bind(host, port), self.federation.server_credentials()
        )
        federation_address = f"{_show(host)}:{bound}"
        if not config.federation.advertise:
            self.federation.endpoint = federation_address
        api_host, api_port = parse_address(config.api.listen, "API address")
        if not is_loopback(api_host):
            _log.warning("the local API listens on %s, beyond loopback: protect it with a firewall", api_host)
        api_bound = self.api_server.add_insecure_port(_bind(api_host, api_port))
        metrics_address = self._start_metrics()
        self.addresses = Addresses(federation_address, f"{_show(api_host)}:{api_bound}", metrics_address)

        self.scheduler = AsyncIOScheduler(
            jobstores={
                "default": MemoryJobStore(),
                "persistent": SQLAlchemyJobStore(engine=self._scheduler_engine()),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self.scheduler.add_job(
            self.checkpoint, "interval", seconds=config.log.checkpoint_seconds, id="log-checkpoint"
        )
        self.scheduler.add_job(self.federation.save_contacts, "interval", seconds=30, id="save-contacts")
        # Backlog and parked gauges per peer, for Prometheus.
        self.scheduler.add_job(self.federation.refresh_gauges, "interval", seconds=15, id="outbox-gauges")

        await self.federation_server.start()
        await self.api_server.start()
        await self.federation.start()
        for component in self.components:
            await component.start()
        self.scheduler.start()
        self.started_at_us = now_us()
        self.home.write_run_file(
            {
                "pid": os.getpid(),
                "node_id": self.node_id,
                "federation": self.addresses.federation,
                "api": self.addresses.api,
                "metrics": self.addresses.metrics,
                "started_at_us": self.started_at_us,
                "version": __version__,
            }
        )

    async def _shutdown(self) -> None:
        self.home.clear_run_file()
        for checker in self._health:
            with contextlib.suppress(Exception):
                await checker.enter_graceful_shutdown()
        if hasattr(self, "scheduler") and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for component in reversed(self.components):
            with contextlib.suppress(Exception):
                await within(STOP_SECONDS, component.stop(), f"stopping {type(component).__name__}")
        if hasattr(self, "api_server"):
            await within(2 + STOP_SECONDS, self.api_server.stop(grace=2), "stopping the local API server")
        if hasattr(self, "federation_server"):
            await within(
                2 + STOP_SECONDS, self.federation_server.stop(grace=2), "stopping the federation server"
            )
        if hasattr(self, "federation"):
            await within(3 * STOP_SECONDS, self.federation.stop(), "stopping the federation")
            with contextlib.suppress(Exception):
                await self.checkpoint()
        if hasattr(self, "db"):
            await asyncio.to_thread(self.db.close)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()

    async def checkpoint(self) -> int | None:
        """Sign the message log's head if it moved (the scheduler runs this every minute)."""
        return await self.db.write(
            lambda tx: self.federation.log.checkpoint(tx, self.federation.identity.signer)
        )

    def _api_interceptor(self) -> grpc.aio.ServerInterceptor[Any, Any]:
        from node.api.auth import TokenInterceptor

        return TokenInterceptor(self.home.token(), self.home.token_path)

    def _start_metrics(self) -> str:
        if not self.config.api.metrics:
            return ""
        from prometheus_client import start_http_server

        host, port = parse_address(self.config.api.metrics, "metrics address")
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._metrics_server = server
        return f"{_show(host)}:{server.server_port}"

    def _scheduler_engine(self) -> Any:
        if self.db_url.startswith("sqlite"):
            return create_engine(self.db_url, connect_args={"timeout": 30, "check_same_thread": False})
        return self.db.write_engine

    def describe_database(self) -> str:
        return masked(self.db_url)


def freeze_start_up_objects() -> None:
    """Move everything alive after start-up out of the garbage collector's sight (`gc.freeze`).

    A started node holds some 135,000 long-lived objects (modules, SQLAlchemy, protobuf, gRPC);
    each full collection walked them all, 70 ms of a stopped event loop here, a few times a
    minute under load. Frozen, a full collection walks only what came after: about 11 ms.
    """
    gc.collect()
    gc.freeze()


def keep_large_buffers_in_the_heap() -> None:
    """Serve buffers of up to 16 MiB from the heap instead of fresh memory mappings (glibc).

    A node moves buffers of a MiB and more (material chunks, envelope batches). glibc maps every
    block over its threshold (128 KiB to start with) afresh and unmaps it on release, so each MiB
    costs 256 page faults, and on the virtual machines here those cost far more than the copying:
    1.9 GB/s against 35 GB/s for copies of 1 MiB. The heap keeps up to 64 MiB of released memory
    for reuse before it gives memory back. Elsewhere (musl, macOS) nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    mallopt(m_mmap_threshold, 16 << 20)
    mallopt(m_trim_threshold, 64 << 20)


async def _standard_services(server: grpc.aio.Server, names: list[str]) -> Any:
    """Health checking and reflection, as on every tongban port; returns the health servicer."""
    checker = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    for name in ["", *names]:
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return checker


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _show(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _unlock(lock: IO[str]) -> None:
    with contextlib.suppress(Exception):
        lock.close()
