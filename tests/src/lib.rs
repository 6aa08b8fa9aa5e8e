//! The end-to-end tests' crate: its scenarios are in `tests/e2e` and `tests/desktop`, the
//! deciding child of the crash test in `src/bin`. The harness they use is the workspace's shared
//! one, `countersign-test-support`; the desktop test names these parts of it through this crate.

pub use countersign_test_support::processes::AgentGuard;
pub use countersign_test_support::{bin, reopen_gateway, webdriver, Approver, TestGateway};
