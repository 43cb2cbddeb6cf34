"""Canary cohorts: deterministic, monotonic in the percentage, uniform over devices."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator_sidecar.signals.cohorts import bucket, cohort_size, in_canary

ids = st.text(min_size=1, max_size=40)
percents = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


class TestBucket:
    def test_is_stable_for_the_same_device_and_rollout(self) -> None:
        assert bucket("door:D-1510", "dep-1") == bucket("door:D-1510", "dep-1")

    def test_matches_the_protocols_definition(self) -> None:
        import hashlib

        digest = hashlib.sha256(b"dep-1\x00door:D-1510").digest()
        expected = (int.from_bytes(digest[:8], "big") >> 11) / 2**53 * 100
        assert bucket("door:D-1510", "dep-1") == expected

    @settings(max_examples=300, derandomize=True)
    @given(device=ids, deployment=ids)
    def test_lies_in_zero_to_a_hundred(self, device: str, deployment: str) -> None:
        assert 0.0 <= bucket(device, deployment) < 100.0

    def test_depends_on_the_rollout(self) -> None:
        devices = [f"dev-{i}" for i in range(2000)]
        a = {d for d in devices if in_canary(d, "dep-a", 50)}
        b = {d for d in devices if in_canary(d, "dep-b", 50)}
        # Independent halves overlap in about a quarter of the devices, not all of them.
        assert 0.2 < len(a & b) / len(devices) < 0.3


class TestMonotonicity:
    @settings(max_examples=500, derandomize=True)
    @given(device=ids, deployment=ids, p=percents, q=percents)
    def test_a_device_in_the_cohort_stays_in_it_as_the_percentage_grows(
        self, device: str, deployment: str, p: float, q: float
    ) -> None:
        low, high = min(p, q), max(p, q)
        if in_canary(device, deployment, low):
            assert in_canary(device, deployment, high)

    def test_cohorts_at_10_50_100_are_nested(self) -> None:
        devices = [f"edge:door:{i}" for i in range(5000)]
        c10 = {d for d in devices if in_canary(d, "dep", 10)}
        c50 = {d for d in devices if in_canary(d, "dep", 50)}
        c100 = {d for d in devices if in_canary(d, "dep", 100)}
        assert c10 <= c50 <= c100 == set(devices)

    def test_zero_selects_nobody_and_a_hundred_everybody(self) -> None:
        devices = [f"d{i}" for i in range(1000)]
        assert cohort_size(devices, "dep", 0) == 0
        assert cohort_size(devices, "dep", 100) == 1000


def chi_square_critical(df: int, z: float) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile for the normal quantile z."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


class TestUniformity:
    # Normal quantile for a one-sided significance level of 0.001.
    Z_0_999 = 3.090232

    def test_chi_square_over_100_buckets_of_100000_devices(self) -> None:
        n, k = 100_000, 100
        counts = [0] * k
        for i in range(n):
            counts[int(bucket(f"device-{i:06d}", "deployment-7f3a"))] += 1
        expected = n / k
        statistic = sum((c - expected) ** 2 / expected for c in counts)
        critical = chi_square_critical(k - 1, self.Z_0_999)
        # df = 99: the critical value at significance 0.001 is about 148.2.
        assert 148 < critical < 149
        assert statistic < critical, f"chi-square {statistic:.1f} >= {critical:.1f}"

    def test_cohort_shares_at_10_50_100_percent(self) -> None:
        devices = [f"router-{i}" for i in range(100_000)]
        for percent in (10, 50, 100):
            share = cohort_size(devices, "rollout-42", percent) / len(devices)
            # Binomial standard deviation at n = 100,000 is at most 0.16 %; allow ~4 sigma.
            assert abs(share - percent / 100) < 0.007, (percent, share)
