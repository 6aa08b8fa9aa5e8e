//! Request creation with the policy (docs/performance.md section 8): `requests::create_request`
//! on an in-process gateway whose directory holds 1,000 people, timed under three policies that
//! route every request to the same two paired approvers, alternating in blocks so that drift
//! and the growing database affect them alike:
//!
//! - **pass-through**: one rule that returns the named approvers as one stage, the cheapest a
//!   policy can be: creation as it was before policies, plus the routing every policy pays;
//! - **default**: the embedded default policy (docs/policy/default.rego);
//! - **100 rules**: the generated policy of `policy-eval`, with group stages the requester
//!   narrows to the two approvers.
//!
//! The target is creation with a policy at most 1.2 times creation without one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use countersign_gateway::directory::{policy_data, Entry};
use countersign_gateway::directory_admin as admin;
use countersign_gateway::gateway::Gateway;
use countersign_gateway::policy::Policy;
use countersign_protocol::api::NewRequest;
use countersign_protocol::Risk;
use countersign_test_support::{TestGateway, REQUESTER};

use crate::common::{ms, Figure, Stats};

const OWNER: &str = "p0001@example.com";
const MANAGER: &str = "p0010@example.com";
const PASS_THROUGH: &str = "package countersign\n\nimport rego.v1\n\n\
    result := {\"allow\": true, \"rule\": \"named\", \"stages\": [{\"name\": \"approvers\", \"approvers\": input.request.approvers, \"min\": 1}]}\n";

fn request(i: usize) -> NewRequest {
    NewRequest {
        action: "svc1.deploy".into(),
        resource: "prod/api".into(),
        risk: Some(Risk::High),
        summary: format!("Roll out build {i}"),
        detail: format!("kubectl -n prod set image deploy/api api=registry/api:{i}"),
        reason: "release".into(),
        ttl_seconds: 600,
        approvers: vec![OWNER.into(), MANAGER.into()],
        min_approvals: 0,
        require_match: false,
        break_glass: false,
    }
}

/// `source` loaded with the gateway's directory as data, marked as loaded at the gateway's
/// directory version (so that the gateway does not load its own policy again).
fn load(gw: &Gateway, name: &str, source: &str, entries: &[Entry]) -> Result<Arc<Policy>> {
    let mut p = Policy::load(name, source, policy_data(entries))?;
    let current = gw.policy();
    p.directory_version = current.directory_version;
    p.directory_hash = current.directory_hash.clone();
    Ok(Arc::new(p))
}

fn set_policy(gw: &Gateway, p: &Arc<Policy>) -> Result<()> {
    let mut slot = gw
        .policy
        .write()
        .map_err(|_| anyhow!("the policy lock is poisoned"))?;
    *slot = p.clone();
    Ok(())
}

