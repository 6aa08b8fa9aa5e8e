//! The gateway's Prometheus metrics, served as OpenMetrics text at `GET /metrics` on the
//! operations listener (`operations_listen`, see `http::ops`; docs/operations.md lists them).
//!
//! Two kinds of figure. Those measured where they happen (push lag, decision latency, policy
//! evaluation time, events pushed) are kept here in `prometheus-client` histograms and
//! counters, which the hot paths update without a lock. Those that are a state of the gateway
//! (open streams, requests by state, the webhook backlog, the database's error count) are read
//! when Prometheus scrapes ([`Metrics::render`]), from the hub and the store, so they can never
//! drift from what they count.
//!
//! Metrics are per gateway, not process-global: the tests run many gateways in one process.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::error::{ApiError, StoreError};
use crate::store::Store;

/// The request states, as the `state` label of `countersign_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// How a decision ended, as the `outcome` label of `countersign_decision_duration_seconds`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// A receipt was issued (a replayed decision included).
    Receipt,
    /// The decision was refused.
    Refused,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Receipt => "receipt",
            Outcome::Refused => "refused",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Every state a request can be in: each is reported, at 0 when no request has it, so a
/// dashboard's series never vanish.
const STATES: [&str; 5] = ["pending", "approved", "denied", "expired", "withdrawn"];

/// The figures of one gateway.
pub struct Metrics {
    registry: Registry,
    push_lag: Histogram,
    decisions: Family<OutcomeLabel, Histogram>,
    policy: Histogram,
    pushed: Counter,
    streams: Gauge,
    requests: Family<StateLabel, Gauge>,
    webhook_backlog: Gauge,
    database_errors: Counter,
    leader: Gauge,
    /// One scrape at a time brings the read-at-scrape figures up to date and encodes them.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Latency buckets from 100 µs to about 13 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("countersign");
        let push_lag = latency();
        registry.register_with_unit(
            "push_lag",
            "Time from the hub's publication of an event (after its commit) to its hand-over to a device's stream",
            Unit::Seconds,
            push_lag.clone(),
        );
        let decisions = Family::<OutcomeLabel, Histogram>::new_with_constructor(latency);
        registry.register_with_unit(
            "decision_duration",
            "Time to verify and answer a decision (POST /v2/decisions), by outcome",
            Unit::Seconds,
            decisions.clone(),
        );
        let policy = latency();
        registry.register_with_unit(
            "policy_evaluation",
            "Time to route a new request through the policy",
            Unit::Seconds,
            policy.clone(),
        );
        let pushed = Counter::default();
        registry.register(
            "events_pushed",
            "Events handed to devices' live streams",
            pushed.clone(),
        );
        let streams = Gauge::default();
        registry.register(
            "streams_open",
            "Device streams (GET /v2/stream) open on this gateway",
            streams.clone(),
        );
        let requests = Family::<StateLabel, Gauge>::default();
        registry.register(
            "requests",
            "Requests in the store, by state",
            requests.clone(),
        );
        let webhook_backlog = Gauge::default();
        registry.register(
            "webhook_backlog",
            "Webhook and mail deliveries waiting to be sent or retried",
            webhook_backlog.clone(),
        );
        let database_errors = Counter::default();
        registry.register(
            "database_errors",
            "Statements and commits the database refused",
            database_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 on the replica that runs the work that must run once (expiry, deliveries, checkpoints)",
            leader.clone(),
        );
        Metrics {
            registry,
            leader,
            push_lag,
            decisions,
            policy,
            pushed,
            streams,
            requests,
            webhook_backlog,
            database_errors,
            scrape: Mutex::new(()),
        }
    }

    /// An event reached a stream `lag` after the commit that stored it.
    pub fn event_pushed(&self, lag: Duration) {
        self.pushed.inc();
        self.push_lag.observe(lag.as_secs_f64());
    }

    /// A decision was answered with `outcome` after `took`.
    pub fn decision(&self, outcome: Outcome, took: Duration) {
        self.decisions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .observe(took.as_secs_f64());
    }

    /// A new request was routed through the policy in `took`.
    pub fn policy_evaluated(&self, took: Duration) {
        self.policy.observe(took.as_secs_f64());
    }

    /// The figures as OpenMetrics text, after reading the gateway's state: `streams` open now,
    /// and the requests and deliveries in `store`. Runs on the blocking pool (it reads the
    /// store).
    pub fn render(&self, streams: usize, store: &Store) -> Result<String, ApiError> {
        let (by_state, backlog) = store.read(|tx| -> Result<_, StoreError> {
            Ok((tx.requests_by_state()?, tx.deliveries_waiting()?))
        })?;
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.streams.set(i64::try_from(streams).unwrap_or(i64::MAX));
        for state in STATES {
            let n = by_state
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            self.requests
                .get_or_create(&StateLabel {
                    state: state.to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.webhook_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        // The store counts its errors from the moment it opened; the counter follows it.
        self.leader.set(i64::from(store.is_leader()));
        let errors = store.stats().errors;
        let seen = self.database_errors.get();
        if errors > seen {
            self.database_errors.inc_by(errors - seen);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| ApiError::internal("metrics", e))?;
        Ok(text)
    }
}
