"""Fault injection for the mock (descope.md §10.5): which faults exist, which routes they hit, how many times,
and how they bend a JWKS or a response body."""

from __future__ import annotations

import copy
import gzip
import json
import threading
from dataclasses import dataclass, field
from typing import Any

TARGETS = ("jwks", "exchange", "refresh", "*")

# Modes that make sense on any Descope route.
GENERIC_MODES = ("status", "status_valid", "slow", "hang", "reset", "invalid_json", "truncated_json", "html_200",
                 "wrong_content_type", "huge_body", "gzip")
# Modes that change the JWK set itself, or its URL.
JWKS_MODES = ("empty_keys", "keys_not_list", "array_body", "unknown_kty", "private_member", "dup_kid", "oct_key",
              "use_enc", "no_alg", "alg_mismatch", "rsa_1024", "redirect")
ALIASES = {"down": "status:503", "garbage": "invalid_json", "oversized": "huge_body", "truncated": "truncated_json"}
DEFAULT_HUGE_BYTES = 5 * 1024 * 1024
_ALG_SWAP = {"RS256": "RS512", "RS384": "RS256", "ES256": "ES384", "ES384": "ES256"}


class FaultError(ValueError):
    """A fault request the mock cannot apply."""


@dataclass
class Fault:
    target: str
    mode: str
    status: int | None = None
    count: int | None = None  # None: until cleared
    delay_ms: int = 0
    size_bytes: int = DEFAULT_HUGE_BYTES
    cleared: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def jwks_only(self) -> bool:
        return self.mode in JWKS_MODES

    def describe(self) -> dict[str, Any]:
        mode = f"{self.mode}:{self.status}" if self.status is not None else self.mode
        return {"target": self.target, "mode": mode, "count": self.count, "delay_ms": self.delay_ms,
                "size_bytes": self.size_bytes if self.mode == "huge_body" else None}


def parse_fault(spec: dict[str, Any]) -> Fault:
    """A Fault from `{"target", "mode", "count", "delay_ms", "size_bytes"}`; raises FaultError with the reason."""
    if not isinstance(spec, dict):
        raise FaultError("a JSON object is required")
    target = spec.get("target", "jwks")
    if target not in TARGETS:
        raise FaultError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    raw_mode = spec.get("mode")
    if not isinstance(raw_mode, str) or not raw_mode:
        raise FaultError("mode is required")
    mode, status = _split_mode(ALIASES.get(raw_mode, raw_mode))
    if mode in JWKS_MODES and target not in ("jwks", "*"):
        raise FaultError(f"mode {mode} only applies to the jwks target")
    count = spec.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise FaultError("count must be a positive integer or null (until cleared)")
    delay_ms = _non_negative_int(spec, "delay_ms", 1000 if mode == "slow" else 0)
    size_bytes = _non_negative_int(spec, "size_bytes", DEFAULT_HUGE_BYTES)
    return Fault(target=target, mode=mode, status=status, count=count, delay_ms=delay_ms, size_bytes=size_bytes)


def _split_mode(mode: str) -> tuple[str, int | None]:
    name, _, code = mode.partition(":")
    if name in ("status", "status_valid"):
        if not code.isdigit() or not 100 <= int(code) <= 599:
            raise FaultError(f"{name} needs an HTTP status, e.g. {name}:503")
        return name, int(code)
    if code:
        raise FaultError(f"mode {name} takes no ':' argument")
    if name not in GENERIC_MODES and name not in JWKS_MODES:
        known = ", ".join(GENERIC_MODES + JWKS_MODES + tuple(ALIASES))
        raise FaultError(f"unknown mode {mode!r}: use one of {known}")
    return name, None


def _non_negative_int(spec: dict, key: str, default: int) -> int:
    value = spec.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultError(f"{key} must be a non-negative integer")
    return value


