"""HTTP with bounds a hostile server cannot stretch: a wall-clock deadline and a size cap.

httpx's timeouts bound each socket operation, not a request: a server that drips its headers one
byte every half second, or streams a body without end, keeps a request alive forever. Here every
read and write of a connection checks the *calling thread's* deadline and cancel token
(``RequestBounds``), in slices of at most ``SLICE_S``, so a request ends at its deadline, and within
``SLICE_S`` of a cancel, whatever the server does. The network backend wraps httpcore's own, so
keep-alive pooling, TLS and proxies are untouched.

``read_capped`` reads a streamed response's *decoded* body up to ``max_bytes`` (decompression is
incremental, so a gzip bomb stops at the cap, not at its inflated size).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Iterable

import httpcore
import httpx

from engine.events import CancelToken

__all__ = ["RequestBounds", "bounded_transport", "read_capped", "BodyTooLarge", "SLICE_S"]

SLICE_S = 0.25          # the longest a blocked read waits before looking at the deadline and the cancel token


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"the answer exceeded {limit / 2**20:g} MiB")
        self.limit = limit


class RequestBounds(threading.local):
    """The deadline (``time.monotonic()`` seconds) and cancel token of the request this thread sends."""

    deadline: float = math.inf
    cancel: CancelToken | None = None
    received: int = 0           # bytes read since ``start`` (did the server answer at all?)

    def start(self, deadline: float, cancel: CancelToken | None) -> None:
        self.deadline, self.cancel, self.received = deadline, cancel, 0

    def remaining(self) -> float:
        if self.cancel is not None and self.cancel.cancelled:
            raise httpcore.ReadError("cancelled")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the request's whole-answer deadline passed")
        return left


class _BoundedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, bounds: RequestBounds):
        self._inner = inner
        self._bounds = bounds

    def _sliced(self, op, timeout: float | None, timeout_exc):
        until = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            left = min(self._bounds.remaining(), until - time.monotonic())
            if left <= 0:
                raise timeout_exc("timed out")
            try:
                return op(min(left, SLICE_S))
            except timeout_exc:
                continue        # a slice passed with nothing: look at the deadline and cancel, then wait again

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._sliced(lambda t: self._inner.read(max_bytes, t), timeout, httpcore.ReadTimeout)
        self._bounds.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._sliced(lambda t: self._inner.write(buffer, t), timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None):
        return _BoundedStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._bounds)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    def __init__(self, bounds: RequestBounds):
        self._inner = httpcore.SyncBackend()
        self._bounds = bounds

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        left = min(self._bounds.remaining(), math.inf if timeout is None else timeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _BoundedStream(stream, self._bounds)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        stream = self._inner.connect_unix_socket(path, timeout, socket_options)
        return _BoundedStream(stream, self._bounds)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bounded_transport(bounds: RequestBounds, limits: httpx.Limits) -> httpx.HTTPTransport:
    """An httpx transport whose connections obey ``bounds`` (direct connections; no proxy)."""
    transport = httpx.HTTPTransport(limits=limits)
    old = transport._pool          # httpx keeps its httpcore pool here (stable since 0.18)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=old._ssl_context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=_BoundedBackend(bounds))
    old.close()
    return transport


def read_capped(chunks: Iterable[bytes], max_bytes: int) -> bytes:
    """Join decoded body chunks; ``BodyTooLarge`` as soon as they pass ``max_bytes``."""
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(max_bytes)
        parts.append(chunk)
    return b"".join(parts)
