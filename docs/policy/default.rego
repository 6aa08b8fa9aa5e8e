# The policy a Countersign gateway applies when `policy_file` is unset.
#
# The requester names its approvers and how many must approve; every one of them must be a
# person in the gateway's directory and none the requester's own person; a critical request
# needs at least two approvals. The result is one stage, "approvers", listing them.
#
# docs/policy.md describes the input, the data and the result; the gateway enforces its own
# hard rules (no self-approval, votes only from the eligible, fail closed) whatever a policy
# says.
package countersign

import rego.v1

named := input.request.approvers

# The named approvers the directory does not know.
unknown := sort([a | some a in named; not data.directory.approvers[a]])

# The named approvers who are the requester's own person.
own := sort([a | some a in named; data.directory.approvers[a] == input.requester.person])

floor := 2 if input.request.risk == "critical"

else := 1

quorum := max([input.request.min_approvals, floor])

refuse(rule, message) := {"allow": false, "rule": rule, "message": message}

result := refuse("default.unknown_approver", sprintf("not in the gateway's directory: %s", [concat(", ", unknown)])) if {
	count(unknown) > 0
} else := refuse("default.own_request", sprintf("nobody approves their own request: %s", [concat(", ", own)])) if {
	count(own) > 0
} else := refuse("default.too_few_approvers", sprintf("this request needs %d approvals but names %d approvers", [quorum, count(named)])) if {
	quorum > count(named)
} else := {
	"allow": true,
	"rule": "default.named_approvers",
	"message": "",
	"mode": "ask",
	"stages": [{"name": "approvers", "approvers": sort(named), "min": quorum}],
	"require_match": input.request.require_match,
}

# ---- the policy's own tests: each must hold for the gateway to load it ----

directory := {"approvers": {"alice@example.com": "alice", "bob@example.com": "bob", "carol@example.com": "carol"}}

ask(approvers, risk, min) := {
	"request": {"approvers": approvers, "risk": risk, "min_approvals": min, "require_match": false},
	"requester": {"name": "ci-bot", "person": "carol"},
}

test_named_approvers_make_one_stage if {
	r := result with input as ask(["bob@example.com", "alice@example.com"], "high", 1) with data.directory as directory
	r.allow
	r.stages == [{"name": "approvers", "approvers": ["alice@example.com", "bob@example.com"], "min": 1}]
}

test_critical_needs_two if {
	r := result with input as ask(["alice@example.com"], "critical", 1) with data.directory as directory
	not r.allow
	r.rule == "default.too_few_approvers"
	s := result with input as ask(["alice@example.com", "bob@example.com"], "critical", 1) with data.directory as directory
	s.stages[0].min == 2
}

test_unknown_approvers_are_refused if {
	r := result with input as ask(["mallory@example.com"], "low", 1) with data.directory as directory
	not r.allow
	r.rule == "default.unknown_approver"
}

test_the_requester_never_approves if {
	r := result with input as ask(["carol@example.com", "alice@example.com"], "low", 1) with data.directory as directory
	not r.allow
	r.rule == "default.own_request"
}
