"""A TCP fault proxy: what the chaos scenarios put between a component and its server.

A :class:`FaultProxy` listens on a free loopback port and relays every connection to
one upstream (Redis, PostgreSQL, the API server: TLS passes through untouched). A
component is placed behind it by pointing its URL at the proxy (:meth:`FaultProxy.url`).
The test then switches the proxy's mode while the component runs:

| mode | what the component sees |
| --- | --- |
| ``passthrough()`` | the server, as if directly connected |
| ``down()`` | every open connection closed, new ones refused (the server is gone) |
| ``latency(ms)`` | ``ms`` more per round trip (half each way), order kept |
| ``resets(period)`` | every connection reset (RST) after a random life of up to ``period`` s |
| ``blackhole()`` | a partition: bytes are held, nothing answers; on healing the held bytes flow |
| ``drop_pubsub(p)`` | (RESP only) each pub/sub message to a subscriber dropped with probability p |

The relay runs on an asyncio loop in a daemon thread; every control method is
thread-safe and returns once the mode is in force. Counters (connections, resets,
dropped messages) let a scenario report how many faults it really injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pkg_testbed.procs import free_port

__all__ = ["FaultProxy", "ProxyCounters", "resp_frame_length"]

_CHUNK = 65536


@dataclass
class ProxyCounters:
    connections: int = 0
    resets: int = 0
    messages_seen: int = 0
    messages_dropped: int = 0
    downs: int = 0
    modes: list[str] = field(default_factory=list)


def resp_frame_length(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Length of the complete RESP2/RESP3 value at ``buf[start:]``, None when incomplete."""
    end = buf.find(b"\r\n", start)
    if start >= len(buf) or end < 0:
        return None
    kind = buf[start : start + 1]
    count = 0 if kind in b"+-:_#,(" else int(bytes(buf[start + 1 : end]))
    after = end + 2
    if kind in b"+-:_#,(" or count < 0:
        return after - start
    if kind in b"$!=":
        return after + count + 2 - start if len(buf) >= after + count + 2 else None
    if kind not in b"*~>%|":
        raise ValueError(f"not RESP at offset {start}: {bytes(buf[start : start + 16])!r}")
    # Maps and attributes hold pairs; an attribute precedes the value it describes.
    items = count * 2 if kind in b"%|" else count
    items += 1 if kind == b"|" else 0
    pos: int | None = after
    for _ in range(items):
        pos = _after_frame(buf, pos)
    return None if pos is None else pos - start


def _after_frame(buf: bytes | bytearray, pos: int | None) -> int | None:
    if pos is None:
        return None
    size = resp_frame_length(buf, pos)
    return None if size is None else pos + size


def _is_pubsub_message(frame: bytes) -> bool:
    """True for a ``message``/``pmessage`` push (RESP2 array or RESP3 push)."""
    if frame[:1] not in (b"*", b">"):
        return False
    head = frame[:64]
    return b"\r\n$7\r\nmessage\r\n" in head or b"\r\n$8\r\npmessage\r\n" in head


