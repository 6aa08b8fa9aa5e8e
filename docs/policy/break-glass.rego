# Break-glass for on-call: someone in the oncall group who asks to break glass
# (`countersign-gateway request --break-glass`) gets an immediate approval, but only with a
# reason that names an incident. The approval is audited as break-glass, every eligible
# approver (the SREs) is told after the fact, and it shows in their app until one acknowledges
# it. Everyone else, and on-call without an incident, asks the SREs as usual.
package countersign

import rego.v1

requester := data.directory.people[input.requester.person]

on_call if "oncall" in requester.groups

names_an_incident if regex.match(`(^|[^A-Za-z0-9])INC-[0-9]+`, input.request.reason)

result := {
	"allow": true,
	"rule": "break_glass_oncall",
	"message": "break-glass: approved now; the SREs are told and must acknowledge it",
	"mode": "break_glass",
	"stages": [{"name": "sre", "group": "sre", "min": 1}],
} if {
	input.request.break_glass
	on_call
	names_an_incident
} else := {
	"allow": true,
	"rule": "sre_review",
	"message": "",
	"stages": [{"name": "sre", "group": "sre", "min": 1}],
}

people := {"people": {"dana": {"groups": ["oncall", "sre"]}, "erik": {"groups": ["dev"]}}}

ask(person, reason) := {"requester": {"person": person}, "request": {"reason": reason, "break_glass": true}}

test_oncall_with_an_incident_breaks_glass if {
	r := result with input as ask("dana", "settlement stuck, INC-2291") with data.directory as people
	r.mode == "break_glass"
}

test_oncall_without_an_incident_asks if {
	r := result with input as ask("dana", "just checking") with data.directory as people
	r.rule == "sre_review"
}

test_nobody_breaks_glass_without_asking if {
	r := result with input as {"requester": {"person": "dana"}, "request": {"reason": "INC-2291", "break_glass": false}} with data.directory as people
	r.rule == "sre_review"
}

test_others_never_break_glass if {
	r := result with input as ask("erik", "INC-2291") with data.directory as people
	r.rule == "sre_review"
}
