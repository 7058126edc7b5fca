"""Stage 4b: run an endpoint's backends and combine their data (spec §6.2, §6.8, §7).

Per backend: build the request (upstream.py), send it (client.py), check the status, decode, and
manipulate (manipulate.py). Per endpoint: one backend, a parallel merge or a sequential chain,
then the endpoint flatmap and static data. Everything runs under the endpoint deadline.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from krakend_mitm import codec, manipulate
from krakend_mitm.client import BackendResponse, HttpClient
from krakend_mitm.config import Backend, Endpoint
from krakend_mitm.errors import BackendError
from krakend_mitm.gojson import GoNumber
from krakend_mitm.messages import BackendCallRecord, IncomingRequest
from krakend_mitm.upstream import ForwardRules, NoHostsError, build_request

DEADLINE_EXCEEDED = "context deadline exceeded"
MERGE_DEADLINE_SHARE = 0.85  # lura proxy/merging.go waits 85 % of the endpoint timeout
CONCURRENT_DEADLINE_SHARE = 0.75  # lura proxy/concurrent.go
_RESP_PLACEHOLDER = re.compile(r"\{(resp(\d+)_([^}]+))\}")


@dataclass
class BackendOutcome:
    data: dict | None = None
    error: str | None = None
    complete: bool = True
    response: BackendResponse | None = None  # kept for no-op and return_error_code
    status_error: bool = False  # the backend answered, with a status other than 200/201


@dataclass
class ProxyResult:
    data: dict | None
    complete: bool
    errors: list[str] = field(default_factory=list)
    error_response: BackendResponse | None = None  # single backend with return_error_code
    raw_response: BackendResponse | None = None  # no-op endpoints


@dataclass(frozen=True)
class RequestContext:
    """What every backend call of one client request shares."""

    request: IncomingRequest
    params: dict[str, str]  # endpoint params, already percent-decoded
    jwt_values: dict[str, str]  # "JWT.sub" -> rendered claim, for {JWT.x}
    client_headers: dict[str, list[str]]  # after propagate_claims
    forwarded_for: str


class EndpointProxy:
    """One endpoint's compiled proxy pipe."""

    def __init__(self, endpoint: Endpoint, rules: tuple[ForwardRules, ...], client: HttpClient,
                 rng: random.Random, clock: Callable[[], float] = time.monotonic):
        self.endpoint = endpoint
        self.rules = rules
        self.client = client
        self.rng = rng
        self.clock = clock
        # lura proxy/shadow.go: shadow backends get the request, their answers are never used;
        # an endpoint with nothing but shadow backends serves them. No backend is compared (a
        # frozen dataclass compares field by field), and the usual endpoint, without shadows,
        # keeps its own tuple.
        backends = endpoint.backends
        self.backends: tuple[Backend, ...] = backends
        self.shadows: tuple[Backend, ...] = ()
        if any(b.shadow for b in backends) and not all(b.shadow for b in backends):
            self.backends = tuple(b for b in backends if not b.shadow)
            self.shadows = tuple(b for b in backends if b.shadow)
        self._background: set[asyncio.Task] | None = None  # shadow calls in flight, made on first use

    async def run(self, ctx: RequestContext, records: list[BackendCallRecord]) -> ProxyResult:
        endpoint = self.endpoint
        for shadow in self.shadows:
            self._fire_and_forget(self._call(ctx, shadow, {}, records))
        try:
            async with asyncio.timeout(endpoint.timeout):
                if endpoint.output_encoding == "no-op":
                    return await self._run_no_op(ctx, records)
                if len(self.backends) == 1:
                    result = await self._run_single(ctx, records)
                elif endpoint.sequential:
                    result = await self._run_sequential(ctx, records)
                else:
                    result = await self._run_parallel(ctx, records)
        except TimeoutError:
            result = ProxyResult(data=None, complete=False, errors=[DEADLINE_EXCEEDED])
        return self._apply_static(result)

    # ------------------------------------------------------------------ shapes of endpoint

    def _fire_and_forget(self, coroutine) -> None:
        task = asyncio.ensure_future(asyncio.wait_for(coroutine, self.endpoint.timeout))
        if self._background is None:
            self._background = set()
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "exception not retrieved"

    async def _run_no_op(self, ctx: RequestContext, records: list[BackendCallRecord]) -> ProxyResult:
        backend = self.backends[0]
        record = self._record(backend, records)
        try:
            response = await self._send(ctx, backend, {}, record)
        except (BackendError, NoHostsError) as e:
            record.error = str(e)
            return ProxyResult(data=None, complete=False, errors=[str(e)])
        return ProxyResult(data=None, complete=False, raw_response=response)

    async def _run_single(self, ctx: RequestContext, records: list[BackendCallRecord]) -> ProxyResult:
        backend = self.backends[0]
        outcome = await self._call(ctx, backend, {}, records)
        if outcome.error is not None:
            error_response = outcome.response if backend.return_error_code and outcome.status_error else None
            return ProxyResult(data=None, complete=False, errors=[outcome.error], error_response=error_response)
        return ProxyResult(data=outcome.data, complete=outcome.complete)

    async def _run_parallel(self, ctx: RequestContext, records: list[BackendCallRecord]) -> ProxyResult:
        tasks = [asyncio.ensure_future(self._call(ctx, b, {}, records)) for b in self.backends]
        merged: dict | None = None
        errors: list[str] = []
        complete = True
        try:
            deadline = self.endpoint.timeout * MERGE_DEADLINE_SHARE
            for future in asyncio.as_completed(tasks, timeout=deadline):
                outcome = await future
                if outcome.error is not None:
                    errors.append(outcome.error)
                    complete = False
                    continue
                merged = manipulate.merge_shallow(merged if merged is not None else {}, outcome.data or {})
                complete = complete and outcome.complete
        except TimeoutError:
            errors.append(DEADLINE_EXCEEDED)
            complete = False
        finally:
            for task in tasks:
                task.cancel()
        if merged is None:
            return ProxyResult(data=None, complete=False, errors=errors)
        return ProxyResult(data=self._endpoint_flatmap(merged), complete=complete and not errors, errors=errors)

    async def _run_sequential(self, ctx: RequestContext, records: list[BackendCallRecord]) -> ProxyResult:
        merged: dict = {}
        previous: dict[int, dict] = {}
        complete = True
        for i, backend in enumerate(self.backends):
            outcome = await self._call(ctx, backend, previous, records)
            if outcome.error is not None:
                if i == 0:
                    return ProxyResult(data=None, complete=False, errors=[outcome.error])
                return ProxyResult(data=self._endpoint_flatmap(merged), complete=False, errors=[outcome.error])
            previous[i] = outcome.data or {}
            merged = manipulate.merge_shallow(merged, outcome.data or {})
            complete = complete and outcome.complete
        return ProxyResult(data=self._endpoint_flatmap(merged), complete=complete)

    def _endpoint_flatmap(self, data: dict) -> dict:
        if self.endpoint.flatmap and len(self.backends) > 1:
            return manipulate.apply_flatmap(data, list(self.endpoint.flatmap))
        return data

    def _apply_static(self, result: ProxyResult) -> ProxyResult:
        static = self.endpoint.static
        if static is None or result.raw_response is not None:
            return result
        errored = bool(result.errors)
        data, applied = manipulate.apply_static(static.data, static.strategy, result.data,
                                                errored=errored, complete=result.complete)
        if not applied:
            return result
        # static data over nothing is a made-up response: incomplete (lura proxy/static.go)
        complete = result.complete if result.data is not None else False
        return ProxyResult(data=data, complete=complete, errors=result.errors, error_response=result.error_response)

    # ------------------------------------------------------------------ one backend

    def _record(self, backend: Backend, records: list[BackendCallRecord]) -> BackendCallRecord:
        record = BackendCallRecord(backend=backend.index, method=backend.method, url="")
        records.append(record)
        return record

    async def _send(self, ctx: RequestContext, backend: Backend, previous: dict[int, dict],
                    record: BackendCallRecord) -> BackendResponse:
        values = dict(ctx.params)
        values.update(ctx.jwt_values)
        values.update(_sequential_values(backend.url_pattern, previous))
        request = build_request(ctx.request, self.endpoint, backend, self.rules[backend.index], values,
                                ctx.client_headers, ctx.forwarded_for, self.rng)
        record.url = request.url
        started = self.clock()
        try:
            response = await self.client.send(request, follow_redirects=True)
        finally:
            record.millis = (self.clock() - started) * 1000
        record.status = response.status
        return response

    async def _call(self, ctx: RequestContext, backend: Backend, previous: dict[int, dict],
                    records: list[BackendCallRecord]) -> BackendOutcome:
        calls = self.endpoint.concurrent_calls
        if calls <= 1:
            return await self._call_once(ctx, backend, previous, records)
        return await self._call_concurrently(ctx, backend, previous, records, calls)

    async def _call_concurrently(self, ctx: RequestContext, backend: Backend, previous: dict[int, dict],
                                 records: list[BackendCallRecord], calls: int) -> BackendOutcome:
        """lura proxy/concurrent.go: N identical calls, the first success wins, within 75 % of the timeout."""
        tasks = [asyncio.ensure_future(self._call_once(ctx, backend, previous, records)) for _ in range(calls)]
        last = BackendOutcome(error=DEADLINE_EXCEEDED, complete=False)
        try:
            for future in asyncio.as_completed(tasks, timeout=self.endpoint.timeout * CONCURRENT_DEADLINE_SHARE):
                outcome = await future
                if outcome.error is None:
                    return outcome
                last = outcome
        except TimeoutError:
            pass
        finally:
            for task in tasks:
                task.cancel()
        return last

    async def _call_once(self, ctx: RequestContext, backend: Backend, previous: dict[int, dict],
                         records: list[BackendCallRecord]) -> BackendOutcome:
        record = self._record(backend, records)
        try:
            response = await self._send(ctx, backend, previous, record)
        except (BackendError, NoHostsError) as e:
            record.error = str(e)
            return BackendOutcome(error=str(e), complete=False)
        if backend.encoding == "no-op":
            # a no-op backend under a parsed endpoint contributes nothing and never fails
            return BackendOutcome(data={}, complete=True, response=response)
        if response.status not in (200, 201):
            text = f"invalid status code {response.status} [{backend.method} {backend.url_pattern}]: {record.url}"
            record.error = text
            if backend.return_error_details:
                return BackendOutcome(data=_error_details(backend.return_error_details, response),
                                      complete=False, response=response)
            return BackendOutcome(error=text, complete=False, response=response, status_error=True)
        try:
            raw = codec.decode(backend.encoding, _content(response), backend.is_collection)
        except (codec.DecodeError, ValueError) as e:
            record.error = str(e)
            return BackendOutcome(error=str(e), complete=False, response=response)
        data = manipulate.apply_backend(
            raw, target=backend.target, allow=list(backend.allow), deny=list(backend.deny),
            mapping=dict(backend.mapping), group=backend.group,
            flatmap=list(backend.flatmap) if backend.flatmap else None,
        )
        record.raw_data, record.data = raw, data
        return BackendOutcome(data=data, complete=True, response=response)


