"""Encoding, hash, semver and range builtins match OPA's Go ones (values from OPA v1.22.2)."""

from __future__ import annotations

from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm import hostlib
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.values import RegoSet


class TestStrings:
    @pytest.mark.parametrize(
        ("text", "sub", "count"),
        [("cheese", "e", 3), ("five", "", 5), ("ééé", "é", 3), ("aaaa", "aa", 2)],
    )
    def test_count(self, text: str, sub: str, count: int) -> None:
        assert hostlib.strings_count(text, sub) == count

    def test_any_prefix_match_takes_strings_arrays_and_sets(self) -> None:
        assert hostlib.any_prefix_match("foo/bar", "foo") is True
        assert hostlib.any_prefix_match(["a/b", "c"], RegoSet(["x", "c"])) is True
        assert hostlib.any_prefix_match("a", []) is False
        with pytest.raises(HostBuiltinError):
            hostlib.any_prefix_match(1, "a")


class TestEncodings:
    @pytest.mark.parametrize(
        ("text", "hexed", "b64", "query"),
        [
            ("hi", "6869", "aGk", "hi"),
            ("é", "c3a9", "w6k", "%C3%A9"),
            ("", "", "", ""),
            ("\x00x", "0078", "AHg", "%00x"),
        ],
    )
    def test_hex_base64url_and_query_encoding(
        self, text: str, hexed: str, b64: str, query: str
    ) -> None:
        assert hostlib.hex_encode(text) == hexed
        assert hostlib.base64url_encode_no_pad(text) == b64
        assert hostlib.urlquery_encode(text) == query

    def test_query_escaping_is_go_s(self) -> None:
        assert hostlib.urlquery_encode("a b&c=d/é~_.-*") == "a+b%26c%3Dd%2F%C3%A9~_.-%2A"

    @pytest.mark.parametrize(
        ("hexed", "text"),
        [("6869", "hi"), ("c3a9", "é"), ("", ""), ("6A6b", "jk"), ("ff", "\ufffd")],
    )
    def test_hex_decode(self, hexed: str, text: str) -> None:
        assert hostlib.hex_decode(hexed) == text

    @pytest.mark.parametrize("bad", ["zz", "686", " 68"])
    def test_invalid_hex(self, bad: str) -> None:
        with pytest.raises(HostBuiltinError):
            hostlib.hex_decode(bad)

    @pytest.mark.parametrize(
        ("query", "text"),
        [("a+b%20c", "a b c"), ("%e2%82%ac", "€"), ("100%25", "100%"), ("%FF", "\ufffd")],
    )
    def test_query_decode(self, query: str, text: str) -> None:
        assert hostlib.urlquery_decode(query) == text

    @pytest.mark.parametrize("bad", ["%zz", "x%", "a%2"])
    def test_invalid_escapes(self, bad: str) -> None:
        with pytest.raises(HostBuiltinError):
            hostlib.urlquery_decode(bad)

    def test_encode_object_sorts_keys_and_repeats_list_values(self) -> None:
        assert (
            hostlib.urlquery_encode_object({"b": "2 3", "a": ["x", "y"], "c": []})
            == "a=x&a=y&b=2+3"
        )
        assert hostlib.urlquery_encode_object({"é": "ü"}) == "%C3%A9=%C3%BC"
        with pytest.raises(HostBuiltinError):
            hostlib.urlquery_encode_object({"a": 1})


class TestHashes:
    def test_digests_are_hex_of_the_utf8_bytes(self) -> None:
        assert hostlib.digest("md5")("hi") == "49f68a5c8493ec2c0bf489821c21fc3b"
        assert hostlib.digest("sha1")("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        assert (
            hostlib.digest("sha256")("é")
            == "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"
        )

    def test_hmac_takes_message_then_key(self) -> None:
        assert hostlib.hmac_digest("sha256")("message", "key") == (
            "6e9ef29b75fffc5b7abae527d58fdadb2fe42e7219011976917343065f58ed4a"
        )
        assert hostlib.hmac_digest("md5")("", "") == "74e6f7298a9c2d168935f58c001bad88"

    def test_hmac_equal(self) -> None:
        assert hostlib.hmac_equal("abc", "abc") is True
        assert hostlib.hmac_equal("abc", "abd") is False


class TestSemver:
    @pytest.mark.parametrize(
        ("version", "valid"),
        [
            ("1.0.0", True),
            ("v1.2.3", True),
            ("1.2.3-alpha.1+build.5", True),
            ("1.2", False),
            ("01.2.3", False),
            ("1.2.3-01", False),
            ("1.2.3-", False),
            ("1.2.3+", False),
            ("1.2.3-a..b", False),
            ("9223372036854775808.0.0", False),
            ("1.2.3-alpha_beta", False),
            ("1.2.3\n", False),
            (5, False),
        ],
    )
    def test_is_valid(self, version: Any, valid: bool) -> None:
        assert hostlib.semver_is_valid(version) is valid

    @pytest.mark.parametrize(
        ("a", "b", "order"),
        [
            ("1.0.0", "1.0.1", -1),
            ("1.0.0-alpha", "1.0.0", -1),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", -1),
            ("1.0.0-beta.11", "1.0.0-beta.2", 1),
            ("1.0.0-rc.1", "1.0.0-rc.1.1", -1),
            ("v2.0.0", "2.0.0", 0),
            ("1.0.0+a", "1.0.0+b", 0),
        ],
    )
    def test_compare(self, a: str, b: str, order: int) -> None:
        assert hostlib.semver_compare(a, b) == order
        assert hostlib.semver_compare(b, a) == -order

    def test_compare_refuses_an_invalid_version(self) -> None:
        with pytest.raises(HostBuiltinError):
            hostlib.semver_compare("x", "1.0.0")


class TestRangeStep:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            ((1, 10, 3), [1, 4, 7, 10]),
            ((10, 1, 3), [10, 7, 4, 1]),
            ((1, 1, 1), [1]),
            ((2.0, 4, 1), [2, 3, 4]),
        ],
    )
    def test_ranges_count_up_or_down(self, args: tuple[Any, ...], expected: list[int]) -> None:
        assert hostlib.range_step(*args, max_items=100) == expected

    @pytest.mark.parametrize("args", [(1, 5, 0), (1.5, 3, 1), (5, 5, -1), ("1", 5, 1)])
    def test_bad_operands(self, args: tuple[Any, ...]) -> None:
        with pytest.raises(HostBuiltinError):
            hostlib.range_step(*args, max_items=100)

    def test_a_range_too_large_for_the_memory_cap_is_refused_before_it_is_built(self) -> None:
        with pytest.raises(OverflowError, match="memory cap"):
            hostlib.range_step(1, 10**15, 1, max_items=1000)
