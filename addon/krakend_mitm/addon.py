"""The only module that knows mitmproxy: options, hooks -> pipeline calls, flow comments, commands.

Every client request is answered from the `request` hook: the pipeline calls the backends itself,
so nothing ever falls through to the `--mode reverse:` placeholder, not an unmatched request and
not one that raised. Style anchor: mitmproxy's addons/mapremote.py and blocklist.py.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import time
import traceback
from collections.abc import Sequence
from typing import Optional

from mitmproxy import command, ctx, exceptions, flow, http
from mitmproxy.net.http.status_codes import RESPONSES

from krakend_mitm import respond
from krakend_mitm.errors import ConfigError, describe
from krakend_mitm.goduration import parse_duration
from krakend_mitm.heap import TRIM_INTERVAL, HeapTrimmer
from krakend_mitm.messages import IncomingRequest, Reply, Trace
from krakend_mitm.pipeline import InvalidRequestPath, decode_path
from krakend_mitm.runtime import FileStamp, GatewayOptions, Runtime, load_runtime

log = logging.getLogger("krakend_mitm")

OPTION_NAMES = ("krakend_config", "krakend_debug", "krakend_watch", "jwk_url_map", "jwks_max_staleness")
WATCH_INTERVAL = 1.0
REJECTED_MARK = ":no_entry:"
ERROR_MARK = ":boom:"


class Gateway:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.config_error: str | None = None
        self._watch_task: asyncio.Task | None = None
        self._trim_task: asyncio.Task | None = None
        self._heap = HeapTrimmer()
        self._running = False

    # ------------------------------------------------------------------ options

    def load(self, loader) -> None:
        loader.add_option("krakend_config", str, "./krakend.json",
                          "Path of the KrakenD v3 config (JSON, or YAML by .yml/.yaml extension).")
        loader.add_option("krakend_debug", bool, False,
                          "Like `krakend run -d`: enable the /__debug/ endpoint.")
        loader.add_option("krakend_watch", bool, True,
                          "Reload the config when its file changes; a broken file keeps the last good config.")
        loader.add_option("jwk_url_map", Sequence[str], [],
                          "Rewrite jwk_url prefixes, as PREFIX=REPLACEMENT, e.g. "
                          "https://api.descope.com=http://127.0.0.1:4000. Repeatable.")
        loader.add_option("jwks_max_staleness", str, "24h",
                          "How long keys from the last good JWKS download keep validating while the IdP "
                          "cannot be reached (Go duration).")

    def configure(self, updated: set[str]) -> None:
        if "connection_strategy" in updated and ctx.options.connection_strategy != "lazy":
            # mitmproxy would otherwise dial the reverse placeholder before any hook runs
            ctx.options.connection_strategy = "lazy"
        if "keep_host_header" in updated and not ctx.options.keep_host_header:
            # the client's Host is what KrakenD forwards as X-Forwarded-Host
            ctx.options.keep_host_header = True
        if not updated & {"krakend_config", "krakend_debug", "jwk_url_map", "jwks_max_staleness",
                          "listen_host", "listen_port", "mode"}:
            return
        if not self._running and self.runtime is None and self._misspelt_options():
            raise SystemExit(1)  # start-up: a typo in our options must not run with defaults
        options = self._gateway_options()
        try:
            runtime = load_runtime(ctx.options.krakend_config, options)
        except ConfigError as e:
            self._config_failed(e)
            if self._running or self.runtime is not None:
                raise exceptions.OptionsError(self.config_error) from None
            # Start-up: mitmproxy loads -s scripts in a task that may race its listener, and only
            # checks for logged errors after it listens. Exit now, so a broken config never listens.
            raise SystemExit(1)
        self._swap(runtime)

    def _gateway_options(self) -> GatewayOptions:
        for entry in ctx.options.jwk_url_map:
            prefix, sep, replacement = entry.partition("=")
            if not sep or not prefix or not replacement:
                raise exceptions.OptionsError(f"jwk_url_map: expected PREFIX=REPLACEMENT, got {entry!r}")
        try:
            staleness = parse_duration(ctx.options.jwks_max_staleness)
        except ValueError as e:
            raise exceptions.OptionsError(f"jwks_max_staleness: {e}") from None
        if staleness <= 0:
            raise exceptions.OptionsError("jwks_max_staleness: must be positive")
        ports = {ctx.options.listen_port or 8080}
        for mode in ctx.options.mode:
            if "@" in mode:
                try:
                    ports.add(int(mode.rsplit("@", 1)[1]))
                except ValueError:
                    pass
        hosts = tuple(h for h in (ctx.options.listen_host,) if h)
        return GatewayOptions(debug=ctx.options.krakend_debug, listen_hosts=hosts, listen_ports=tuple(sorted(ports)),
                              jwk_url_map=tuple(ctx.options.jwk_url_map), jwks_max_staleness=staleness)

    def _config_failed(self, error: ConfigError) -> None:
        self.config_error = describe(error, ctx.options.krakend_config)
        log.error("ERROR parsing the configuration file: %s", self.config_error)

    def _swap(self, runtime: Runtime) -> None:
        old, self.runtime = self.runtime, runtime
        self.config_error = None
        for level, text in runtime.startup_lines():
            log.log(level, text)
        if old is not None:
            runtime.adopt(old)
            old.stop()
        if self._running:
            runtime.start()

    # ------------------------------------------------------------------ lifecycle

    def running(self) -> None:
        self._running = True
        if self.runtime is not None:
            self.runtime.start()
        if ctx.options.krakend_watch:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        if self._heap.available:
            self._trim_task = asyncio.get_running_loop().create_task(self._trim_heap())

    def done(self) -> None:
        self._running = False
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None
        if self._trim_task is not None:
            self._trim_task.cancel()
            self._trim_task = None
        if self.runtime is not None:
            self.runtime.stop()

    @staticmethod
    def _misspelt_options() -> list[str]:
        """`--set` names mitmproxy does not know and that look like ours (mitmproxy keeps them silently)."""
        misspelt = []
        for name in list(ctx.options.deferred):
            close = difflib.get_close_matches(name, OPTION_NAMES, n=1, cutoff=0.75)
            if close or name.startswith(("krakend", "jwk")):
                hint = f"; did you mean {close[0]}?" if close else ""
                log.error("unknown option %s%s", name, hint)
                misspelt.append(name)
        return misspelt

    async def _watch(self) -> None:
        """Poll the config file; reload on change, keep the last good config on a broken file."""
        missing = False  # warn once per disappearance, not every second
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            path = ctx.options.krakend_config
            stamp = FileStamp.of(path)
            if stamp is None:
                if not missing:
                    log.warning("config %s is gone; the last good config keeps serving until it is back", path)
                missing = True
                continue
            missing = False
            current = self.runtime.stamp if self.runtime else None
            if stamp == current:
                continue
            try:
                runtime = await asyncio.to_thread(load_runtime, path, self._gateway_options())
            except ConfigError as e:
                if self.runtime is not None:
                    self.runtime.stamp = stamp  # do not retry the same broken file every second
                log.error("config reload failed, the last good config keeps serving: %s", describe(e, path))
                continue
            except Exception:
                log.exception("config reload failed, the last good config keeps serving")
                continue
            log.info("config %s changed, reloaded", path)
            self._swap(runtime)

    async def _trim_heap(self) -> None:
        while True:
            await asyncio.sleep(TRIM_INTERVAL)
            try:
                await asyncio.to_thread(self._heap.trim)
            except Exception:  # never let housekeeping end the gateway
                log.exception("malloc_trim failed")

    # ------------------------------------------------------------------ requests

    async def request(self, f: http.HTTPFlow) -> None:
        if f.response is not None or f.error is not None:
            return
        try:
            reply, trace = await self._handle(f)
        except Exception as e:  # never let a request fall through to the placeholder
            log.error("internal error on %s %s\n%s", f.request.method, f.request.path, traceback.format_exc())
            router = self.runtime.config.router if self.runtime else None
            reply = respond.internal_error(router, f"internal gateway error: {e}") if router else Reply(500)
            trace = Trace(outcome="500", reason=f"internal gateway error: {type(e).__name__}: {e}", rejected=True)
        f.response = to_mitmproxy_response(reply)
        self._annotate(f, trace)

    async def _handle(self, f: http.HTTPFlow) -> tuple[Reply, Trace]:
        runtime = self.runtime
        if runtime is None:
            reason = self.config_error or "no config loaded"
            return Reply(503, [("Content-Type", "text/plain; charset=utf-8")], b"gateway has no valid config\n"), \
                Trace(outcome="500", reason=reason, rejected=True)
        raw_path, _, query = f.request.path.partition("?")
        try:
            path = decode_path(raw_path)
        except InvalidRequestPath:
            return respond.bad_request_go_server(), Trace(outcome="400", reason="invalid percent-encoding in path", rejected=True)
        # the raw fields decoded as mitmproxy's Headers.items() decodes them, without its per-key machinery
        headers = tuple((k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                        for k, v in f.request.headers.fields)
        req = IncomingRequest(
            method=f.request.method,
            path=path,
            raw_path=raw_path,
            query=query,
            headers=headers,
            body=f.request.raw_content or b"",
            client_ip=f.client_conn.peername[0] if f.client_conn.peername else "127.0.0.1",
            host=next((v for k, v in headers if k.lower() == "host"), None) or f.request.host_header or "",
        )
        return await runtime.pipeline.handle(req)

    def _annotate(self, f: http.HTTPFlow, trace: Trace) -> None:
        f.metadata["krakend"] = trace_record(trace)
        f.comment = comment_for(trace)
        if trace.rejected:
            f.marked = ERROR_MARK if trace.outcome == "500" else REJECTED_MARK

    # ------------------------------------------------------------------ commands

    @command.command("gateway.explain")
    def explain(self, flows: Sequence[flow.Flow]) -> None:
        """Print the gateway's full routing decision for each flow."""
        for f in flows:
            record = f.metadata.get("krakend") if isinstance(f, http.HTTPFlow) else None
            if record is None:
                log.info("gateway.explain: %s was not handled by the gateway", getattr(f, "id", f))
                continue
            log.info("gateway.explain %s %s\n%s", f.request.method, f.request.pretty_url,
                     json.dumps(record, indent=2, default=str))

    @command.command("gateway.reload")
    def reload(self) -> None:
        """Reload the KrakenD config now."""
        self.configure({"krakend_config"})


