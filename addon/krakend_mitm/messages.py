"""Plain data that flows through the pipeline: the client request in, the reply and its trace out.

No stage logic lives here, so every stage can import it without reaching into another stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IncomingRequest:
    method: str
    path: str  # percent-decoded, what gin matches on
    raw_path: str  # as sent, without the query
    query: str  # raw query string, without "?"
    headers: tuple[tuple[str, str], ...]  # as received: original case and order
    body: bytes
    client_ip: str  # TCP peer
    host: str  # the Host header (or :authority), with port

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class BackendCallRecord:
    backend: int
    method: str
    url: str
    status: int | None = None
    millis: float = 0.0
    error: str | None = None
    raw_data: object = None  # decoded body before manipulation (for explain)
    data: object = None  # after manipulation


@dataclass
class Trace:
    """Every decision made for one request, read by the mitmweb comment and the explain command."""

    outcome: str = ""  # "proxied" | "404" | "405" | "redirect" | "400" | "401" | "403" | "500" | "builtin"
    reason: str = ""
    endpoint: str = ""  # "GET /users/{id}"
    params: dict = field(default_factory=dict)
    rejected: bool = False
    auth: dict | None = None
    backend_calls: list[BackendCallRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
