"""Descope support: a local mock Descope, token decoding and minting helpers, and the `mock-descope` / `token`
commands.

Names load on first use, so `krakend-mitm token --decode` does not import the server or the crypto stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_ACCESS_KEY": "config", "DEFAULT_ACCESS_KEY_ID": "config", "DEFAULT_BASE_URL": "config",
    "DEFAULT_PROJECT_ID": "config", "DEFAULT_TENANT_ID": "config", "DEFAULT_USER_ID": "config",
    "MockConfigError": "config", "DescopeError": "errors", "MockDescope": "mock", "TokenFormatError": "tokens",
    "decode_unverified": "tokens", "token_summary": "tokens",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
