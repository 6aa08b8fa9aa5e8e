//! Cross-crate scenarios: the real gateway and the real approver engine (and their binaries),
//! the software authenticator as the passkey, real SQLite files and loopback HTTP only. One
//! module per theme; the harness they share is the countersign-test-support crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod binaries;
mod break_glass;
mod cli_json;
mod common;
mod crash;
mod evidence;
mod exports;
mod faults;
mod hoop;
mod keystore;
mod mitm;
mod offline;
mod operations;
mod pairing;
mod quorum;
mod replicas;
mod reports;
mod restarts;
mod secrets;
mod security_keys;
mod storage;
mod tls;
mod witness;
