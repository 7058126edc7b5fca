"""One loaded config, ready to serve: the pipeline, its HTTP client and its key store.

Built from a file and the gateway options, without mitmproxy, so tests and the CLI can use it.
A reload builds a new Runtime and swaps it in; the old one is stopped (timers cancelled,
connections closed), so timers are never duplicated.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import os
from dataclasses import dataclass, field

from krakend_mitm import config as config_mod
from krakend_mitm.auth.stage import AuthStage
from krakend_mitm.client import BackendRequest, BackendResponse, HttpClient
from krakend_mitm.config import GatewayConfig
from krakend_mitm.pipeline import Pipeline

log = logging.getLogger("krakend_mitm")

# How many times a backend call has looped back into this gateway on the current task.
_self_call_depth: contextvars.ContextVar[int] = contextvars.ContextVar("krakend_self_call_depth", default=0)


@dataclass(frozen=True)
class GatewayOptions:
    """The gateway's own settings (mitmproxy options, or CLI flags)."""

    debug: bool = False
    listen_hosts: tuple[str, ...] = ()
    listen_ports: tuple[int, ...] = (8080,)
    jwk_url_map: tuple[str, ...] = ()
    jwks_max_staleness: float = 24 * 3600.0
    environ: dict = field(default_factory=lambda: dict(os.environ), compare=False)


@dataclass(frozen=True)
class FileStamp:
    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: str) -> "FileStamp | None":
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


class Runtime:
    def __init__(self, config: GatewayConfig, options: GatewayOptions, stamp: FileStamp | None = None):
        self.config = config
        self.options = options
        self.stamp = stamp
        self.client = HttpClient(
            disable_compression=config.disable_compression,
            local_dispatch=self._dispatch_local,
            is_local=self._is_local,
        )
        self.auth = AuthStage(config, jwk_url_map=options.jwk_url_map,
                                         max_staleness=options.jwks_max_staleness)
        self.pipeline = Pipeline(config, client=self.client, validators=self.auth.validators, debug=options.debug)

    # ------------------------------------------------------------------ lifecycle

    def adopt(self, previous: "Runtime") -> None:
        """Keep the key sets the previous config already downloaded (a reload must not refetch them)."""
        self.auth.adopt(previous.auth)

    def start(self) -> None:
        """Synchronous, inside the running event loop: start the key store's timers."""
        self.auth.start()

    def stop(self) -> None:
        self.auth.stop()
        try:
            asyncio.get_running_loop().create_task(self.client.aclose())
        except RuntimeError:  # no loop (tests, CLI): nothing is open
            pass

    # ------------------------------------------------------------------ startup report

    def startup_lines(self) -> list[tuple[int, str]]:
        """(level, text) lines describing what was loaded, KrakenD-style."""
        lines: list[tuple[int, str]] = [(logging.INFO, f"[SERVICE: Gin] {len(self.config.endpoints)} endpoints loaded from {self.config.source}")]
        for endpoint in self.config.endpoints:
            backends = ", ".join(f"{b.method} {(b.hosts or ('<no host>',))[0]}{b.url_pattern}" for b in endpoint.backends)
            lines.append((logging.INFO, f"[ENDPOINT: {endpoint.router_path}] {endpoint.method} {endpoint.path} -> {backends}"))
        lines += [(logging.WARNING, text) for text in self.pipeline.skipped]
        lines += [(logging.WARNING, text) for text in self.config.warnings]
        lines += self.auth.startup_lines
        return lines

    # ------------------------------------------------------------------ self calls

    def _is_local(self, host: str, port: int) -> bool:
        if port not in self.options.listen_ports:
            return False
        if host in self.options.listen_hosts or host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return address.is_loopback or address.is_unspecified

    async def _dispatch_local(self, request: BackendRequest) -> BackendResponse:
        depth = _self_call_depth.get() + 1
        token = _self_call_depth.set(depth)
        try:
            return await self.pipeline.dispatch_local(request, depth)
        finally:
            _self_call_depth.reset(token)


def load_runtime(path: str, options: GatewayOptions) -> Runtime:
    """Raises ConfigError (with KrakenD's message and the JSON path) for a config KrakenD would refuse."""
    stamp = FileStamp.of(path)
    config = config_mod.load(path, options.environ)
    return Runtime(config, options, stamp)
