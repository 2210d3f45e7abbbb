"""Errors that cross the federation, each with the gRPC status code it travels as.

The message always says what happened, to what, and what to do about it, because it ends up on
an operator's screen at the other end: "peer cn-341522 is not known here; run `tongban peer
join` with its token", not "invalid peer".
"""

from __future__ import annotations

import grpc


class FederationError(Exception):
    """An error with a gRPC status code and a message for people."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Unauthenticated(FederationError):
    code = grpc.StatusCode.UNAUTHENTICATED


class InvalidArgument(FederationError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(FederationError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(FederationError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(FederationError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(FederationError):
    code = grpc.StatusCode.UNAVAILABLE


class Rejected(FederationError):
    """A domain's final "no" to a message: recorded, and answered with a REJECTED receipt.

    Raise it from a handler's `apply` (with the code that fits: PERMISSION_DENIED for an access
    rule, FAILED_PRECONDITION for a state conflict, INVALID_ARGUMENT for failed validation). The
    changes the handler made are rolled back; the message is marked as received, so sending it
    again returns the same receipt.
    """

    code = grpc.StatusCode.FAILED_PRECONDITION


def status_code_number(code: grpc.StatusCode) -> int:
    """The google.rpc.Code number of a status code."""
    value = code.value[0]
    assert isinstance(value, int)
    return value


def status_code_from_number(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN
