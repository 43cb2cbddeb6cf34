# A policy that never finishes when asked to: the epoch deadline must stop it.
#
# Build: opa build -t wasm -e limits/loop/result policies/limits/loop.rego
#
# With input.context.spin set, it scans 10^12 triples of numbers for one that
# cannot exist (i < j < k < i). Comparisons allocate nothing, so this runs for
# hours rather than running out of memory: only a deadline stops it. Without
# spin it answers at once, so a test can show the instance works after a stop.
package limits.loop

import rego.v1

spin := object.get(object.get(input, "context", {}), "spin", false)

span := numbers.range(1, 10000)

impossible if {
	spin == true
	some i in span
	some j in span
	i < j
	some k in span
	j < k
	k < i
}

result := {
	"subtasks": [{"name": "never", "type": "noop", "params": {}, "rule_id": "loop-001", "rule_name": "spin"} | impossible],
	"dag": [],
	"rules": [{"rule_id": "loop-002", "rule_name": "answered", "rule_priority": 0, "matched_conditions": 0, "emissions_count": 0}],
}
