# Production changes need a peer and a manager: one approval from the requester's team AND
# one from the managers group, by two different people (the default: `distinct_people`). A
# manager who is also on the team cannot satisfy both stages alone.
package countersign

import rego.v1

production if startswith(input.request.resource, "prod")

team := input.requester.team

result := {
	"allow": true,
	"rule": "peer_and_manager",
	"message": "",
	"stages": [
		{"name": "peer", "group": team, "min": 1},
		{"name": "managers", "group": "managers", "min": 1},
	],
} if {
	production
	team != null
} else := {
	"allow": false,
	"rule": "peer_and_manager",
	"message": "a production change needs a requester token with a team (token create --team)",
} if {
	production
} else := {
	"allow": true,
	"rule": "anyone_on_the_team",
	"message": "",
	"stages": [{"name": "peer", "group": team, "min": 1}],
} if {
	team != null
} else := {"allow": false, "rule": "no_team", "message": "this requester token has no team"}

test_production_needs_a_peer_and_a_manager if {
	r := result with input as {"request": {"resource": "prod/api"}, "requester": {"team": "payments"}}
	r.allow
	[s.name | some s in r.stages] == ["peer", "managers"]
	r.stages[0].group == "payments"
}

test_staging_needs_a_peer if {
	r := result with input as {"request": {"resource": "staging/api"}, "requester": {"team": "payments"}}
	count(r.stages) == 1
}

test_no_team_no_production if {
	r := result with input as {"request": {"resource": "prod/api"}, "requester": {"team": null}}
	not r.allow
}
