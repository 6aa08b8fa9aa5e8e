//! Countersign wire protocol.
//!
//! This crate owns everything two Countersign parties must agree on byte for byte: the versioned
//! wire types, the canonical JSON form (RFC 8785), the domain-separated SHA-256 digests and the
//! Ed25519 signatures over them, the pairing link and `countersign://` deep links, the device authentication header, the audit
//! chain rule and the Server-Sent Events framing. It does no I/O.
//!
//! `docs/protocol.md` is the normative description; this crate is its reference implementation.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod api;
pub mod approver_export;
pub mod audit;
pub mod canonical;
pub mod challenge;
pub mod crypto;
pub mod deeplink;
pub mod error;
pub mod events;
pub mod evidence;
mod fields;
pub mod grant;
pub mod link;
pub mod log;
pub mod membership;
pub mod pairing;
pub mod passkeys;
pub mod report;
pub mod request;
pub mod sse;
pub mod stages;
pub mod types;
pub mod webauthn;
pub mod webauthn_json;

pub use api::Acknowledgement;
pub use api::Refusal;
pub use crypto::{DeviceAuth, Digest, KeyPair, PublicKey, Signature};
pub use error::ProtocolError;
pub use events::*;
pub use grant::Grant;
pub use link::PairingLink;
pub use membership::Membership;
pub use pairing::*;
pub use passkeys::*;
pub use report::Report;
pub use request::{ApprovalRequest, Risk};
pub use stages::{Mode, PolicyRef, Stage, StageProgress};
pub use types::*;

/// The protocol version carried in the `v` field of every wire message.
pub const PROTOCOL_VERSION: u32 = 2;

/// The version of the audit log format: audit entries and the checkpoints that sign a chain
/// head. It is versioned apart from the wire, so that logs written before protocol version 2
/// still verify and their chains continue (`docs/protocol.md`, section 9).
pub const AUDIT_VERSION: u32 = 1;