class _Link:
    """One relayed connection: client and upstream sockets, and their pumps."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.deadline: float | None = None

    def reset(self) -> None:
        """Close both ends with RST (SO_LINGER 0), as a reset by a middlebox."""
        for writer in (self.client_writer, self.upstream_writer):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()

    async def run(self) -> None:
        proxy = self.proxy
        # A partition: the client thinks it is connected, nothing reaches the server yet.
        await proxy.wait_healed()
        try:
            up_reader, self.upstream_writer = await asyncio.open_connection(
                proxy.upstream_host, proxy.upstream_port
            )
        except OSError:
            self.reset()
            return
        self.tasks = [
            asyncio.create_task(self._pump(self.client_reader, self.upstream_writer, up=True)),
            asyncio.create_task(self._pump(up_reader, self.client_writer, up=False)),
        ]
        await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        self.reset()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        proxy = self.proxy
        parse = proxy.resp and not up
        pending = bytearray()
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await proxy.wait_healed()
                if parse:
                    pending += data
                    data = proxy.filter_resp(pending)
                if proxy.latency_s > 0:  # half of the added round trip each way
                    await asyncio.sleep(proxy.latency_s / 2)
                if data:
                    writer.write(data)
                    await writer.drain()


class FaultProxy:
    """A loopback TCP relay to ``upstream_host:upstream_port`` whose faults a test switches."""

    def __init__(
        self, upstream_host: str, upstream_port: int, *, resp: bool = False, seed: int = 19
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        #: Parse the server's replies as RESP (Redis), which drop_pubsub needs.
        self.resp = resp
        self.port = free_port()
        self.counters = ProxyCounters()
        self.latency_s = 0.0
        self.drop_fraction = 0.0
        self._reset_period = 0.0
        self._random = random.Random(seed)
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._healed: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @classmethod
    def for_url(cls, url: str, *, resp: bool | None = None) -> FaultProxy:
        """A proxy to the host and port of ``url`` (redis://, postgresql://, https://)."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r} names no host and port")
        is_redis = parts.scheme.startswith("redis")
        return cls(parts.hostname, parts.port, resp=is_redis if resp is None else resp)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._init())
        self._call(self._listen())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._drop_all(listen=False))
        self._call(self._cancel_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- modes -------------------------------------------------------------------------

    def passthrough(self) -> None:
        """Heal every fault: listen again, no latency, no resets, no drops, bytes flow."""
        self._mode("passthrough")
        self.latency_s = self.drop_fraction = self._reset_period = 0.0
        self._call(self._heal())

    def down(self) -> None:
        """The server is gone: open connections closed (RST), new ones refused."""
        self._mode("down")
        self.counters.downs += 1
        self._call(self._drop_all(listen=False))

    def latency(self, ms: float) -> None:
        self._mode(f"latency {ms:g} ms")
        self.latency_s = ms / 1000

    def resets(self, period: float) -> None:
        """Reset each connection after a random life in (0, period] s, for as long as set."""
        self._mode(f"resets every <= {period:g} s")
        self._reset_period = period
        self._call(self._arm_resets())

    def reset_all(self) -> int:
        """Reset every open connection now; returns how many."""
        result: int = self._call(self._reset_now())
        return result

    def blackhole(self) -> None:
        """Partition: nothing flows either way (bytes held) until :meth:`passthrough`."""
        self._mode("blackhole")
        self._call(self._partition())

    def drop_pubsub(self, fraction: float) -> None:
        if not self.resp:
            raise ValueError("drop_pubsub needs a RESP (Redis) proxy")
        self._mode(f"drop {fraction:.0%} of pub/sub messages")
        self.drop_fraction = fraction

    # -- used by the links ---------------------------------------------------------------

    async def wait_healed(self) -> None:
        assert self._healed is not None
        await self._healed.wait()

    def filter_resp(self, pending: bytearray) -> bytes:
        """Take the complete frames off ``pending``; pub/sub messages may be dropped."""
        out = bytearray()
        pos = 0
        while True:
            size = resp_frame_length(pending, pos)
            if size is None:
                break
            frame = bytes(pending[pos : pos + size])
            pos += size
            if _is_pubsub_message(frame):
                self.counters.messages_seen += 1
                if self.drop_fraction and self._random.random() < self.drop_fraction:
                    self.counters.messages_dropped += 1
                    continue
            out += frame
        del pending[:pos]
        return bytes(out)

    # -- inside the loop ---------------------------------------------------------------

    def _mode(self, name: str) -> None:
        self.counters.modes.append(f"{time.strftime('%H:%M:%S')} {name}")

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _init(self) -> None:
        self._healed = asyncio.Event()
        self._healed.set()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        link = _Link(self, (reader, writer))
        self._links.add(link)
        if self._reset_period:
            self._schedule_reset(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)

    def _schedule_reset(self, link: _Link) -> None:
        delay = self._random.uniform(0.05, self._reset_period)

        def fire() -> None:
            if link in self._links and self._reset_period:
                self.counters.resets += 1
                link.reset()

        self._loop.call_later(delay, fire)

    async def _arm_resets(self) -> None:
        for link in list(self._links):
            self._schedule_reset(link)

    async def _reset_now(self) -> int:
        links = list(self._links)
        for link in links:
            link.reset()
        self.counters.resets += len(links)
        return len(links)

    async def _drop_all(self, *, listen: bool) -> None:
        if not listen and self._server is not None:
            self._server.close()
            self._server = None
        await self._reset_now()

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _partition(self) -> None:
        assert self._healed is not None
        self._healed.clear()

    async def _heal(self) -> None:
        assert self._healed is not None
        self._healed.set()
        await self._listen()