def _content(response: BackendResponse) -> bytes:
    """The JSON decoder gunzips by itself when the client did not (a forwarded Accept-Encoding)."""
    encoding = next((v for k, v in response.headers if k.lower() == "content-encoding"), "")
    if encoding.lower() == "gzip":
        try:
            return gzip.decompress(response.body)
        except (OSError, EOFError, zlib.error):
            return response.body
    return response.body


def _error_details(alias: str, response: BackendResponse) -> dict:
    """backend/http return_error_details: the failure becomes data, in Go struct field order."""
    from krakend_mitm.gojson import GoStruct

    details: dict[str, Any] = {"http_status_code": response.status}
    body = response.body.decode("utf-8", "replace")
    if body:
        details["http_body"] = body
    content_type = next((v for k, v in response.headers if k.lower() == "content-type"), "")
    if content_type:
        details["http_body_encoding"] = content_type
    return {f"error_{alias}": GoStruct(details)}


def _sequential_values(url_pattern: str, previous: dict[int, dict]) -> dict[str, str]:
    """`{resp<N>_a.b}` from backend N's manipulated data (lura proxy/sequential.go)."""
    values = {}
    for placeholder, index, path in _RESP_PLACEHOLDER.findall(url_pattern):
        data = previous.get(int(index))
        if data is None:
            continue
        value = _dig(data, path.split("."))
        if value is not None:
            values[placeholder] = _render_sequential(value)
    return values


def _dig(data: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _render_sequential(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, GoNumber):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(_render_sequential(v) for v in value)
    return str(value)
