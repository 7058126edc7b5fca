"""Descope-style error answers: `{"errorCode", "errorDescription", "errorMessage"}` with the HTTP status Descope
uses (descope.md §7.3). The codes are the documented ones; the messages are the mock's own."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class DescopeError(Exception):
    def __init__(self, status: int, code: str, description: str, message: str,
                 headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.description = description
        self.message = message
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"errorCode": self.code, "errorDescription": self.description, "errorMessage": self.message}


def bad_request(message: str) -> DescopeError:
    """E011001: the request could not be read (malformed JSON, unknown route)."""
    return DescopeError(400, "E011001", "Bad request", message)


def missing_arguments(message: str) -> DescopeError:
    """E011002: a required credential or field is absent."""
    return DescopeError(400, "E011002", "Missing arguments", message)


def unauthorized(message: str) -> DescopeError:
    """E011003: the credential was read but does not validate (bad project, key, refresh token)."""
    return DescopeError(401, "E011003", "Request is not authorized", message)


def forbidden(message: str) -> DescopeError:
    return DescopeError(403, "E011003", "Request is not authorized", message)


def invalid_arguments(message: str) -> DescopeError:
    """E011004: a field has a wrong type or value (unknown project on the keys routes, unknown tenant)."""
    return DescopeError(400, "E011004", "Invalid arguments", message)


def expired_by_logout(message: str = "The refresh token was revoked by a logout") -> DescopeError:
    return DescopeError(401, "E064001", "Token expired by logout", message)


def rate_limited(retry_after: int) -> DescopeError:
    return DescopeError(429, "E130429", "https://docs.descope.com/rate-limit", "API rate limit exceeded.",
                        headers=(("Retry-After", str(retry_after)),))


def fault_status(status: int) -> DescopeError:
    """The body of a `status:<code>` fault: Descope-shaped, with the status's reason phrase."""
    if status == 429:
        return rate_limited(1)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return DescopeError(status, "E000000", phrase, f"mock fault: status {status}")
