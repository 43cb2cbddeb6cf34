"""Regex, time-layout and small host builtins: Go's semantics on the cases that tell them apart.

Expected values are what ``opa eval`` (v1.22.2) gives; the differential test
tests/integration/test_opa_regex_time_differential.py checks many more inputs.
"""

from __future__ import annotations

import pytest

from evaluator_sidecar.policy.engines.wasm.builtins import (
    PROVIDED,
    BuiltinLimitError,
    BuiltinUndefined,
    CallContext,
    call_builtin,
)
from evaluator_sidecar.policy.engines.wasm.values import RegoFloat, RegoSet


def call(name: str, *args: object, max_items: int = 1000, max_bytes: int = 10**6) -> object:
    ctx = CallContext(max_items=max_items, max_string_bytes=max_bytes)
    return call_builtin(PROVIDED[name], list(args), ctx)


class TestRegexReplace:
    def test_an_empty_match_right_after_a_match_is_not_replaced_as_go_does(self) -> None:
        assert call("regex.replace", "baaac", "a*", "-") == "-b-c-"

    def test_anchors_hold_for_the_whole_text(self) -> None:
        assert call("regex.replace", "foo", "^[a-z]", "F") == "Foo"

    def test_groups_expand_by_number_and_name_and_dollar_dollar_is_a_dollar(self) -> None:
        got = call("regex.replace", "ab", "(?P<x>a)(b)", "${x}|$2|$$|$1x|${9}|$")
        assert got == "a|b|$|||$"

    def test_an_invalid_pattern_or_operand_is_undefined(self) -> None:
        for args in (("a", "[", "b"), ("a", "\\C", "b"), (1, "a", "b")):
            with pytest.raises(BuiltinUndefined):
                call("regex.replace", *args)

    def test_a_result_beyond_the_memory_cap_fails_the_evaluation(self) -> None:
        with pytest.raises(BuiltinLimitError):
            call("regex.replace", "a" * 100, "a", "$0" * 100, max_bytes=1000)


class TestFindAndSplit:
    def test_find_n_walks_matches_as_go_does(self) -> None:
        assert call("regex.find_n", "a*", "baaac", -1) == ["", "aaa", ""]
        assert call("regex.find_n", "a.", "aaabacad", 2) == ["aa", "ab"]
        assert call("regex.find_n", ".", "hé", -1) == ["h", "é"]
        assert call("regex.find_n", "a", "aaa", 0) == []

    def test_find_n_takes_only_an_integer_count(self) -> None:
        with pytest.raises(BuiltinUndefined):
            call("regex.find_n", "a", "aaa", RegoFloat("1.0"))

    def test_split_is_go_split(self) -> None:
        assert call("regex.split", "a*", "baaac") == ["b", "c"]
        assert call("regex.split", "x", "axbxc") == ["a", "b", "c"]
        assert call("regex.split", "x", "") == [""]
        assert call("regex.split", "", "") == []


class TestGlobsMatch:
    @pytest.mark.parametrize(
        ("a", "b", "want"),
        [
            ("a.+", ".*b", True),
            ("[a-c]+", "[c-e]", True),
            ("abc", "abd", False),
            ("a*", "ab", False),
            ("\\.", ".", True),
            ("[\x00-\U0010ffff]*", "x", True),
        ],
    )
    def test_intersection_as_glob_intersection_computes_it(
        self, a: str, b: str, want: bool
    ) -> None:
        assert call("regex.globs_match", a, b) is want

    def test_a_malformed_glob_is_undefined(self) -> None:
        for bad in ("[", "]", "+a", "a\\", "[c-a]"):
            with pytest.raises(BuiltinUndefined):
                call("regex.globs_match", bad, "a")


class TestTemplateMatch:
    def test_delimited_parts_are_regexes_and_the_rest_is_literal(self) -> None:
        assert call("regex.template_match", "urn:foo:{.*}", "urn:foo:bar:baz", "{", "}") is True
        assert call("regex.template_match", "p.q{.}", "pxqx", "{", "}") is False

    def test_unbalanced_delimiters_are_undefined(self) -> None:
        with pytest.raises(BuiltinUndefined):
            call("regex.template_match", "{a}}", "a", "{", "}")


