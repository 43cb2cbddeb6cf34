# The native rule language, interpreted in Rego: the WASM engine's reference policy.
#
# Build: opa build -t wasm -e pkg/result policies/reference/reference.rego
# (`make policies` does it). Entrypoint `pkg/result`, the WASM engine's default.
#
# Why an interpreter and not the rules written out by hand: the rules stay in
# one place. The snapshot's rules, subtask types and facts are passed verbatim
# as `data` (data.rules, data.subtask_types, data.facts; see
# evaluator_sidecar.policy.engines.wasm.interpreter.rules_as_data), in the very form the
# native engine reads, so there is no second copy of the reference rule set to
# drift from the first, any native snapshot can run on the WASM engine, and the
# differential test compares two implementations of the *semantics* (this file
# and the native engine) rather than two transcriptions of the rules. The cost
# is speed: every evaluation re-reads the rules (see BENCHMARKS.md).
#
# The semantics are those of docs/rule-language.md; each rule below
# names the part it implements. Load-time checks (cycles, invalid patterns,
# non-numeric SIGNAL values, ...) are the loader's job: this policy assumes a
# snapshot the native loader accepts, and task facts evaluator_sidecar.policy.facts
# accepts.
#
# Number text: JSON's number grammar. Decimal arithmetic is exact here while the
# native engine reads non-integer text as a double, so the two agree on numbers
# a double holds exactly as written (up to 15 significant digits, exponents
# within +-308), which covers every number JSON serializers write for doubles.
#
# Known differences from the native engine, all outside what the reference rules
# and well-formed task facts contain: RFC 3339 digits are ASCII here (the native
# parser's \d also takes other scripts' digits); condition values are parsed
# as OPA parses JSON (lone surrogate escapes, numbers beyond a double and
# duplicate keys are read differently by Python's json); comma-separated IN
# items are trimmed of Go's Unicode spaces, not Python's.
package pkg

# -- task facts ---------------------------------------------------------------------

or_default(x, d) := x if x != null

else := d

input_tags := {t | some t in or_default(object.get(input, "tags", null), [])}

input_signals := or_default(object.get(input, "signals", null), {})

input_facts := or_default(object.get(input, "facts", null), [])

# -- values: the text form and its meanings -------------------------------------------

number_pattern := `^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$`

max_double := 1.7976931348623157e308

# A number for numeric comparison: numbers (never booleans) and numeric text.
# (The first-character test spares most strings the regular expression, which
# OPA compiles anew in every evaluation.)
as_number(x) := x if is_number(x)

as_number(x) := n if {
	is_string(x)
	substring(x, 0, 1) in number_starts
	regex.match(number_pattern, x)
	n := to_number(x)
	abs(n) <= max_double
}

