//! Policy evaluation per request: a 100-rule policy (`--rules`) over a 1,000-person directory, through the
//! gateway's `Policy::evaluate` (the input built as JSON, converted, evaluated, the result read
//! back and checked), beside regorus alone on the same inputs already converted (its limit).
//! Both alternate in blocks so that machine drift affects them alike.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use countersign_gateway::directory::{policy_data, Entry};
use countersign_gateway::policy::{input, Policy, Requester};
use countersign_protocol::api::NewRequest;
use countersign_protocol::Risk;

use crate::common::{ms, Figure, Stats};

const PEOPLE: usize = 1000;
const GROUPS: usize = 20;

/// A policy of `rules` rules, each matching one service's production deploys and asking one
/// approval of the service's group AND one of managers; the result takes the matching rule
/// with the lowest priority, after checking the named approvers against the directory.
pub(crate) fn policy_source(rules: usize) -> String {
    let mut s = String::from("package countersign\n\nimport rego.v1\n\n");
    for i in 0..rules {
        s.push_str(&format!(
            "candidates contains {{\"priority\": {i}, \"rule\": \"svc{i}_prod\", \"stages\": [{{\"name\": \"owners\", \"group\": \"g{g}\", \"min\": 1}}, {{\"name\": \"managers\", \"group\": \"managers\", \"min\": 1}}]}} if {{\n\
             \tinput.request.action == \"svc{i}.deploy\"\n\
             \tstartswith(input.request.resource, \"prod\")\n\
             \tinput.request.risk in {{\"medium\", \"high\", \"critical\"}}\n}}\n\n",
            g = i % GROUPS
        ));
    }
    s.push_str(
        "unknown := [a | some a in input.request.approvers; not data.directory.approvers[a]]\n\n\
         on_team if \"dev\" in data.directory.people[input.requester.person].groups\n\n\
         best := min([c.priority | some c in candidates])\n\n\
         result := {\"allow\": false, \"rule\": \"unknown_approver\", \"message\": \"not in the directory\"} if {\n\
         \tcount(unknown) > 0\n\
         } else := {\"allow\": true, \"rule\": c.rule, \"stages\": c.stages} if {\n\
         \ton_team\n\
         \tsome c in candidates\n\
         \tc.priority == best\n\
         } else := {\"allow\": false, \"rule\": \"no_rule\", \"message\": \"no rule matches this request\"}\n",
    );
    s
}

pub(crate) fn directory() -> Vec<Entry> {
    (0..PEOPLE)
        .map(|i| Entry {
            id: format!("p{i:04}"),
            approvers: vec![format!("p{i:04}@example.com")],
            groups: {
                let mut g = vec![format!("g{}", i % GROUPS), "dev".into()];
                if i % 10 == 0 {
                    g.push("managers".into());
                }
                g.sort();
                g
            },
            tokens: vec![format!("p{i:04}-ci")],
            ..Entry::default()
        })
        .collect()
}

fn request(i: usize, rules: usize) -> NewRequest {
    NewRequest {
        action: format!("svc{}.deploy", i % rules),
        resource: "prod/api".into(),
        risk: Some(Risk::High),
        summary: format!("Roll out build {i}"),
        detail: format!("kubectl -n prod set image deploy/api api=registry/api:{i}"),
        reason: "release".into(),
        ttl_seconds: 600,
        approvers: vec![format!("p{:04}@example.com", (i * 7) % PEOPLE)],
        min_approvals: 1,
        require_match: false,
        break_glass: false,
    }
}

pub fn run(evaluations: usize, rules: usize) -> Result<Vec<Figure>> {
    let source = policy_source(rules);
    let entries = directory();
    let data = policy_data(&entries);
    let policy = Policy::load("bench.rego", &source, data.clone())?;
    let inputs: Vec<serde_json::Value> = (0..evaluations)
        .map(|i| {
            let who = Requester {
                name: format!("p{:04}-ci", (i * 13) % PEOPLE),
                person: Some(format!("p{:04}", (i * 13) % PEOPLE)),
                team: None,
                environments: Vec::new(),
                groups: Vec::new(),
            };
            input(&request(i, rules), &who, 1_767_225_600 + i as i64)
        })
        .collect();
    // Every input matches exactly one rule.
    for i in [0, 1, rules - 1] {
        let o = policy.evaluate(&inputs[i])?;
        if !o.allow || o.rule != format!("svc{}_prod", i % rules) {
            return Err(anyhow!("the bench policy answered {o:?} for input {i}"));
        }
    }

    // regorus alone: the same policy and data, the inputs converted beforehand.
    let mut engine = regorus::Engine::new();
    engine.add_policy("bench.rego".into(), source)?;
    engine.add_data(regorus::Value::from(
        serde_json::json!({ "directory": data }),
    ))?;
    let converted: Vec<regorus::Value> = inputs
        .iter()
        .map(|v| regorus::Value::from(v.clone()))
        .collect();
    // Warm both (the first evaluation of an engine is slower).
    for i in 0..50.min(evaluations) {
        policy.evaluate(&inputs[i])?;
        engine.set_input(converted[i].clone());
        engine.eval_rule("data.countersign.result".into())?;
    }

    let mut ours = Vec::with_capacity(evaluations);
    let mut alone = Vec::with_capacity(evaluations);
    for block in (0..evaluations).collect::<Vec<_>>().chunks(100) {
        for &i in block {
            let t = Instant::now();
            let o = policy.evaluate(&inputs[i])?;
            ours.push(t.elapsed());
            std::hint::black_box(o);
        }
        for &i in block {
            let t = Instant::now();
            engine.set_input(converted[i].clone());
            let v = engine.eval_rule("data.countersign.result".into())?;
            alone.push(t.elapsed());
            std::hint::black_box(v);
        }
    }
    let ours = Stats::of(&ours)?;
    let alone = Stats::of(&alone)?;
    println!(
        "policy-eval: {rules} rules, {PEOPLE} people in the directory, {evaluations} evaluations"
    );
    println!("  Policy::evaluate  {}", ours.line());
    println!("  regorus alone     {}", alone.line());
    let ratio = ours.p99.as_secs_f64() / alone.p99.as_secs_f64().max(1e-9);
    Ok(vec![Figure {
        name: "policy eval",
        value: format!(
            "p99 {} (regorus alone {}, {:.2}x)",
            ms(ours.p99),
            ms(alone.p99),
            ratio
        ),
        target: "p99 <= 0.200 ms".into(),
        pass: Some(ours.p99 <= Duration::from_micros(200)),
    }])
}
