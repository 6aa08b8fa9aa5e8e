# A policy for the admission webhook (docs/policy.md, docs/kubernetes.md): kubectl exec and
# deploys into production need one approval from the SRE group, valid for five minutes;
# only members of the Kubernetes group "developers" may ask.
package countersign

import rego.v1

held if startswith(input.request.action, "kubectl.")

held if startswith(input.request.action, "k8s.")

result := {
	"allow": true,
	"rule": "kubernetes.sre",
	"mode": "ask",
	"stages": [{"name": "sre", "group": "sre", "min": 1}],
	"grant_seconds": 300,
} if {
	held
	"developers" in input.requester.groups
} else := {"allow": false, "rule": "kubernetes.not_a_developer", "message": "only developers may ask for production access"} if {
	held
} else := {"allow": false, "rule": "kubernetes.only", "message": "this gateway approves Kubernetes operations only"}

test_exec_by_a_developer_needs_sre if {
	r := result with input as {"request": {"action": "kubectl.exec"}, "requester": {"groups": ["developers"]}}
	r.allow
	r.stages[0].group == "sre"
}

test_others_are_refused if {
	r := result with input as {"request": {"action": "kubectl.exec"}, "requester": {"groups": ["interns"]}}
	not r.allow
}

test_a_request_token_is_refused if {
	r := result with input as {"request": {"action": "deploy"}, "requester": {"groups": []}}
	r.rule == "kubernetes.only"
}
