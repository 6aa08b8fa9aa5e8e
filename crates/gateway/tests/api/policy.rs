//! The policy engine on its own: what a policy must be to load (compiles, `package
//! countersign`, its own tests hold, no system clock, no default result), and how its answer
//! is read (strictly; undefined and malformed results are errors the gateway fails closed on).

use countersign_gateway::policy::{Mode, Policy, PolicyError};
use serde_json::{json, Value};

fn directory() -> Value {
    json!({"approvers": {
        "alice@example.com": "alice",
        "bob@example.com": "bob",
        "ci@example.com": "ci",
    }})
}

fn input(approvers: &[&str], risk: &str, min: u32) -> Value {
    json!({
        "request": {
            "action": "sql.exec", "resource": "prod-db", "risk": risk,
            "summary": "Drop the sessions table", "detail": "DROP TABLE sessions;",
            "reason": "cleanup", "approvers": approvers, "min_approvals": min,
            "ttl_seconds": 300, "require_match": false,
        },
        "requester": {"name": "ci-bot", "person": "ci", "team": null, "environments": []},
        "time": {"unix": 1_767_225_600, "ns": 1_767_225_600_000_000_000i64, "zone": "UTC"},
    })
}

#[test]
fn the_default_policy_loads_with_its_tests_and_makes_one_stage_of_the_named_approvers() {
    let p = Policy::default_policy(directory()).unwrap();
    assert_eq!(p.tests.len(), 4, "{:?}", p.tests);
    assert_eq!(p.hash.len(), 64);
    let o = p
        .evaluate(&input(&["bob@example.com", "alice@example.com"], "high", 1))
        .unwrap();
    assert!(o.allow);
    assert_eq!(o.mode, Mode::Ask);
    assert_eq!(o.rule, "default.named_approvers");
    assert_eq!(o.stages.len(), 1);
    assert_eq!(
        o.stages[0].approvers.as_deref().unwrap(),
        ["alice@example.com", "bob@example.com"]
    );
    // Critical risk needs two; an approver outside the directory or the requester is refused.
    let two = p
        .evaluate(&input(
            &["bob@example.com", "alice@example.com"],
            "critical",
            1,
        ))
        .unwrap();
    assert_eq!(two.stages[0].min, 2);
    for (approvers, rule) in [
        (&["alice@example.com"][..], "default.too_few_approvers"),
        (&["mallory@example.com"][..], "default.unknown_approver"),
        (&["ci@example.com"][..], "default.own_request"),
    ] {
        let risk = if rule == "default.too_few_approvers" {
            "critical"
        } else {
            "low"
        };
        let o = p.evaluate(&input(approvers, risk, 1)).unwrap();
        assert!(!o.allow, "{rule}");
        assert_eq!(o.rule, rule);
        assert!(!o.message.is_empty());
    }
}

const HEAD: &str = "package countersign\n\nimport rego.v1\n\n";

fn load(body: &str) -> Result<Policy, PolicyError> {
    Policy::load("test.rego", &format!("{HEAD}{body}"), directory())
}

#[test]
fn a_policy_that_reads_the_system_clock_is_refused_at_load() {
    let e =
        load("result := {\"allow\": time.now_ns() > 0, \"rule\": \"clock\", \"message\": \"x\"}\n")
            .unwrap_err();
    assert!(
        matches!(e, PolicyError::ReadsSystemClock { line: 5 }),
        "{e}"
    );
    // Named in a comment or a string, it is no call.
    let p = load("# never time.now_ns()\nresult := {\"allow\": false, \"rule\": \"time.now_ns\", \"message\": \"no\"}\n")
        .unwrap();
    assert_eq!(
        p.evaluate(&input(&[], "low", 1)).unwrap().rule,
        "time.now_ns"
    );
}

#[test]
fn an_undefined_helper_fails_closed_and_a_default_result_is_refused() {
    // `stages_for` is undefined for this input, so `result` is undefined: an error, never a
    // silent fallback.
    let p = load(
        "stages_for(\"deploy\") := [{\"name\": \"ops\", \"group\": \"ops\", \"min\": 1}]\n\
         result := {\"allow\": true, \"rule\": \"by_action\", \"stages\": stages_for(input.request.action)}\n",
    )
    .unwrap();
    assert!(matches!(
        p.evaluate(&input(&[], "low", 1)),
        Err(PolicyError::Undefined)
    ));
    // With a default, regorus would choose it whenever a helper is undefined: refused at load.
    let e = load(
        "default result := {\"allow\": true, \"rule\": \"oops\", \"stages\": [{\"name\": \"a\", \"group\": \"a\", \"min\": 1}]}\n",
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::DefaultResult { line: 5 }), "{e}");
}