pub async fn run(requests: usize) -> Result<Vec<Figure>> {
    let h = TestGateway::start_with(|c| {
        c.rate_limit_per_minute = u32::MAX;
        c.reload_seconds = 0;
    })
    .await;
    let gw = h.gw().clone();
    let entries = crate::policy::directory();
    {
        let gw = gw.clone();
        let entries = entries.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for e in &entries {
                let links = Entry {
                    groups: e.groups.clone(),
                    ..Entry::default()
                };
                admin::add_approver(&gw, &e.approvers[0], Some(&e.id), &links)?;
            }
            // The requester's token is a developer's (the 100-rule policy asks for one).
            admin::link(
                &gw,
                "p0005@example.com",
                &Entry {
                    tokens: vec![REQUESTER.into()],
                    ..Entry::default()
                },
            )?;
            Ok(())
        })
        .await??;
    }
    let _owner = h.pair(OWNER).await;
    let _manager = h.pair(MANAGER).await;
    // The directory as the store holds it now, and the policy loaded with it.
    countersign_gateway::reload::ensure_current(&gw)?;
    let listed = gw.store.read(countersign_gateway::directory::listed)?;
    let policies = [
        (
            "pass-through",
            load(&gw, "pass.rego", PASS_THROUGH, &listed)?,
        ),
        (
            "default",
            load(
                &gw,
                "default.rego",
                countersign_gateway::policy::DEFAULT_POLICY,
                &listed,
            )?,
        ),
        (
            "100 rules",
            load(
                &gw,
                "bench.rego",
                &crate::policy::policy_source(100),
                &listed,
            )?,
        ),
    ];

    // What evaluating each policy alone costs on the same input, for the breakdown.
    let requester = {
        let gw = gw.clone();
        tokio::task::spawn_blocking(move || {
            gw.store
                .read(|c| countersign_gateway::tokens::requester(c, REQUESTER))
                .map_err(|e| anyhow!("{e}"))
        })
        .await??
    };
    let mut evaluation = Vec::new();
    for (name, p) in &policies {
        let input = countersign_gateway::policy::input(&request(0), &requester, 1_767_225_600);
        for _ in 0..50 {
            p.evaluate(&input).map_err(|e| anyhow!("{name}: {e}"))?;
        }
        let mut t = Vec::with_capacity(500);
        for _ in 0..500 {
            let t0 = Instant::now();
            std::hint::black_box(p.evaluate(&input).map_err(|e| anyhow!("{name}: {e}"))?);
            t.push(t0.elapsed());
        }
        evaluation.push(Stats::of(&t)?);
    }

    // What resolving the 100-rule policy's two groups (owners g1, managers) costs alone.
    let groups = {
        let gw = gw.clone();
        tokio::task::spawn_blocking(move || -> Result<Stats> {
            let mut t = Vec::with_capacity(500);
            for k in 0..550 {
                let t0 = Instant::now();
                let n = gw.store.read(
                    |c| -> Result<usize, countersign_gateway::error::StoreError> {
                        Ok(c.group_approvers("g1")?.len() + c.group_approvers("managers")?.len())
                    },
                )?;
                if k >= 50 {
                    t.push(t0.elapsed());
                }
                std::hint::black_box(n);
            }
            Stats::of(&t)
        })
        .await??
    };

    let samples = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<Duration>>> {
        let mut samples = vec![Vec::with_capacity(requests); policies.len()];
        let mut i = 0usize;
        // Warm each, and check that each routes to the same two approvers.
        for (name, p) in &policies {
            set_policy(&gw, p)?;
            for _ in 0..20 {
                let c = countersign_gateway::requests::create_request(&gw, REQUESTER, request(i))
                    .map_err(|e| anyhow!("{name}: {e}"))?;
                i += 1;
                let stages = c.request.body.stages;
                let named: Vec<String> = stages
                    .iter()
                    .flat_map(|s| s.approvers.clone().unwrap_or_default())
                    .collect();
                if named.len() != 2 {
                    return Err(anyhow!("{name} routed to {stages:?}"));
                }
            }
        }
        for _ in 0..requests.div_ceil(50) {
            for (k, (name, p)) in policies.iter().enumerate() {
                set_policy(&gw, p)?;
                for _ in 0..50 {
                    let t = Instant::now();
                    let c =
                        countersign_gateway::requests::create_request(&gw, REQUESTER, request(i))
                            .map_err(|e| anyhow!("{name}: {e}"))?;
                    samples[k].push(t.elapsed());
                    std::hint::black_box(c);
                    i += 1;
                }
            }
        }
        Ok(samples)
    })
    .await??;
    let stats: Vec<Stats> = samples
        .iter()
        .map(|s| Stats::of(s))
        .collect::<Result<_>>()?;
    println!(
        "request-create: {requests} requests per policy, {} people in the directory, 2 paired approvers",
        entries.len()
    );
    for ((name, s), e) in ["pass-through", "default", "100 rules"]
        .iter()
        .zip(&stats)
        .zip(&evaluation)
    {
        println!("  {name:<13} {}", s.line());
        println!("  {:<13} evaluation alone: {}", "", e.line());
    }
    println!(
        "  the 100-rule policy's two groups resolved alone: {}",
        groups.line()
    );
    let ratio = |k: usize| stats[k].p50.as_secs_f64() / stats[0].p50.as_secs_f64().max(1e-9);
    let (default, hundred) = (ratio(1), ratio(2));
    Ok(vec![Figure {
        name: "request create",
        value: format!(
            "p50 {} pass-through, {} default ({default:.2}x), {} 100 rules ({hundred:.2}x)",
            ms(stats[0].p50),
            ms(stats[1].p50),
            ms(stats[2].p50)
        ),
        target: "<= 1.2x without a policy".into(),
        pass: Some(default <= 1.2 && hundred <= 1.2),
    }])
}
