//! The Countersign approver engine.
//!
//! One [`Engine`] owns a data directory: the SQLite store (inbox, outbox, audit log, paired
//! gateways), the device key and, in development mode, the software authenticator. It pairs
//! with gateways, keeps a stream open to each, verifies every pushed request before storing
//! it, runs the passkey ceremony through an [`Authenticator`], signs decisions, delivers them
//! exactly once through the outbox and writes everything to a hash-chained audit log.
//!
//! It knows nothing of windows or notifications: hosts observe it through [`EngineEvent`]s
//! and a [`Notifier`].
#![forbid(unsafe_code)]

mod acks;
mod aggregate;
mod anchor;
mod answers;
pub mod audit;
pub mod authenticator;
mod choice;
pub mod clock;
/// The display-safety rules (a leaf crate, shared with the notifications and the UI's DTOs).
pub use countersign_display as display;
mod connector;
mod decide;
mod device;
mod engine;
pub mod error;
pub mod events;
mod evidence;
pub mod gateway;
pub mod hoop;
mod hoop_error;
pub mod inbox;
mod ingest;
pub mod key_error;
pub mod outbox;
mod pairing;
mod passkeys;
mod pin;
mod receive;
mod reject;
mod report;
mod revoke;
pub mod security_key;
pub mod stages;
mod store;
mod stream_rules;
pub mod witness;

pub use anchor::AnchorReport;
pub use audit::AuditSummary;
pub use authenticator::{Authenticator, AuthenticatorChoice, AuthenticatorKind, SoftAuthenticator};
pub use choice::open_authenticator;
/// The WebAuthn messages an [`Authenticator`] takes and returns, for implementations outside
/// this crate (the desktop shell wraps the software authenticator).
pub mod ceremony {
    pub use webauthn_rs::prelude::{
        CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
        RequestChallengeResponse,
    };
}
pub use clock::Clock;
pub use connector::SyncReport;
pub use decide::DecisionOutcome;
pub use device::{KeyLocation, KeyStore, DEVICE_KEY_REF_FILE, SECRET_SERVICE_NAME};
pub use engine::{
    default_data_dir, device_name, Engine, EngineOptions, Host, DATABASE_FILE, DEVICE_KEY_FILE,
    HOOP_POLL_INTERVAL,
};
pub use error::EngineError;
pub use events::{EngineEvent, Notifier, SilentNotifier};
pub use gateway::GatewayRecord;
pub use inbox::{DeliveryState, InboxItem, ListFilter, LocalDecision, RejectReason};
pub use ingest::{FrameRefusal, IngestOutcome};
pub use key_error::KeyError;
pub use outbox::{Delivery, FlushReport, OutboxItem};
pub use passkeys::BetweenCeremonies;
pub use report::{ReportOutcome, UNEXPECTED_REASON};
pub use security_key::{KeyPrompt, KeySource, Pin, PinAsk, SecurityKey};
pub use store::SCHEMA_VERSION;
