"""The time builtins compute what OPA's Go evaluator computes (values recorded from OPA v1.22.2)."""

from __future__ import annotations

from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm import gotime
from evaluator_sidecar.policy.engines.wasm.gotime import GoTimeError

NEW_YEAR_2026 = 1767225600000000000


class TestParseRfc3339:
    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("2026-01-01T00:00:00Z", NEW_YEAR_2026),
            (
                "2026-01-01T00:00:00.123456789123Z",
                NEW_YEAR_2026 + 123456789,
            ),  # past 9 digits: dropped
            ("2024-02-29T23:59:59+05:30", 1709231399000000000),
            ("2026-01-01T1:00:00Z", NEW_YEAR_2026 + 3600 * 10**9),  # Go tolerates a one-digit hour
            (
                "2026-01-01T00:00:00,5Z",
                NEW_YEAR_2026 + 5 * 10**8,
            ),  # and a comma before the fraction
            ("2026-01-01T00:00:00+24:00", 1767139200000000000),
            ("2262-04-11T23:47:16.854775807Z", 2**63 - 1),
            ("1677-09-21T00:12:43.145224192Z", -(2**63)),
        ],
    )
    def test_what_go_accepts(self, text: str, ns: int) -> None:
        assert gotime.parse_rfc3339_ns(text) == ns

    @pytest.mark.parametrize(
        "text",
        [
            "2026-02-29T00:00:00Z",  # not a leap year
            "2026-13-01T00:00:00Z",
            "2026-01-01t00:00:00z",  # Go wants T and Z
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:60Z",
            "2262-04-11T23:47:16.854775808Z",  # one past int64 nanoseconds
            "0001-01-01T00:00:00Z",
            "2026-01-01T00:00:00",  # no zone
        ],
    )
    def test_what_go_rejects(self, text: str) -> None:
        with pytest.raises(GoTimeError):
            gotime.parse_rfc3339_ns(text)


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("1h", 3600 * 10**9),
            ("1.5h", 5400 * 10**9),
            ("-2m3s", -123 * 10**9),
            ("+3h", 3 * 3600 * 10**9),
            ("1h30m", 5400 * 10**9),
            ("0", 0),
            ("300ms", 300_000_000),
            ("1us", 1000),
            ("1\u00b5s", 1000),
            ("1\u03bcs", 1000),
            (".5s", 500_000_000),
            ("1.s", 10**9),
            ("9223372036854775807ns", 2**63 - 1),
            ("3.000000000001h", 10800000000003),  # Go's float64 step, exactly
            ("1d", 86400 * 10**9),
            ("1.5d", 129600 * 10**9),
            ("2w", 1209600 * 10**9),
            ("1y", 31536000 * 10**9),
            ("106751d", 9223286400000000000),
        ],
    )
    def test_go_durations_and_opa_s_days_weeks_years(self, text: str, ns: int) -> None:
        assert gotime.parse_duration_ns(text) == ns

    @pytest.mark.parametrize(
        "text", ["", "1", "1x", "9223372036854775808ns", "1d1\u03bcs", "1e3s", "h", "-"]
    )
    def test_invalid_durations(self, text: str) -> None:
        with pytest.raises(GoTimeError):
            gotime.parse_duration_ns(text)


class TestCalendar:
    @pytest.mark.parametrize(
        ("arg", "date", "clock", "weekday"),
        [
            (0, [1970, 1, 1], [0, 0, 0], "Thursday"),
            (-1, [1969, 12, 31], [23, 59, 59], "Wednesday"),
            ([NEW_YEAR_2026, "Europe/Paris"], [2026, 1, 1], [1, 0, 0], "Thursday"),
            ([NEW_YEAR_2026, "America/New_York"], [2025, 12, 31], [19, 0, 0], "Wednesday"),
            ([NEW_YEAR_2026, ""], [2026, 1, 1], [0, 0, 0], "Thursday"),
            (1.7672256e18, [2026, 1, 1], [0, 0, 0], "Thursday"),
        ],
    )
    def test_date_clock_weekday(
        self, arg: Any, date: list[int], clock: list[int], weekday: str
    ) -> None:
        assert gotime.date(arg) == date
        assert gotime.clock(arg) == clock
        assert gotime.weekday(arg) == weekday

    @pytest.mark.parametrize(
        "arg", [1.5, "x", [], [NEW_YEAR_2026, "Nowhere/City"], [NEW_YEAR_2026, 5]]
    )
    def test_bad_operands(self, arg: Any) -> None:
        with pytest.raises(GoTimeError):
            gotime.date(arg)

    @pytest.mark.parametrize(
        ("args", "ns"),
        [
            ((NEW_YEAR_2026, 0, 1, 30), 1772496000000000000),
            ((NEW_YEAR_2026, 1, -13, -400), 1729987200000000000),
            (([NEW_YEAR_2026, "Europe/Paris"], 0, 0, 1), 1767312000000000000),
            ((1706659200000000000, 0, 1, 0), 1709337600000000000),  # Jan 31 + 1 month: Mar 2
        ],
    )
    def test_add_date_normalises_like_go(self, args: tuple[Any, ...], ns: int) -> None:
        assert gotime.add_date(*args) == ns

    def test_add_date_outside_the_nanosecond_range_fails(self) -> None:
        with pytest.raises(GoTimeError, match="range"):
            gotime.add_date(0, 1000, 0, 0)

    @pytest.mark.parametrize(
        ("a", "b", "expected"),
        [
            (0, NEW_YEAR_2026, [56, 0, 0, 0, 0, 0]),
            (NEW_YEAR_2026, 0, [56, 0, 0, 0, 0, 0]),
            (
                [1706659200000000000, "Asia/Tokyo"],
                [1767225600123000000, "UTC"],
                [1, 11, 1, 0, 0, 0],
            ),
            (1709251200000000000, 1711929600000000000, [0, 1, 0, 0, 0, 0]),
        ],
    )
    def test_diff(self, a: Any, b: Any, expected: list[int]) -> None:
        assert gotime.diff(a, b) == expected
