"""The daemon's error type: a wire code (``kontext.common.wire``) and one line."""

from __future__ import annotations

from kontext.common import wire


class ApiError(Exception):
    """Raised by domain code; the API layer turns it into a JSON error response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return wire.HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ApiError:
    return ApiError(wire.INVALID, message)


def not_found(message: str) -> ApiError:
    return ApiError(wire.NOT_FOUND, message)
