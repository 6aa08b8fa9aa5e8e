//! The harness the gateway's API tests, the end-to-end tests and the benchmarks share: a gateway
//! in this process on a free loopback port (or the real binary as a child process), devices that
//! pair with the software authenticator and speak the protocol directly, approver engines in
//! temporary data directories, SSE streams read event by event, and faults on the network and
//! the disk.
//!
//! Modules, leaves first (none imports another except as listed):
//!
//! - `http`: the gateway's answers over HTTP, and a refusal kept whole.
//! - `sse`: one device's `GET /v2/stream`, read event by event.
//! - `device`: a device paired over HTTP that signs decisions, reports and checkpoints
//!   (uses `http`, `sse`).
//! - `gateway`: a gateway in this process in a temporary directory, and a restart over its data
//!   (uses `http`, `device`).
//! - `approver`: an approver engine with the software authenticator, and its events.
//! - `processes`: the built binaries, child processes and the CLIs' answers.
//! - `faults`: a fault-injecting TCP proxy between an approver and a gateway.
//! - `mitm`: a man in the middle on the HTTP path that injects stream frames, strips
//!   `Last-Event-ID`, answers decisions itself and records what the gateway sent.
//! - `disks`: a small tmpfs to fill, a read-only directory, a directory's files.
//! - `tls`: self-signed certificates for a gateway that serves HTTPS.
//! - `keystore`: a device key read back from where the engine keeps it.
//! - `fido`: a fake CTAP2 security key behind the `Token` transport interface.
//! - `haproxy`: a real HAProxy in front of gateway replicas.
//! - `hoop`: a fake hoop.dev gateway, written from hoop's source.
//! - `smtp`: a real SMTP server (aiosmtpd) that records the mail it accepts.
//! - `postgres`: a real PostgreSQL server from Debian's packages, as an unprivileged user.
//! - `wait`: waiting for what another task does.
//! - `webdriver` (feature `webdriver`): the desktop app through tauri-driver.
//!
//! Everything here panics when something the test relies on fails: a failed unwrap is a failed
//! test. The few calls a benchmark makes to set up return errors instead, so that it can say
//! which step failed.
// A failed unwrap, expect or panic in the harness is the failed test it reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod approver;
pub mod device;
pub mod disks;
pub mod faults;
pub mod fido;
pub mod gateway;
pub mod haproxy;
pub mod hoop;
pub mod http;
pub mod keystore;
pub mod mitm;
pub mod postgres;
pub mod processes;
pub mod rewrite;
pub mod smtp;
pub mod sse;
pub mod tls;
pub mod wait;
#[cfg(feature = "webdriver")]
pub mod webdriver;

pub use approver::Approver;
pub use device::{Device, PairedGateway, Uv};
pub use disks::{files_of, running_as_root, ReadOnly, SmallDisk};
pub use faults::{Fault, FaultProxy};
pub use gateway::{
    reopen_gateway, sample_request, start_serving, test_config, test_database, Replica,
    TestGateway, REQUESTER,
};
pub use http::{answer, Refusal};
pub use keystore::{device_seed, secret_service_account, secret_service_available};
pub use processes::{
    bin, conformance_python, countersign, error_code, lines_of, wait_exit, wait_line, ChildGuard,
    GatewayProcess,
};
pub use sse::{request_id, EventStream};
pub use tls::self_signed;
pub use wait::eventually;
