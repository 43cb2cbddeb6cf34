"""The epoch ticker keeps time while evaluations run, parks when idle, and can be stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from evaluator_sidecar.policy.engines.wasm.ticker import EpochTicker


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.value += 1


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.mark.timeout(30)
class TestEpochTicker:
    def test_it_advances_the_epoch_while_evaluations_start(self, counter: Counter) -> None:
        ticker = EpochTicker(counter, tick_ms=2)
        try:
            ticker.touch()
            assert wait_until(lambda: counter.value >= 5)
            assert ticker.running
        finally:
            ticker.stop()

    def test_it_parks_when_no_evaluation_starts(self, counter: Counter) -> None:
        ticker = EpochTicker(counter, tick_ms=1, park_after=10)
        try:
            ticker.touch()
            assert wait_until(lambda: ticker.parked)
            parked_at = counter.value
            time.sleep(0.05)
            assert counter.value == parked_at  # no ticks while parked
        finally:
            ticker.stop()

    def test_an_evaluation_wakes_a_parked_ticker(self, counter: Counter) -> None:
        ticker = EpochTicker(counter, tick_ms=1, park_after=5)
        try:
            ticker.touch()
            assert wait_until(lambda: ticker.parked)
            before = counter.value
            ticker.touch()
            assert wait_until(lambda: counter.value >= before + 3)
        finally:
            ticker.stop()

    def test_it_never_parks_before_the_longest_deadline(self, counter: Counter) -> None:
        ticker = EpochTicker(counter, tick_ms=1, park_after=5)
        ticker.require_ticks(40)
        assert ticker.park_after >= 42
        try:
            ticker.touch()
            assert wait_until(lambda: ticker.parked)
            assert counter.value >= 40  # an evaluation started at touch() saw its deadline pass
        finally:
            ticker.stop()

    def test_stop_ends_the_thread_and_touch_restarts_it(self, counter: Counter) -> None:
        ticker = EpochTicker(counter, tick_ms=1)
        ticker.touch()
        assert wait_until(lambda: counter.value > 0)
        ticker.stop()
        assert not ticker.running
        stopped_at = counter.value
        time.sleep(0.03)
        assert counter.value == stopped_at
        ticker.touch()
        assert wait_until(lambda: counter.value > stopped_at)
        ticker.stop()

    def test_the_thread_is_a_named_daemon(self, counter: Counter) -> None:
        ticker = EpochTicker(counter, tick_ms=5)
        try:
            ticker.start()
            # (The process's own engine may run another ticker of the same name.)
            tickers = [t for t in threading.enumerate() if t.name == "wasm-epoch-ticker"]
            assert tickers
            assert all(t.daemon for t in tickers)
        finally:
            ticker.stop()

    def test_a_failing_increment_is_logged_and_the_next_touch_restarts(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[int] = []

        def flaky() -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("engine gone")

        ticker = EpochTicker(flaky, tick_ms=1)
        try:
            ticker.touch()
            assert wait_until(lambda: not ticker.running)
            assert "ticker failed" in caplog.text
            ticker.touch()
            assert wait_until(lambda: len(calls) > 2)
        finally:
            ticker.stop()

    def test_a_non_positive_tick_is_refused(self, counter: Counter) -> None:
        with pytest.raises(ValueError, match="tick_ms"):
            EpochTicker(counter, tick_ms=0)
