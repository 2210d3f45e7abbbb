"""The local API as the `tongban` command uses it: a blocking client that finds the node by home.

The address comes from run/node.json, which the running node writes with the ports it actually
bound (so port 0 in the configuration works), else from node.toml; the token from api.token.
Errors come back as ApiError with the node's own message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from node.config import NodeConfig
from node.home import Home
from tongban_api.v1 import (
    cases_pb2_grpc,
    catalog_pb2_grpc,
    certs_pb2_grpc,
    log_pb2_grpc,
    node_pb2_grpc,
    video_pb2_grpc,
)

R = TypeVar("R")


class ApiError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ApiClient:
    def __init__(self, home: Home, *, timeout: float = 60.0, clerk_token: str = "") -> None:
        self.home = home
        self.timeout = timeout
        info = home.run_info()
        if info is not None and info.get("api"):
            self.address = str(info["api"])
        else:
            self.address = NodeConfig.load(home.config_path).api.listen
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {home.token()}"),)
        if clerk_token:  # the acting clerk, for calls that change cases (node.api.cases)
            self._metadata += (("x-tongban-clerk", clerk_token),)
        self.channel = grpc.insecure_channel(
            self.address, options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        self.admin = node_pb2_grpc.NodeAdminStub(self.channel)
        self.peering = node_pb2_grpc.PeeringStub(self.channel)
        self.outbox = node_pb2_grpc.OutboxStub(self.channel)
        self.catalog = catalog_pb2_grpc.CatalogAdminStub(self.channel)
        self.clerks = cases_pb2_grpc.ClerksStub(self.channel)
        self.cases = cases_pb2_grpc.CasesStub(self.channel)
        self.certs = certs_pb2_grpc.CertificatesStub(self.channel)
        self.video = video_pb2_grpc.VideoStub(self.channel)
        self.log = log_pb2_grpc.MessageLogStub(self.channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def aio_channel(self) -> grpc.aio.Channel:
        """An asyncio channel to the same node (for commands that run an event loop)."""
        return grpc.aio.insecure_channel(
            self.address, options=[("grpc.max_receive_message_length", 64 << 20)]
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.channel.close()

    def call(self, method: Callable[..., R], request: Any, *, timeout: float | None = None) -> R:
        """One unary call, with the token; grpc errors become ApiError."""
        try:
            return method(request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def stream(
        self, method: Callable[..., Iterator[R]], request: Any, *, timeout: float | None = None
    ) -> Iterator[R]:
        """A server-streaming call, yielding its messages."""
        try:
            yield from method(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def _error(self, error: grpc.RpcError) -> ApiError:
        code: grpc.StatusCode = error.code()
        details: str = error.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            details = (
                f"no node answers at {self.address} for {self.home.root}: start it with "
                f"`tongban serve --home {self.home.root}` ({details})"
            )
        return ApiError(code, details)
