"""A small HTTP/1.1 server: ``asyncio.Protocol`` plus the ``httptools`` parser (llhttp).

Chosen by measurement over aiohttp (see BENCHMARKS.md, "Sidecar HTTP API"):
every handler of the sidecar is synchronous and fast, so a request is parsed,
answered and written from ``data_received`` without creating a task or a
coroutine, which is where most of a general-purpose framework's time goes.

What it does: keep-alive and pipelining (responses in request order),
``Content-Length`` and chunked bodies, a body-size limit (413 as soon as the
headers announce too much, or as the body grows past it), a header-size limit
(431), ``Expect: 100-continue``, back-pressure (stops reading while the
client does not read), and 400 for anything the parser rejects. It does not
do TLS or HTTP/2: it listens on the pod's loopback by default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

__all__ = ["HTTPServer", "Request", "Response"]

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    422: b"Unprocessable Content",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: bytes
    headers: dict[bytes, bytes]
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Handler = Callable[[Request], Response]
ErrorBody = Callable[[int, str], bytes]


def _head(status: int, content_type: bytes, length: int, keep_alive: bool) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
            b"Content-Type: ",
            content_type,
            b"\r\nContent-Length: %d\r\n" % length,
            b"" if keep_alive else b"Connection: close\r\n",
        )
    )


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_closing",
        "_header_bytes",
        "_headers",
        "_parser",
        "_rejected",
        "_server",
        "_transport",
        "_url",
    )

    def __init__(self, server: HTTPServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._rejected = False
        self._closing = False

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self._rejected:
                self._fail(400, f"malformed HTTP request: {exc}")

    # ---- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_size = 0
        self._rejected = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._reject(431, f"the request line and headers exceed {MAX_HEADER_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._reject(431, f"the request line and headers exceed {MAX_HEADER_BYTES} bytes")
            return
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if self._rejected:
            return
        limit = self._server.max_body_bytes
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._reject(
                413, f"the request body of {int(length)} bytes exceeds the limit of {limit} bytes"
            )
            return
        if self._headers.get(b"expect", b"").lower() == b"100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        self._body_size += len(body)
        limit = self._server.max_body_bytes
        if self._body_size > limit:
            self._reject(413, f"the request body exceeds the limit of {limit} bytes")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._rejected or self._closing or self._transport is None:
            return
        url = httptools.parse_url(self._url)
        request = Request(
            method=self._parser.get_method().decode("ascii", "replace"),
            path=url.path.decode("utf-8", "replace"),
            query=url.query or b"",
            headers=self._headers,
            body=b"".join(self._body) if len(self._body) != 1 else self._body[0],
        )
        try:
            response = self._server.handler(request)
        except Exception:  # a handler bug must cost one request, not the connection's loop
            logger.exception("handler failed on %s %s", request.method, request.path)
            response = Response(500, self._server.error_body(500, "internal error; see the log"))
        self._write(response, self._parser.should_keep_alive())

    # ---- writing

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        head = _head(response.status, response.content_type, len(response.body), keep_alive)
        extra = b"".join(b"%s: %s\r\n" % pair for pair in response.headers)
        transport.write(head + extra + b"\r\n" + response.body)
        if not keep_alive:
            self._closing = True
            transport.close()

    def _reject(self, status: int, message: str) -> None:
        """Answer now and close: the rest of this request will not be read."""
        self._rejected = True
        self._fail(status, message)

    def _fail(self, status: int, message: str) -> None:
        self._rejected = True
        self._write(Response(status, self._server.error_body(status, message)), keep_alive=False)


class HTTPServer:
    """Serves ``handler`` on ``host:port``; ``start()`` binds, ``close()`` stops."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int,
        error_body: ErrorBody,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.error_body = error_body
        self.connections: set[_Connection] = set()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host=host, port=port, reuse_address=True, backlog=1024
        )
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn._transport is not None:
                    conn._transport.close()
            await self._server.wait_closed()
            self._server = None
