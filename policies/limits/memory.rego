# A policy that exhausts memory when asked to: the memory page cap must stop it.
#
# Build: opa build -t wasm -e limits/memory/result policies/limits/memory.rego
#
# With input.context.bomb = true it doubles a 64-byte string 30 times: 64 GiB,
# far beyond any cap, in a few milliseconds of allocation. Without bomb it
# answers at once, so a test can show the instance works after it was stopped.
package limits.memory

import rego.v1

bomb := object.get(object.get(input, "context", {}), "bomb", false)

twice(s) := concat("", [s, s])

d0 := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" if bomb == true

d1 := twice(d0)

d2 := twice(d1)

d3 := twice(d2)

d4 := twice(d3)

d5 := twice(d4)

d6 := twice(d5)

d7 := twice(d6)

d8 := twice(d7)

d9 := twice(d8)

d10 := twice(d9)

d11 := twice(d10)

d12 := twice(d11)

d13 := twice(d12)

d14 := twice(d13)

d15 := twice(d14)

d16 := twice(d15)

d17 := twice(d16)

d18 := twice(d17)

d19 := twice(d18)

d20 := twice(d19)

d21 := twice(d20)

d22 := twice(d21)

d23 := twice(d22)

d24 := twice(d23)

d25 := twice(d24)

d26 := twice(d25)

d27 := twice(d26)

d28 := twice(d27)

d29 := twice(d28)

d30 := twice(d29)

result := {
	"subtasks": [{"name": "filled", "type": "noop", "params": {"bytes": count(d30)}, "rule_id": "mem-001", "rule_name": "bomb"} | d30],
	"dag": [],
	"rules": [{"rule_id": "mem-002", "rule_name": "answered", "rule_priority": 0, "matched_conditions": 0, "emissions_count": 0}],
}
