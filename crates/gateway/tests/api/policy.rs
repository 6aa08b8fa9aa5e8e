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
            "needs 2 approvals of 1 approvers",
        ),
        (
            "result := {\"allow\": true, \"rule\": \"a rule\", \"stages\": [{\"name\": \"s\", \"group\": \"g\", \"min\": 1}]}",
            "printable ASCII",
        ),
        (
            "result := {\"allow\": true, \"rule\": \"r\", \"stages\": [{\"name\": \"s\", \"group\": \"g\", \"min\": 1}], \"windows\": [\"\"]}",
            "windows",
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

/// The gateway opens only with a policy that loads, watches its files while it runs, and
/// replaces the policy only with one that loads: a broken one is refused and audited, and the
/// old one stays in force. A change of the directory (file or store) loads the policy again
/// with the new directory as its data.
#[tokio::test]
async fn a_changed_policy_replaces_the_old_one_only_if_it_loads() {
    use countersign_test_support::TestGateway;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.rego");
    let people = dir.path().join("people.toml");
    let closed = format!("{HEAD}result := {{\"allow\": false, \"rule\": \"closed\", \"message\": \"closed\"}}\n\ntest_closed if {{ not result.allow }}\n");
    std::fs::write(&policy, &closed).unwrap();
    std::fs::write(
        &people,
        "[[people]]\nid = \"alice\"\napprovers = [\"alice@example.com\"]\n",
    )
    .unwrap();

    // Broken at start: the gateway does not open.
    let broken = dir.path().join("broken.rego");
    std::fs::write(
        &broken,
        format!("{HEAD}result := {{\"allow\": time.now_ns() > 0}}\n"),
    )
    .unwrap();
    let mut config = countersign_test_support::test_config(dir.path().join("gw0"));
    config.policy_file = Some(broken.clone());
    let e = countersign_gateway::Gateway::open(config).err().unwrap();
    assert!(e.to_string().contains("reads the system clock"), "{e}");

    let (p, d) = (policy.clone(), people.clone());
    let h = TestGateway::start_with(move |c| {
        c.policy_file = Some(p);
        c.directory_file = Some(d);
        c.reload_seconds = 1;
    })
    .await;
    let first = h.gw().policy().hash.clone();
    let audited = |kind: &str| h.audit().iter().filter(|(e, _)| e.kind == kind).count();
    let wait_for = |kind: &'static str, n: usize| {
        let audited = &audited;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while audited(kind) < n {
                assert!(std::time::Instant::now() < deadline, "no {kind} audited");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };

    // A policy whose own test fails: refused, the old one stays.
    std::fs::write(&policy, format!("{HEAD}result := {{\"allow\": false, \"rule\": \"x\", \"message\": \"x\"}}\n\ntest_open if {{ result.allow }}\n")).unwrap();
    wait_for("policy.refused", 1).await;
    assert_eq!(h.gw().policy().hash, first, "the old policy stays in force");
    let refused = h
        .audit()
        .into_iter()
        .rev()
        .find(|(e, _)| e.kind == "policy.refused")
        .unwrap()
        .0;
    assert!(
        refused.detail["error"]
            .as_str()
            .unwrap()
            .contains("test_open"),
        "{}",
        refused.detail
    );
    assert_eq!(refused.detail["policy_hash"], first.as_str());

    // The default policy, as a file: loaded, in force.
    std::fs::write(&policy, countersign_gateway::policy::DEFAULT_POLICY).unwrap();
    wait_for("policy.loaded", 1).await;
    let second = h.gw().policy().hash.clone();
    assert_ne!(second, first);
    let ask_bob = input(&["bob@example.com"], "low", 1);
    let o = h.gw().policy().evaluate(&ask_bob).unwrap();
    assert_eq!(
        o.rule, "default.unknown_approver",
        "bob is not in the directory yet"
    );

    // Bob joins through the directory file: applied, and the policy sees him.
    std::fs::write(
        &people,
        "[[people]]\nid = \"alice\"\napprovers = [\"alice@example.com\"]\n\n[[people]]\nid = \"bob\"\napprovers = [\"bob@example.com\"]\n",
    )
    .unwrap();
    wait_for("policy.loaded", 2).await;
    assert_eq!(audited("directory.loaded"), 2);
    let o = h.gw().policy().evaluate(&ask_bob).unwrap();
    assert!(o.allow, "{o:?}");
}

/// The example policies of docs/policy/, served: their decisions follow the gateway's clock
/// (shifted here, never slept) and the operator's data file.
mod served {
    use countersign_test_support::TestGateway;

    use crate::requests::Requests;

    const ALICE: &str = "alice@example.com";

    fn example(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/policy")
            .join(name)
    }

    /// Moves the gateway's clock to `unix` (seconds).
    fn set_clock(h: &TestGateway, unix: i64) {
        let by = unix - h.gw().now();
        h.running.gateway.clock.shift(by);
    }

    #[tokio::test]
    async fn a_change_freeze_from_the_operators_data_refuses_frozen_environments_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("freezes.json");
        std::fs::write(
            &data,
            r#"{"freezes": [{"from": "2026-12-20T00:00:00Z", "until": "2027-01-04T00:00:00Z", "environments": ["prod"], "reason": "year-end freeze (CHG-1200)"}]}"#,
        )
        .unwrap();
        let h = TestGateway::start_with(move |c| {
            c.policy_file = Some(example("change-freeze.rego"));
            c.policy_data_file = Some(data);
        })
        .await;
        h.pair(ALICE).await;
        // 2026-12-24 12:00 UTC: inside the freeze.
        set_clock(&h, 1_798_113_600);
        let err = h
            .try_create(|n| n.resource = "prod/api".into())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
        assert!(
            err.text
                .contains("change freeze: year-end freeze (CHG-1200)"),
            "{}",
            err.text
        );
        h.create_with(|n| n.resource = "staging/api".into()).await;
        // 2027-01-05 12:00 UTC: the freeze is over.
        set_clock(&h, 1_799_150_400);
        let created = h.create_with(|n| n.resource = "prod/api".into()).await;
        assert_eq!(created.request.body.policy.unwrap().rule, "outside_freeze");
    }

    #[tokio::test]
    async fn business_hours_follow_the_gateways_clock() {
        use countersign_gateway::directory_admin as admin;
        let h = TestGateway::start_with(|c| {
            c.policy_file = Some(example("business-hours.rego"));
        })
        .await;
        h.pair(ALICE).await;
        admin::set_groups(h.gw(), ALICE, &["oncall".into()]).unwrap();
        // Thursday 2026-01-01 10:00 in Berlin (09:00 UTC): open.
        set_clock(&h, 1_767_258_000);
        let created = h.create_with(|n| n.approvers.clear()).await;
        assert_eq!(
            created.request.body.windows,
            vec!["weekdays 08:00-18:00 Europe/Berlin".to_string()]
        );
        // 17:58 in Berlin: the request waits, and its approval lasts, until 18:00 only.
        set_clock(&h, 1_767_258_000 + 7 * 3600 + 58 * 60);
        let late = h
            .create_with(|n| {
                n.approvers.clear();
                n.summary = "just before closing".into();
            })
            .await
            .request
            .body;
        assert_eq!(late.expires_at - late.created_at, 120);
        assert_eq!(late.grant_seconds, Some(120));
        // 19:00 in Berlin the same day: closed.
        set_clock(&h, 1_767_258_000 + 9 * 3600);
        let err = h
            .try_create(|n| {
                n.approvers.clear();
                n.summary = "in the evening".into();
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
        assert!(err.text.contains("08:00 to 18:00"), "{}", err.text);
    }

    #[tokio::test]
    async fn a_data_file_that_claims_the_directory_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.json");
        std::fs::write(&data, r#"{"directory": {}}"#).unwrap();
        let mut config = countersign_test_support::test_config(dir.path().join("gw"));
        config.policy_data_file = Some(data);
        let e = countersign_gateway::Gateway::open(config).err().unwrap();
        assert!(e.to_string().contains("directory"), "{e}");
    }
}
