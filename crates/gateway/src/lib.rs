//! The Countersign reference gateway.
//!
//! It holds risky actions until approvers decide: requesters create approval requests over
//! HTTP, the gateway signs them and pushes them to every paired device of every eligible
//! approver over Server-Sent Events, and it verifies each decision (device signature, request
//! digest, expiry, the WebAuthn assertion against once-only ceremony state, match code,
//! eligibility, quorum) before answering with a signed receipt.
//!
//! Module map: [`config`] settings, [`store`] SQLite, [`pairing`] invites and device pairing,
//! [`approvals`] requests, decisions and quorum, [`stream`] the push hub and SSE endpoint,
//! [`http`] the axum router, [`tokens`] requester tokens, [`client`] the requester-side HTTP
//! client used by the `request` command.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod ceremony;
pub mod checkpoints;
pub mod client;
pub mod clock;
pub mod config;
pub mod decisions;
pub mod devices;
pub mod error;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod lifecycle;
pub mod openapi;
pub mod pairing;
pub mod passkeys;
pub mod reports;
pub mod requests;
pub mod schema;
pub mod server;
pub mod status;
pub mod store;
pub mod stream;
pub mod tls;
pub mod tokens;

pub use config::Config;
pub use error::{ApiError, GatewayError};
pub use gateway::Gateway;
pub use server::{serve, serve_on, Running};