#[test]
fn a_policy_loads_only_if_it_compiles_is_ours_and_passes_its_own_tests() {
    assert!(matches!(
        load("result := {\"allow\": \n"),
        Err(PolicyError::Compile(_))
    ));
    assert!(matches!(
        Policy::load("other.rego", "package other\n\nx := 1\n", directory()),
        Err(PolicyError::Package)
    ));
    let e = load(
        "result := {\"allow\": false, \"rule\": \"closed\", \"message\": \"closed\"}\n\
         test_it_allows if { result.allow }\n\
         test_it_is_named if { result.rule == \"closed\" }\n",
    )
    .unwrap_err();
    match e {
        PolicyError::TestsFail(failed) => assert_eq!(failed, vec!["test_it_allows"]),
        other => panic!("{other}"),
    }
}

#[test]
fn a_result_of_the_wrong_shape_is_an_error() {
    for (body, why) in [
        ("result := {\"allow\": true, \"rule\": \"r\"}", "needs at least one stage"),
        ("result := {\"allow\": false, \"rule\": \"r\"}", "needs a `message`"),
        ("result := {\"allow\": true, \"rule\": \"r\", \"stagez\": []}", "unknown field"),
        (
            "result := {\"allow\": true, \"rule\": \"r\", \"stages\": [{\"name\": \"s\", \"group\": \"g\", \"approvers\": [\"a\"], \"min\": 1}]}",
            "exactly one of",
        ),
        (
            "result := {\"allow\": true, \"rule\": \"r\", \"stages\": [{\"name\": \"s\", \"approvers\": [\"a\"], \"min\": 2}]}",
            "needs 2 of 1",
        ),
        (
            "result := {\"allow\": true, \"rule\": \"r\", \"stages\": [{\"name\": \"s\", \"group\": \"g\", \"min\": 1}, {\"name\": \"s\", \"group\": \"h\", \"min\": 1}]}",
            "used twice",
        ),
        ("result := \"yes\"", "invalid type"),
    ] {
        let p = load(&format!("{body}\n")).unwrap();
        let e = p.evaluate(&input(&[], "low", 1)).unwrap_err();
        assert!(
            matches!(e, PolicyError::Malformed(_)) && e.to_string().contains(why),
            "{body}: {e}"
        );
    }
}

#[test]
fn time_comes_from_the_input_in_the_zone_the_policy_names() {
    // Business hours in Berlin: 08:00 to 18:00, Monday to Friday.
    let p = load(
        "open if {\n\
           [h, _, _] := time.clock([input.time.ns, \"Europe/Berlin\"])\n\
           h >= 8\n\
           h < 18\n\
           not time.weekday([input.time.ns, \"Europe/Berlin\"]) in {\"Saturday\", \"Sunday\"}\n\
         }\n\
         result := {\"allow\": true, \"rule\": \"hours\", \"stages\": [{\"name\": \"ops\", \"group\": \"ops\", \"min\": 1}], \"windows\": [\"weekdays 08:00-18:00 Europe/Berlin\"]} if open\n\
         else := {\"allow\": false, \"rule\": \"hours\", \"message\": \"outside business hours\"}\n",
    )
    .unwrap();
    let at = |ns: i64| {
        let mut i = input(&[], "low", 1);
        i["time"]["ns"] = json!(ns);
        i
    };
    // Thursday 2026-01-01 10:00 Berlin (09:00 UTC); the same day 19:00 Berlin; a Saturday.
    let thursday_10 = 1_767_258_000_000_000_000i64;
    assert!(p.evaluate(&at(thursday_10)).unwrap().allow);
    assert!(
        !p.evaluate(&at(thursday_10 + 9 * 3600 * 1_000_000_000))
            .unwrap()
            .allow
    );
    assert!(
        !p.evaluate(&at(thursday_10 + 2 * 86_400 * 1_000_000_000))
            .unwrap()
            .allow
    );
    assert_eq!(
        p.evaluate(&at(thursday_10)).unwrap().windows,
        vec!["weekdays 08:00-18:00 Europe/Berlin"]
    );
}