def to_mitmproxy_response(reply: Reply) -> http.Response:
    """The Reply as sent: its body is already the wire body. `Response.make` would re-encode it per
    its Content-Encoding (a no-op endpoint passing a backend's gzip body through sent it gzipped
    twice) and costs a second header pass; Content-Length is appended as `make` did."""
    fields = [(k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")) for k, v in reply.headers]
    fields.append((b"content-length", str(len(reply.body)).encode()))
    now = time.time()
    return http.Response(b"HTTP/1.1", reply.status, RESPONSES.get(reply.status, "").encode(),
                         http.Headers(fields), reply.body, None, now, now)


def trace_record(trace: Trace) -> dict:
    return {
        "outcome": trace.outcome,
        "reason": trace.reason,
        "endpoint": trace.endpoint,
        "params": trace.params,
        "auth": trace.auth,
        "backend_calls": [vars(call) for call in trace.backend_calls],
        "notes": trace.notes,
    }


def comment_for(trace: Trace) -> str:
    if trace.outcome in ("proxied", "500") and trace.endpoint:
        calls = "; ".join(
            f"backend[{c.backend}] {c.method} {c.url} -> {c.status if c.status is not None else c.error} ({c.millis:.0f} ms)"
            for c in trace.backend_calls
        )
        text = f"{trace.endpoint}: {calls or 'no backend call'}"
        if trace.outcome == "500":
            text += f" | 500: {trace.reason}"
        return text
    head = f"{trace.endpoint}: " if trace.endpoint else ""
    return f"{head}gateway answered {trace.outcome}: {trace.reason}"
