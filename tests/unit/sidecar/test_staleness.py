"""The staleness policy: when a sidecar counts as stale, and what it answers then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from sidecar_snapshots import FACTS, snapshot_for

from evaluator_sidecar.sidecar.http import HTTPServer, SidecarAPI, serve_api
from evaluator_sidecar.sidecar.manager import PKGManager
from evaluator_sidecar.sidecar.staleness import STALE_ERROR_CODE, Staleness, StalenessMode


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestStaleness:
    def test_a_device_is_stale_past_the_limit_since_its_last_confirmation(self) -> None:
        clock = Clock()
        s = Staleness(max_seconds=10, clock=clock)
        s.confirm()
        clock.now += 10
        assert not s.stale()
        clock.now += 0.5
        assert s.stale()
        assert s.seconds() == pytest.approx(10.5)
        s.confirm()
        assert not s.stale()

    def test_never_confirmed_counts_from_the_start(self) -> None:
        clock = Clock()
        s = Staleness(max_seconds=3, clock=clock)
        clock.now += 4
        assert s.stale()
        assert s.status()["level_confirmed_at"] is None

    def test_the_limit_zero_turns_the_policy_off(self) -> None:
        clock = Clock()
        s = Staleness(max_seconds=0, mode="fail-closed", clock=clock)
        clock.now += 1e6
        assert not s.stale()
        assert not s.refuses()

    def test_without_redis_there_is_no_level_and_no_staleness(self) -> None:
        s = Staleness(max_seconds=1, applies=False)
        assert s.seconds() is None
        assert not s.stale()

    def test_only_fail_closed_refuses(self) -> None:
        clock = Clock()
        serve = Staleness(max_seconds=1, mode="serve", clock=clock)
        closed = Staleness(max_seconds=1, mode="fail-closed", clock=clock)
        clock.now += 2
        assert serve.stale()
        assert not serve.refuses()
        assert closed.refuses()


async def _post(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        payload = await reader.readexactly(int(headers["content-length"]))
        return int(head[0].split()[1]), headers, payload
    finally:
        writer.close()


async def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        payload = await reader.readexactly(int(headers["content-length"]))
        return int(head[0].split()[1]), orjson.loads(payload)
    finally:
        writer.close()


@pytest.fixture
async def served() -> AsyncIterator[tuple[PKGManager, int, Clock]]:
    manager = PKGManager(None, None, env="prod", device_id="stale-1")
    await manager.activate_snapshot(snapshot_for("rules@1.4.0"))
    server: HTTPServer = await serve_api(SidecarAPI(manager), "127.0.0.1", 0, 4096)
    try:
        yield manager, server.port, Clock()
    finally:
        await server.close()


def _policy(manager: PKGManager, clock: Clock, mode: StalenessMode) -> None:
    manager.staleness = Staleness(max_seconds=5, mode=mode, applies=True, clock=clock)
    manager.staleness.confirm()


class TestTheAnswers:
    async def test_every_answer_says_how_stale_it_is(
        self, served: tuple[PKGManager, int, Clock]
    ) -> None:
        manager, port, clock = served
        _policy(manager, clock, "serve")
        clock.now += 2
        status, headers, _ = await _post(port, "/v1/evaluate", orjson.dumps(FACTS))
        assert status == 200
        assert headers["pkg-stale"] == "false"
        assert float(headers["pkg-staleness-seconds"]) == pytest.approx(2.0)

    async def test_serve_keeps_answering_past_the_limit_and_says_so(
        self, served: tuple[PKGManager, int, Clock]
    ) -> None:
        manager, port, clock = served
        _policy(manager, clock, "serve")
        clock.now += 6
        status, headers, _ = await _post(port, "/v1/evaluate", orjson.dumps(FACTS))
        assert status == 200
        assert headers["pkg-stale"] == "true"
        ready, body = await _get(port, "/readyz")
        assert ready == 200
        assert body["stale"] is True

    async def test_fail_closed_refuses_with_the_documented_error(
        self, served: tuple[PKGManager, int, Clock]
    ) -> None:
        manager, port, clock = served
        _policy(manager, clock, "fail-closed")
        clock.now += 6
        status, headers, payload = await _post(port, "/v1/evaluate", orjson.dumps(FACTS))
        error = orjson.loads(payload)["error"]
        assert status == 503
        assert error["code"] == STALE_ERROR_CODE
        assert error["staleness_seconds"] == pytest.approx(6.0)
        assert error["max_staleness_seconds"] == 5
        assert "fail-closed" in error["message"]
        assert headers["pkg-stale"] == "true"
        ready, body = await _get(port, "/readyz")
        assert ready == 503
        assert any("stale" in reason for reason in body["reasons"])  # type: ignore[attr-defined]

    async def test_the_metrics_show_staleness(self, served: tuple[PKGManager, int, Clock]) -> None:
        manager, _, clock = served
        _policy(manager, clock, "serve")
        clock.now += 7
        text = manager.metrics.registry.get_sample_value("pkg_stale")
        assert text == 1.0
        assert manager.metrics.registry.get_sample_value("pkg_staleness_seconds") == 7.0
