# Every builtin the WASM engine provides to policies, called on operands from
# the input: the conformance harness that holds the engine's host builtins to
# OPA's own (tests/integration/test_opa_builtins.py runs it in both).
#
# Build: opa build -t wasm -e conformance/result policies/conformance/builtins.rego
#
# Input: {"context": {"cases": [{"fn": "<builtin>", "args": [...]}, ...]}}.
# Output: one subtask per case whose call is defined, in case order, with the
# result in params.value (an undefined call, e.g. bad operands, has none).
# time.now_ns is left out: its value differs between any two runs.
package conformance

import rego.v1

cases := object.get(object.get(input, "context", {}), "cases", [])

outcome contains [i, time.parse_rfc3339_ns(c.args[0])] if {
	some i, c in cases
	c.fn == "time.parse_rfc3339_ns"
}

outcome contains [i, time.parse_duration_ns(c.args[0])] if {
	some i, c in cases
	c.fn == "time.parse_duration_ns"
}

outcome contains [i, time.date(c.args[0])] if {
	some i, c in cases
	c.fn == "time.date"
}

outcome contains [i, time.clock(c.args[0])] if {
	some i, c in cases
	c.fn == "time.clock"
}

outcome contains [i, time.weekday(c.args[0])] if {
	some i, c in cases
	c.fn == "time.weekday"
}

outcome contains [i, time.add_date(c.args[0], c.args[1], c.args[2], c.args[3])] if {
	some i, c in cases
	c.fn == "time.add_date"
}

outcome contains [i, time.diff(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "time.diff"
}

outcome contains [i, sprintf(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "sprintf"
}

outcome contains [i, strings.count(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "strings.count"
}

outcome contains [i, strings.any_prefix_match(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "strings.any_prefix_match"
}

outcome contains [i, hex.encode(c.args[0])] if {
	some i, c in cases
	c.fn == "hex.encode"
}

outcome contains [i, hex.decode(c.args[0])] if {
	some i, c in cases
	c.fn == "hex.decode"
}

outcome contains [i, base64url.encode_no_pad(c.args[0])] if {
	some i, c in cases
	c.fn == "base64url.encode_no_pad"
}

outcome contains [i, urlquery.encode(c.args[0])] if {
	some i, c in cases
	c.fn == "urlquery.encode"
}

outcome contains [i, urlquery.decode(c.args[0])] if {
	some i, c in cases
	c.fn == "urlquery.decode"
}

outcome contains [i, urlquery.encode_object(c.args[0])] if {
	some i, c in cases
	c.fn == "urlquery.encode_object"
}

outcome contains [i, crypto.md5(c.args[0])] if {
	some i, c in cases
	c.fn == "crypto.md5"
}

outcome contains [i, crypto.sha1(c.args[0])] if {
	some i, c in cases
	c.fn == "crypto.sha1"
}

outcome contains [i, crypto.sha256(c.args[0])] if {
	some i, c in cases
	c.fn == "crypto.sha256"
}

outcome contains [i, crypto.hmac.md5(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "crypto.hmac.md5"
}

outcome contains [i, crypto.hmac.sha1(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "crypto.hmac.sha1"
}

outcome contains [i, crypto.hmac.sha256(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "crypto.hmac.sha256"
}

outcome contains [i, crypto.hmac.sha512(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "crypto.hmac.sha512"
}

outcome contains [i, crypto.hmac.equal(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "crypto.hmac.equal"
}

outcome contains [i, semver.is_valid(c.args[0])] if {
	some i, c in cases
	c.fn == "semver.is_valid"
}

outcome contains [i, semver.compare(c.args[0], c.args[1])] if {
	some i, c in cases
	c.fn == "semver.compare"
}

outcome contains [i, numbers.range_step(c.args[0], c.args[1], c.args[2])] if {
	some i, c in cases
	c.fn == "numbers.range_step"
}

outcome contains [i, trace(c.args[0])] if {
	some i, c in cases
	c.fn == "trace"
}

result := {
	"subtasks": [{"name": cases[i].fn, "type": "builtin", "params": {"case": i, "value": value}, "rule_id": "conformance", "rule_name": "call"} |
		some pair in sort(outcome)
		[i, value] := pair
	],
	"dag": [],
	"rules": [],
}
