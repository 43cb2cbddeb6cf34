# The example rules (docs/rule-language.md) written by hand in Rego: what a team writes
# when it authors policy in Rego directly rather than in the native rule form.
#
# Build: opa build -t wasm -e pkg/seed/result policies/seed/seed.rego
#
# It reproduces the reference rule set's rule-001 (high_priority_vip: TAG vip
# EXISTS -> escalate_vip) and rule-002 (allergen_check: TAG allergen and
# context.domain = hotel_ops -> check_allergens, then notify_kitchen ORDERS),
# with the subtask types' default params, and is the benchmark's small policy:
# everything it does is compiled into the module (no host calls).
package pkg.seed

default_params := {
	"escalate": {"level": "low"},
	"notify": {"channel": "email", "urgency": "normal"},
	"check_allergens": {},
}

tags := {t | some t in object.get(input, "tags", [])}

allergen_check if {
	tags.allergen
	input.context.domain == "hotel_ops"
}

high_priority_vip if tags.vip

# Rule order: priority 10 for both; allergen_check sorts before high_priority_vip.
matched := [name | some name in ["allergen_check", "high_priority_vip"]; rule_matches(name)]

rule_matches("allergen_check") if allergen_check

rule_matches("high_priority_vip") if high_priority_vip

emissions := {
	"allergen_check": [
		{"name": "check_allergens", "type": "check_allergens", "params": {}},
		{"name": "notify_kitchen", "type": "notify", "params": {"channel": "kitchen"}},
	],
	"high_priority_vip": [{"name": "escalate_vip", "type": "escalate", "params": {"level": "high"}}],
}

rule_ids := {"allergen_check": "rule-002", "high_priority_vip": "rule-001"}

condition_counts := {"allergen_check": 2, "high_priority_vip": 1}

result := {
	"subtasks": [{
		"name": e.name,
		"type": e.type,
		"params": object.union(default_params[e.type], e.params),
		"rule_id": rule_ids[name],
		"rule_name": name,
	} |
		some name in matched
		some e in emissions[name]
	],
	"dag": [{"from": "check_allergens", "to": "notify_kitchen", "type": "sequential", "rule": "rule-002"} | allergen_check],
	"rules": [{
		"rule_id": rule_ids[name],
		"rule_name": name,
		"rule_priority": 10,
		"matched_conditions": condition_counts[name],
		"emissions_count": count(emissions[name]),
	} |
		some name in matched
	],
}
