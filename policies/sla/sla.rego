# A hand-written hotel service-level policy: the kind of Rego a team writes
# directly, using builtins OPA's WebAssembly leaves to the host.
#
# Build: opa build -t wasm -e pkg/sla/result policies/sla/sla.rego
#
# Host-provided builtins used: time.now_ns (when input.now is absent),
# time.parse_rfc3339_ns, time.parse_duration_ns, time.weekday, sprintf,
# crypto.sha256. Compiled into the module: regex.match, lower, startswith, ...
#
# Input (task facts): tags, signals, context.{ticket_opened, guest, room,
# sla}, now (RFC 3339; the wall clock when absent).
package pkg.sla

now_ns := time.parse_rfc3339_ns(input.now) if is_string(input.now)

else := time.now_ns()

opened_ns := time.parse_rfc3339_ns(input.context.ticket_opened)

age_ns := now_ns - opened_ns

sla_ns := time.parse_duration_ns(object.get(input.context, "sla", "2h"))

overdue if age_ns > sla_ns

vip if "vip" in input.tags

weekend if time.weekday(now_ns) in {"Saturday", "Sunday"}

# A stable, non-identifying reference to the guest for the audit trail.
guest_ref := substring(crypto.sha256(lower(input.context.guest)), 0, 12)

age_minutes := floor(age_ns / 60000000000)

escalations contains {
	"name": "escalate_overdue",
	"type": "escalate",
	"params": {
		"level": level,
		"message": sprintf("ticket for room %v open %d min (SLA %s)", [input.context.room, age_minutes, object.get(input.context, "sla", "2h")]),
		"guest_ref": guest_ref,
	},
	"rule_id": "sla-001",
	"rule_name": "overdue_ticket",
} if {
	overdue
	level := priority_level
}

priority_level := "high" if vip

else := "normal"

escalations contains {
	"name": "weekend_staffing",
	"type": "notify",
	"params": {"channel": "duty_manager", "message": sprintf("weekend ticket, %d min old", [age_minutes])},
	"rule_id": "sla-002",
	"rule_name": "weekend_cover",
} if {
	overdue
	weekend
}

subtasks := sort_by_rule([s | some s in escalations])

sort_by_rule(items) := [item | some key in sort([[i.rule_id, i.name] | some i in items]); some item in items; [item.rule_id, item.name] == key]

result := {
	"subtasks": subtasks,
	"dag": [{"from": "escalate_overdue", "to": "weekend_staffing", "type": "sequential", "rule": "sla-002"} |
		count(subtasks) == 2
	],
	"rules": [{"rule_id": s.rule_id, "rule_name": s.rule_name, "rule_priority": 0, "matched_conditions": 1, "emissions_count": 1} |
		some s in subtasks
	],
}
