# Read-only SQL in staging is approved by the policy at once (`mode: auto`, recorded as
# approved by this rule and signed by the gateway); anything else goes to the DBAs. The gateway
# refuses auto-approval above its configured risk ceiling (`auto_approve_max_risk`, `low` by
# default), whatever a policy says, judged on the higher of the requester's `risk` and the
# policy's: a requester that asks for a read-only query sends `--risk low`, and a policy may only
# raise the risk (a `"risk"` member in its result), never lower it.
package countersign

import rego.v1

read_only if {
	input.request.action == "sql.exec"
	# One statement: SELECT, SHOW or EXPLAIN, any case, and at most a final semicolon.
	regex.match(`^[ \t\n]*(select|show|explain)[ \t\n][^;]*;?[ \t\n]*$`, lower(input.request.detail))
}

result := {
	"allow": true,
	"rule": "read_only_sql_in_staging",
	"message": "read-only SQL in staging is approved by policy",
	"mode": "auto",
} if {
	startswith(input.request.resource, "staging")
	input.request.risk == "low"
	read_only
} else := {
	"allow": true,
	"rule": "dba_review",
	"message": "",
	"stages": [{"name": "dba", "group": "dba", "min": 1}],
}

sql(resource, detail) := {"request": {"action": "sql.exec", "resource": resource, "risk": "low", "detail": detail}}

test_a_select_in_staging_is_auto_approved if {
	r := result with input as sql("staging-db", "SELECT count(*) FROM sessions;")
	r.mode == "auto"
}

test_a_second_statement_is_not_read_only if {
	r := result with input as sql("staging-db", "SELECT 1; DROP TABLE sessions;")
	r.stages[0].group == "dba"
}

test_production_always_goes_to_the_dbas if {
	r := result with input as sql("prod-db", "SELECT 1;")
	r.stages[0].group == "dba"
}