class TestTimeLayouts:
    def test_parse_ns_reads_go_layouts_and_named_ones(self) -> None:
        assert call("time.parse_ns", "RFC822Z", "02 Jun 17 19:00 -0700") == 1496455200000000000
        got = call("time.parse_ns", "01/02 03:04:05PM '06 -0700", "06/02 07:00:00PM '17 -0700")
        assert got == 1496455200000000000
        assert call("time.parse_ns", "2006-01-02", "2020-02-29") == 1582934400000000000
        assert call("time.parse_ns", "2006-002", "2020-060") == 1582934400000000000

    def test_parse_ns_bounds_are_the_int64_nanoseconds(self) -> None:
        layout = "2006-01-02T15:04:05Z07:00"
        assert call("time.parse_ns", layout, "1677-09-21T00:12:43.145224192-00:00") == -(2**63)
        with pytest.raises(BuiltinUndefined):
            call("time.parse_ns", layout, "1677-09-21T00:12:43.145224191-00:00")

    def test_parse_ns_rejects_what_go_rejects(self) -> None:
        for layout, value in (("2006-01-02", "2020-02-30"), ("15:04", "24:00"), ("2006", "20x")):
            with pytest.raises(BuiltinUndefined):
                call("time.parse_ns", layout, value)

    def test_format_defaults_to_rfc3339_nano_in_utc(self) -> None:
        assert call("time.format", 1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"

    def test_format_in_a_zone_with_a_layout(self) -> None:
        got = call("time.format", [0, "Asia/Kolkata", "Mon Jan _2 3:04PM MST -07:00 .000"])
        assert got == "Thu Jan  1 5:30AM IST +05:30 .000"


class TestSmallBuiltins:
    def test_cidr_expand_lists_every_address(self) -> None:
        got = call("net.cidr_expand", "192.168.1.1/30")
        assert isinstance(got, RegoSet)
        assert sorted(got) == ["192.168.1.0", "192.168.1.1", "192.168.1.2", "192.168.1.3"]

    def test_cidr_expand_beyond_the_item_cap_fails_the_evaluation(self) -> None:
        with pytest.raises(BuiltinLimitError):
            call("net.cidr_expand", "10.0.0.0/8", max_items=1000)

    def test_glob_quote_meta_escapes_gobwas_specials(self) -> None:
        assert call("glob.quote_meta", "*.a?[b]{c}\\-!,") == "\\*.a\\?\\[b\\]\\{c\\}\\\\-!,"

    def test_urlquery_decode_object_is_go_parse_query(self) -> None:
        assert call("urlquery.decode_object", "a=1&a=2&b&c=%41+d") == {
            "a": ["1", "2"],
            "b": [""],
            "c": ["A d"],
        }
        with pytest.raises(BuiltinUndefined):
            call("urlquery.decode_object", "a=1;b=2")

    def test_casts_pass_their_type_and_refuse_others(self) -> None:
        assert call("cast_array", RegoSet([1, 2])) == [1, 2]
        assert call("cast_set", [1, 1]) == RegoSet([1])
        assert call("cast_null", None) is None
        with pytest.raises(BuiltinUndefined):
            call("cast_boolean", 1)

    def test_reachable_paths_end_at_leaves_cycles_and_unknown_nodes(self) -> None:
        graph = {"a": ["b", "c"], "b": ["a"], "c": ["x"], "d": []}
        got = call("graph.reachable_paths", graph, ["a", "d", "z"])
        assert isinstance(got, RegoSet)
        assert sorted(got) == [["a", "b"], ["a", "c"], ["d"]]


class TestUri:
    def test_parse_gives_the_parts_present(self) -> None:
        assert call("uri.parse", "https://u@example.com:8080/a%2Fb?q=1#top") == {
            "scheme": "https",
            "hostname": "example.com",
            "port": "8080",
            "path": "/a/b",
            "raw_path": "/a%2Fb",
            "raw_query": "q=1",
            "fragment": "top",
        }
        assert call("uri.parse", "mailto:x@y") == {"scheme": "mailto"}

    def test_what_go_rejects_is_invalid(self) -> None:
        for bad in ("", "http://[invalid", "http://h:1:2/", "http://[1.2.3.4]/", ":x", "a\x01"):
            assert call("uri.is_valid", bad) is False
        with pytest.raises(BuiltinUndefined):
            call("uri.parse", "http://[invalid")


class TestRenderTemplate:
    def test_fields_ranges_and_conditions_render_as_go_does(self) -> None:
        template = "{{range $i, $n := .names}}{{if $i}},{{end}}hello {{$n}}{{end}} {{.n}}"
        got = call("strings.render_template", template, {"names": ["a", "b"], "n": 2023})
        assert got == "hello a,hello b 2023"

    def test_missing_and_null_values_are_undefined_markers(self) -> None:
        got = call("strings.render_template", "{{.x}} {{.y}} {{.m}}", {"y": None, "m": {"k": None}})
        assert got == "<undefined> <undefined> map[k:<nil>]"

    def test_functions_and_malformed_templates_are_undefined(self) -> None:
        for template in ("{{len .x}}", "{{.a", "{{end}}", "{{.x | print}}"):
            with pytest.raises(BuiltinUndefined):
                call("strings.render_template", template, {"x": "a"})
