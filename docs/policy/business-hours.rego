# Changes to production only on weekdays from 08:00 to 18:00, Berlin time, as the gateway's
# clock says (`input.time`; a policy never reads the system clock). Outside those hours the
# request is refused with the reason. Inside them, the request may wait only until 18:00
# (`max_wait_seconds`), and its approval lets the action start only until then
# (`grant_seconds`), so nothing asked at 17:55 is approved or started after closing time.
package countersign

import rego.v1

zone := "Europe/Berlin"

open_now if {
	[hour, _, _] := time.clock([input.time.ns, zone])
	hour >= 8
	hour < 18
	not time.weekday([input.time.ns, zone]) in {"Saturday", "Sunday"}
}

# Seconds from now until 18:00 in Berlin.
until_closing := seconds if {
	[hour, minute, second] := time.clock([input.time.ns, zone])
	seconds := ((18 - hour) * 3600 - minute * 60) - second
}

result := {
	"allow": true,
	"rule": "business_hours",
	"message": "",
	"stages": [{"name": "oncall", "group": "oncall", "min": 1}],
	"windows": ["weekdays 08:00-18:00 Europe/Berlin"],
	"max_wait_seconds": until_closing,
	"grant_seconds": until_closing,
} if {
	open_now
} else := {
	"allow": false,
	"rule": "business_hours",
	"message": "production changes are made on weekdays from 08:00 to 18:00 Europe/Berlin",
}

# Thursday 2026-01-01, 10:00 and 19:00 in Berlin; Saturday 2026-01-03, 10:00.
at(rfc3339) := {"time": {"ns": time.parse_rfc3339_ns(rfc3339)}}

test_open_on_a_weekday_morning if {
	r := result with input as at("2026-01-01T10:00:00+01:00")
	r.allow
	r.windows == ["weekdays 08:00-18:00 Europe/Berlin"]
}

test_nothing_outlasts_closing_time if {
	r := result with input as at("2026-01-01T17:30:00+01:00")
	r.max_wait_seconds == 1800
	r.grant_seconds == 1800
}

test_closed_in_the_evening if {
	r := result with input as at("2026-01-01T19:00:00+01:00")
	not r.allow
}

test_closed_on_saturday if {
	r := result with input as at("2026-01-03T10:00:00+01:00")
	not r.allow
}
