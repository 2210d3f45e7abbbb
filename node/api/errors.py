"""Turning domain errors into gRPC statuses on the local API, with their messages intact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from federation.errors import FederationError
from node.config import ConfigError


@asynccontextmanager
async def refusals(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    """Abort the call with the error's own code and message when the domain refuses."""
    try:
        yield
    except FederationError as error:
        await context.abort(error.code, error.message)
    except ConfigError as error:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