class FaultBoard:
    """Active faults (one per target) and rate limits, consumed request by request. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._rate_limits: dict[str, list[int]] = {}  # target -> [remaining, retry_after]
        self._spent_hangs: list[Fault] = []  # used-up `hang` faults whose requests still wait for a clear

    def set(self, fault: Fault) -> None:
        with self._lock:
            previous = self._faults.get(fault.target)
            self._faults[fault.target] = fault
        if previous:
            previous.cleared.set()  # a request hanging on the replaced fault goes on

    def clear(self, target: str | None = None) -> list[Fault]:
        with self._lock:
            names = [target] if target else list(self._faults)
            removed = [self._faults.pop(name) for name in names if name in self._faults]
            removed += [fault for fault in self._spent_hangs if target in (None, fault.target)]
            self._spent_hangs = [fault for fault in self._spent_hangs if fault not in removed]
            if target is None:
                self._rate_limits.clear()
            else:
                self._rate_limits.pop(target, None)
        for fault in removed:
            fault.cleared.set()
        return removed

    def take(self, target: str) -> Fault | None:
        """The fault for one request on `target` (a specific fault wins over "*"), counting it down."""
        with self._lock:
            for name in (target, "*"):
                fault = self._faults.get(name)
                if fault is None or (fault.jwks_only and target != "jwks"):
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        del self._faults[name]
                        if fault.mode == "hang":
                            self._spent_hangs.append(fault)
                return fault
            return None

    def set_rate_limit(self, target: str, count: int, retry_after: int) -> None:
        if target not in TARGETS:
            raise FaultError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise FaultError("count must be a non-negative integer")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise FaultError("retry_after must be a non-negative integer (seconds)")
        with self._lock:
            if count:
                self._rate_limits[target] = [count, retry_after]
            else:
                self._rate_limits.pop(target, None)

    def take_rate_limit(self, target: str) -> int | None:
        """Retry-After seconds when this request is rate-limited, else None."""
        with self._lock:
            for name in (target, "*"):
                limit = self._rate_limits.get(name)
                if limit:
                    limit[0] -= 1
                    if limit[0] <= 0:
                        del self._rate_limits[name]
                    return limit[1]
            return None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"faults": [fault.describe() for fault in self._faults.values()],
                    "rate_limits": [{"target": name, "remaining": left, "retry_after": after}
                                    for name, (left, after) in self._rate_limits.items()]}


# ---------------------------------------------------------------------------------------------
# shaping a JWKS


def faulty_jwks(mode: str, keyring: Any) -> Any:
    """The JWK set (`{"keys": [...]}`, or whatever the fault makes of it) for a JWKS-only fault mode."""
    keys = keyring.public_jwks()
    active = keyring.active
    if mode == "empty_keys":
        return {"keys": []}
    if mode == "keys_not_list":
        return {"keys": {}}
    if mode == "array_body":
        return keys
    if mode == "unknown_kty":
        return {"keys": keys + [keyring.x25519_jwk()]}
    if mode == "private_member":
        return {"keys": [active.private_jwk() if key["kid"] == active.kid else key for key in keys]}
    if mode == "dup_kid":
        # The decoy comes last: a "last one wins" reader then picks a key that did not sign the tokens.
        return {"keys": keys + [{**keyring.fault_key("decoy").public_jwk(), "kid": active.kid}]}
    if mode == "oct_key":
        return {"keys": keys + [keyring.oct_jwk(active.kid)]}
    if mode == "rsa_1024":
        return {"keys": keys + [keyring.fault_key("rsa_1024").public_jwk()]}
    return {"keys": [_bent_metadata(mode, key) for key in keys]}


def _bent_metadata(mode: str, jwk: dict[str, Any]) -> dict[str, Any]:
    bent = copy.deepcopy(jwk)
    if mode == "use_enc":
        bent["use"] = "enc"
    elif mode == "no_alg":
        bent.pop("alg", None)
    elif mode == "alg_mismatch":
        bent["alg"] = _ALG_SWAP.get(bent.get("alg"), "RS512")
    return bent


# ---------------------------------------------------------------------------------------------
# bending a response body


def bent_body(mode: str, body: bytes, fault: Fault) -> tuple[bytes, str | None, list[tuple[str, str]]]:
    """(body, content type or None to keep it, extra headers) for a body-level fault."""
    if mode == "invalid_json":
        return b'{"keys": [{"kty": "RSA", not json at all', None, []
    if mode == "truncated_json":
        return body[: max(1, len(body) // 2)], None, []
    if mode == "html_200":
        return (b"<!DOCTYPE html><html><head><title>Descope</title></head>"
                b"<body><h1>Service temporarily unavailable</h1></body></html>", "text/html; charset=utf-8", [])
    if mode == "wrong_content_type":
        return body, "text/plain; charset=utf-8", []
    if mode == "huge_body":
        return padded_json(body, fault.size_bytes), None, []
    if mode == "gzip":
        return gzip.compress(body), None, [("Content-Encoding", "gzip")]
    return body, None, []


def padded_json(body: bytes, size_bytes: int) -> bytes:
    """Still valid JSON, about `size_bytes` long: an extra member on an object, leading whitespace on anything else."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return body + b" " * size_bytes
    if isinstance(document, dict):
        document["x-mock-padding"] = "p" * size_bytes
        return json.dumps(document).encode()
    return b" " * size_bytes + body
