# A change freeze, from data the operator maintains (`data.freezes`: each with `from` and
# `until` as RFC 3339 times, the `environments` it covers and a `reason`). During a freeze a
# request for a frozen environment is refused with the freeze's reason.
package countersign

import rego.v1

environment := split(input.request.resource, "/")[0]

active contains f if {
	some f in data.freezes
	environment in f.environments
	time.parse_rfc3339_ns(f.from) <= input.time.ns
	input.time.ns < time.parse_rfc3339_ns(f.until)
}

result := {
	"allow": false,
	"rule": "change_freeze",
	"message": sprintf("change freeze: %s", [concat("; ", sort([f.reason | some f in active]))]),
} if {
	count(active) > 0
} else := {
	"allow": true,
	"rule": "outside_freeze",
	"message": "",
	"stages": [{"name": "approvers", "approvers": sort(input.request.approvers), "min": 1}],
}

year_end := [{
	"from": "2026-12-20T00:00:00Z",
	"until": "2027-01-04T00:00:00Z",
	"environments": ["prod"],
	"reason": "year-end freeze (CHG-1200)",
}]

ask(resource, at) := {
	"request": {"resource": resource, "approvers": ["alice@example.com"]},
	"time": {"ns": time.parse_rfc3339_ns(at)},
}

test_frozen_during_the_freeze if {
	r := result with input as ask("prod/api", "2026-12-24T12:00:00Z") with data.freezes as year_end
	not r.allow
	r.message == "change freeze: year-end freeze (CHG-1200)"
}

test_other_environments_are_not_frozen if {
	r := result with input as ask("staging/api", "2026-12-24T12:00:00Z") with data.freezes as year_end
	r.allow
}

test_after_the_freeze if {
	r := result with input as ask("prod/api", "2027-01-05T09:00:00Z") with data.freezes as year_end
	r.allow
}
