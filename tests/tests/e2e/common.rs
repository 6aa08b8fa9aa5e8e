//! What the scenarios with the real binaries and the second-language verifiers share: the
//! output of a command as text or JSON lines, the gateway fingerprint of a pairing link, and
//! the Python of the conformance tests (tests/conformance).

use std::path::Path;
use std::process::{Command, Output};

/// A command's standard output and error, for assertion messages and searches.
pub(crate) fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command's standard output as JSON Lines.
pub(crate) fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The gateway fingerprint a pairing link names (its `fp`).
pub(crate) fn fingerprint_of(link: &str) -> String {
    link.split(['?', '&'])
        .find_map(|p| p.strip_prefix("fp="))
        .unwrap()
        .to_owned()
}

pub(crate) use countersign_test_support::conformance_python as python;

/// Runs the Python verifier of evidence and exports with `args`, the gateway key in its
/// environment.
pub(crate) fn conformance(args: &[&str], key: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/verify_evidence.py");
    Command::new(python())
        .arg(script)
        .args(args)
        .env("COUNTERSIGN_GATEWAY_KEY", key)
        .output()
        .unwrap()
}