number_starts := {"-", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

# A value's text form: strings as they are, anything else as compact JSON.
value_text(v) := v if is_string(v)

value_text(v) := json.marshal(v) if not is_string(v)

# A single value: the text parsed as JSON when it is JSON, else the text itself.
# (A non-string value is already what its JSON text parses to.) json.unmarshal
# is undefined for text that is not JSON. Not json.is_valid: OPA's WebAssembly
# json.is_valid frees the values it parses, interned ones (true, false, null)
# included, which corrupts the heap (checked on OPA v1.22.2).
operand(v) := json.unmarshal(v) if is_string(v)

else := v

# The number a comparison's value stands for (its text in JSON's number grammar;
# a typed number is its own text's number, so it is used as it is).
value_number(v) := v if is_number(v)

value_number(v) := as_number(v) if is_string(v)

# IN list items: a JSON list, else comma-separated text (items trimmed, empty dropped).
# A typed list is what its JSON text parses to, so it is used as it is.
list_items(v) := v if is_array(v)

list_items(v) := text_items(value_text(v)) if not is_array(v)

text_items(text) := parsed if {
	parsed := operand(text)
	is_array(parsed)
}

text_items(text) := [operand(item) | some part in split(text, ","); item := trim_space(part); item != ""] if {
	not is_array(operand(text))
}

# VALUE/FACT equality: numerically when both sides are numbers, else JSON equality.
values_equal(a, b) if as_number(a) == as_number(b)

values_equal(a, b) if {
	not both_numbers(a, b)
	a == b
}

both_numbers(a, b) if {
	as_number(a)
	as_number(b)
}

compare(">=", a, b) if a >= b

compare("<=", a, b) if a <= b

compare(">", a, b) if a > b

compare("<", a, b) if a < b

compare("=", a, b) if a == b

compare("!=", a, b) if a != b

# One VALUE-style test of a present, non-null value against the condition's value.
value_holds("EXISTS", _, _) := true

value_holds("MATCHES", actual, v) := true if {
	is_string(actual)
	regex.match(value_text(v), actual)
}

value_holds("IN", actual, v) := true if {
	some item in list_items(v)
	item != null
	values_equal(actual, item)
}

value_holds(op, actual, v) := true if {
	op in {">=", "<=", ">", "<"}
	compare(op, as_number(actual), value_number(v))
}

value_holds("=", actual, v) := true if values_equal(actual, operand(v))

value_holds("!=", actual, v) := true if not values_equal(actual, operand(v))

# -- time: RFC 3339 with an offset, or epoch seconds, as integer nanoseconds -------------

march_based(m) := m - 3 if m > 2

else := m + 9

# Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
days_from_civil(y, m, d) := days if {
	yy := y - to_number(m <= 2)
	era := floor(yy / 400)
	yoe := yy - era * 400
	doy := floor((153 * march_based(m) + 2) / 5) + d - 1
	doe := ((yoe * 365 + floor(yoe / 4)) - floor(yoe / 100)) + doy
	days := (era * 146097 + doe) - 719468
}

# The zone at the end: "Z"/"z", or "+hh:mm"/"-hh:mm", as seconds east of UTC.
zone_length(t) := 1 if substring(t, count(t) - 1, 1) in {"Z", "z"}

else := 6

offset_seconds(t, 1) := 0

offset_seconds(t, 6) := sign * ((to_number(substring(z, 1, 2)) * 3600) + to_number(substring(z, 4, 2)) * 60) if {
	z := substring(t, count(t) - 6, 6)
	sign := {"+": 1, "-": -1}[substring(z, 0, 1)]
}

# RFC 3339 as the task-facts check accepts it: YYYY-MM-DD, T/t/space, hh:mm:ss,
# an optional fraction of 1-9 digits, then the zone. Read by position: the
# input was checked before any engine sees it, and a regular expression would
# be compiled anew in every evaluation (OPA resets its regex cache with the heap).
timestamp_ns(t) := ns if {
	is_string(t)
	zl := zone_length(t)
	fraction_length := (count(t) - 20) - zl
	frac := fraction_digits(t, fraction_length)
	days := days_from_civil(to_number(substring(t, 0, 4)), to_number(substring(t, 5, 2)), to_number(substring(t, 8, 2)))
	clock := ((to_number(substring(t, 11, 2)) * 3600) + to_number(substring(t, 14, 2)) * 60) + to_number(substring(t, 17, 2))
	seconds := ((days * 86400) + clock) - offset_seconds(t, zl)
	nanos := to_number(concat("", [frac, substring("000000000", 0, 9 - count(frac))]))
	ns := seconds * 1000000000 + nanos
}

fraction_digits(t, n) := substring(t, 20, n) if n > 0

else := ""

# Epoch seconds, exactly as written, truncated to whole nanoseconds.
timestamp_ns(t) := floor(t * 1000000000) if {
	is_number(t)
	t >= 0
}

timestamp_ns(t) := ceil(t * 1000000000) if {
	is_number(t)
	t < 0
}

now_ns := timestamp_ns(input.now) if input.now != null

else := time.now_ns()

# -- facts: the snapshot's and the request's, valid at now ------------------------------

snapshot_facts := data.facts if data.facts != null

else := []

all_facts := array.concat(snapshot_facts, input_facts)

starts_by(fact) if object.get(fact, "valid_from", null) == null

starts_by(fact) if timestamp_ns(fact.valid_from) <= now_ns

ends_after(fact) if object.get(fact, "valid_to", null) == null

ends_after(fact) if now_ns < timestamp_ns(fact.valid_to)

valid_facts := [fact | some fact in all_facts; starts_by(fact); ends_after(fact)]

# condition_key "predicate" or "subject predicate": the predicate is the last word.
fact_key(key) := {"subject": concat(" ", array.slice(words, 0, count(words) - 1)), "predicate": words[count(words) - 1]} if {
	words := split(key, " ")
}

fact_objects(key) := [object.get(fact, "object", null) |
	some fact in valid_facts
	fact.predicate == fk.predicate
	subject_matches(fk.subject, fact)
] if fk := fact_key(key)

subject_matches("", _) := true

subject_matches(subject, fact) := true if {
	subject != ""
	fact.subject == subject
}

# -- conditions ---------------------------------------------------------------------

# TAG: the request's tags as a set.
holds(c) if {
	c.condition_type == "TAG"
	c.operator == "EXISTS"
	input_tags[c.condition_key]
}

holds(c) if {
	c.condition_type == "TAG"
	c.operator == "="
	input_tags[value_text(c.value)]
}

holds(c) if {
	c.condition_type == "TAG"
	c.operator == "!="
	not input_tags[value_text(c.value)]
}

holds(c) if {
	c.condition_type == "TAG"
	c.operator == "IN"
	some item in list_items(c.value)
	input_tags[value_text(item)]
}

holds(c) if {
	c.condition_type == "TAG"
	c.operator == "MATCHES"
	some tag in input_tags
	regex.match(value_text(c.value), tag)
}

# SIGNAL: signals[condition_key], numerically; a missing signal fails every operator.
holds(c) if {
	c.condition_type == "SIGNAL"
	c.operator == "EXISTS"
	_ = input_signals[c.condition_key]
}

holds(c) if {
	c.condition_type == "SIGNAL"
	c.operator == "IN"
	signal := input_signals[c.condition_key]
	some item in list_items(c.value)
	signal == as_number(item)
}

holds(c) if {
	c.condition_type == "SIGNAL"
	c.operator in {"=", "!=", ">=", "<=", ">", "<"}
	compare(c.operator, input_signals[c.condition_key], value_number(c.value))
}

# VALUE: a dotted path through objects; missing or null fails every operator.
holds(c) if {
	c.condition_type == "VALUE"
	actual := object.get(input, split(c.condition_key, "."), null)
	actual != null
	value_holds(c.operator, actual, object.get(c, "value", null))
}

# FACT: valid facts with that key; != holds when none equals the value.
holds(c) if {
	c.condition_type == "FACT"
	c.operator == "EXISTS"
	count(fact_objects(c.condition_key)) > 0
}

holds(c) if {
	c.condition_type == "FACT"
	c.operator == "!="
	not fact_equal_exists(c)
}

holds(c) if {
	c.condition_type == "FACT"
	not c.operator in {"EXISTS", "!="}
	some obj in fact_objects(c.condition_key)
	obj != null
	value_holds(c.operator, obj, c.value)
}

fact_equal_exists(c) if {
	some obj in fact_objects(c.condition_key)
	obj != null
	value_holds("=", obj, c.value)
}

# -- rules: order, matching, output -----------------------------------------------------

conditions_of(r) := or_default(object.get(r, "conditions", null), [])

emissions_of(r) := or_default(object.get(r, "emissions", null), [])

priority_of(r) := or_default(object.get(r, "priority", null), 0)

position_of(item, i) := or_default(object.get(item, "position", null), i)

# Priority descending, then rule_name, then rule_id; disabled rules are skipped.
rule_order := sort([[0 - priority_of(r), r.rule_name, r.rule_id, i] |
	some i, r in data.rules
	not object.get(r, "disabled", false) == true
])

matches(r) if every c in conditions_of(r) {
	holds(c)
}

matched_rules := [data.rules[key[3]] | some key in rule_order; matches(data.rules[key[3]])]

subtask_types := data.subtask_types if data.subtask_types != null

else := []

subtask_defaults := {t.name: or_default(object.get(t, "default_params", null), {}) | some t in subtask_types}

name_of(e) := e.subtask_name if {
	is_string(e.subtask_name)
	e.subtask_name != ""
}

else := e.subtask_type

defaults_of(e) := e.default_params if e.default_params != null

else := object.get(subtask_defaults, e.subtask_type, {})

# A shallow merge: the emission's params win, key by key.
merge_params(defaults, params) := object.union(
	{k: v | some k, v in defaults; not k in object.keys(params)},
	params,
)

relationship_of(e) := or_default(object.get(e, "relationship_type", null), "EMITS")

# Emissions by position (default: list index), then name, then list order.
ordered_emissions(r) := [emissions[key[2]] |
	emissions := emissions_of(r)
	some key in sort([[position_of(e, i), name_of(e), i] | some i, e in emissions])
]

rule_subtasks(r) := [{
	"name": name_of(e),
	"type": e.subtask_type,
	"params": merge_params(defaults_of(e), or_default(object.get(e, "params", null), {})),
	"rule_id": r.rule_id,
	"rule_name": r.rule_name,
} |
	some e in ordered_emissions(r)
]

# Edges of a matched rule: for each j, gates from every earlier GATE emission
# (ascending), then a sequential edge from j-1 when emission j is ORDERS.
rule_edges(r) := [edge |
	emissions := ordered_emissions(r)
	count(emissions) > 0
	some j in numbers.range(0, count(emissions) - 1)
	some edge in array.concat(gate_edges(r, emissions, j), order_edges(r, emissions, j))
]

gate_edges(r, emissions, j) := [{"from": name_of(emissions[g]), "to": name_of(emissions[j]), "type": "gate", "rule": r.rule_id} |
	some g in numbers.range(0, j - 1)
	g >= 0
	g < j
	relationship_of(emissions[g]) == "GATE"
]

order_edges(r, emissions, j) := [{"from": name_of(emissions[j - 1]), "to": name_of(emissions[j]), "type": "sequential", "rule": r.rule_id}] if {
	j > 0
	relationship_of(emissions[j]) == "ORDERS"
}

else := []

rule_summary(r) := {
	"rule_id": r.rule_id,
	"rule_name": r.rule_name,
	"rule_priority": priority_of(r),
	"matched_conditions": count(conditions_of(r)),
	"emissions_count": count(emissions_of(r)),
}

result := {
	"subtasks": [s | some r in matched_rules; some s in rule_subtasks(r)],
	"dag": [edge | some r in matched_rules; some edge in rule_edges(r)],
	"rules": [rule_summary(r) | some r in matched_rules],
}
