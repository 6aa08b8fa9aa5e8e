//! The approval flow's public entry points under their historical path,
//! `countersign_gateway::approvals::…`, each defined by the module that owns it: requests are
//! created in `requests`, decided in `decisions`, viewed, withdrawn and expired in
//! `lifecycle`, and passkey rows are read in `passkeys`.
//!
//! Nothing inside the crate imports this module, so it cannot take part in an import loop.

pub use crate::decisions::{decide, Applied};
pub use crate::lifecycle::{expire_due, expiry_sweeper, view, view_wait, withdraw};
pub use crate::passkeys::{base64_cred_id, passkey_counters, passkeys_of};
pub use crate::requests::create_request;
