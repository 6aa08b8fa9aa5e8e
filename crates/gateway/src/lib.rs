//! The Countersign reference gateway.
//!
//! It holds risky actions until approvers decide: requesters create approval requests over
//! HTTP, the gateway signs them and pushes them to every paired device of every eligible
//! approver over Server-Sent Events, and it verifies each decision (device signature, request
//! digest, expiry, the WebAuthn assertion against once-only ceremony state, match code,
//! eligibility, quorum) before answering with a signed receipt.
//!
//! Module map, roughly from the leaves up (no two modules import each other, directly or
//! through others):
//!
//! - [`error`] the error types, [`clock`] the gateway's clock, [`config`] settings, [`tls`]
//!   HTTPS and the certificate pin;
//! - [`hub`] the in-memory push hub; [`store`] the storage seam: [`store::Store`] and the typed
//!   transaction [`store::Tx`] (one trait per owner of rows, each with its statements, the
//!   audit chain among them) over the SQLite engine with group commit, the schema and its
//!   migrations; no SQL and no database type outside it;
//! - [`gateway`] the shared [`Gateway`] and opening it;
//! - [`envelope`] signed stream events; [`devices`] device authentication, [`passkeys`] an approver's passkeys, [`status`] a request's
//!   status and quorum, [`ceremony`] the once-only WebAuthn ceremony of a decision;
//! - [`pairing`] invites and device pairing, [`tokens`] requester tokens, [`reports`]
//!   unexpected-request reports and blocks, [`refusals`] aggregated audit of repeated refusals, [`checkpoints`] devices' audit checkpoints,
//!   [`requests`] creating requests, [`decisions`] verifying and applying decisions,
//!   [`lifecycle`] viewing, withdrawing and expiring requests, [`stream`] `GET /v2/stream`;
//! - [`http`] the axum router, [`openapi`] its OpenAPI document, [`server`] serving it;
//! - [`approvals`] the approval flow's public paths, re-exported from the modules above;
//!   [`client`] the requester-side HTTP client used by the `request` command.
#![forbid(unsafe_code)]

pub mod acks;
pub mod admin;
pub mod approvals;
pub mod attestation;
mod bind;
pub mod ceremony;
pub mod challenges;
pub mod checkpoints;
pub mod client;
pub mod clock;
pub mod config;
pub mod decisions;
pub mod devices;
pub mod directory;
pub mod directory_admin;
pub mod email;
pub mod enrolment;
pub mod envelope;
pub mod error;
pub mod evidence;
pub mod gateway;
pub mod github;
pub mod http;
pub mod hub;
pub mod kubernetes;
pub mod lifecycle;
pub mod logging;
pub mod memberships;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod pairing;
pub mod passkeys;
pub mod policy;
pub mod refusals;
pub mod reload;
pub mod reports;
pub mod requests;
pub mod revocations;
pub mod routing;
pub mod server;
pub mod signed_decision;
pub mod status;
pub mod store;
pub mod stream;
pub mod tlog;
pub mod tls;
pub mod tokens;
pub mod webhooks;

pub use config::Config;
pub use error::{ApiError, GatewayError};
pub use gateway::Gateway;
pub use server::{serve, serve_on, Running};
