//! The gateway's policy: a Rego module (`package countersign`) evaluated by regorus, whose rule
//! `result` decides whether a request may be made, by whom it is approved (stages combined
//! with AND, each "N of a group or a list"), and under which constraints.
//!
//! What a policy may rely on and what the gateway does with its answer is specified in
//! docs/policy.md. This module loads a policy (refusing one that does not compile, one whose
//! own `test_*` rules do not all hold, and one that reads the system clock through
//! `time.now_ns`, which would bypass the gateway's clock), evaluates it on an input, and reads
//! its result strictly: an evaluation error, an undefined result or a result of the wrong
//! shape is a policy error, and the gateway fails closed on it.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The policy that applies when `policy_file` is unset: requesters name approvers, who must be
/// in the directory and never the requester; critical risk needs two of them.
pub const DEFAULT_POLICY: &str = include_str!("../../../docs/policy/default.rego");

/// The rule a policy answers with.
const RESULT_RULE: &str = "data.countersign.result";

/// Why a policy was refused or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy does not compile: {0}")]
    Compile(String),
    #[error("the policy is not `package countersign`")]
    Package,
    #[error("the policy reads the system clock (time.now_ns at line {line}); use input.time, the gateway's clock")]
    ReadsSystemClock { line: usize },
    #[error("the policy gives `result` a default (line {line}): an undefined helper would silently choose it; let the result be undefined instead, and the gateway refuses")]
    DefaultResult { line: usize },
    #[error("the policy's own tests fail: {}", .0.join(", "))]
    TestsFail(Vec<String>),
    #[error("the policy could not be evaluated: {0}")]
    Evaluation(String),
    #[error(
        "the policy's result is undefined for this request (a helper it uses may be undefined)"
    )]
    Undefined,
    #[error("the policy's result is malformed: {0}")]
    Malformed(String),
}

/// A stage of approval: `min` approvals from a directory group or from a list of approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRule {
    pub name: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    pub min: u32,
}

pub use countersign_protocol::Mode;

/// What a policy's `result` rule answers, read strictly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub allow: bool,
    /// The rule that decided (named in the signed request and the audit log).
    pub rule: String,
    /// For the requester: why it was refused, or what happens now.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub stages: Vec<StageRule>,
    /// One person's approval counts toward at most one stage (the default).
    #[serde(default = "yes")]
    pub distinct_people: bool,
    #[serde(default)]
    pub require_match: bool,
    #[serde(default)]
    pub deny_requires_passkey: bool,
    /// The longest the request may wait for its approvals.
    #[serde(default)]
    pub max_wait_seconds: Option<u32>,
    /// How long an approval stays valid for the action to start.
    #[serde(default)]
    pub grant_seconds: Option<u32>,
    /// The time constraints, for people to read ("weekdays 08:00-18:00 Europe/Berlin").
    #[serde(default)]
    pub windows: Vec<String>,
    /// The policy's judgement of the request's risk; the signed request carries the higher of
    /// it and the requester's claim, and auto-approval's ceiling is checked against that.
    #[serde(default)]
    pub risk: Option<countersign_protocol::Risk>,
}

fn yes() -> bool {
    true
}

impl Outcome {
    /// The shape rules the gateway holds a result to, whatever the policy says: the same rules
    /// the signed request's members must keep (protocol.md 3.1, 3.1a), so that a result that
    /// breaks one is a policy error, never a refused request.
    fn check(&self) -> Result<(), PolicyError> {
        let bad = |why: String| Err(PolicyError::Malformed(why));
        if let Err(e) = countersign_protocol::stages::check_rule(&self.rule) {
            return bad(format!("`rule` must name the rule that decided: {e}"));
        }
        if !self.allow {
            if self.message.trim().is_empty() {
                return bad("a refusal needs a `message` for the requester".into());
            }
            return Ok(());
        }
        if self.mode == Mode::Ask && self.stages.is_empty() {
            return bad("an allowed request that approvers decide needs at least one stage".into());
        }
        if let Err(e) = countersign_protocol::stages::check_stages(&self.request_stages()) {
            return bad(e.to_string());
        }
        if let Err(e) = countersign_protocol::stages::check_windows(&self.windows) {
            return bad(e.to_string());
        }
        Ok(())
    }

    /// The result's stages as a request carries them: each list sorted, each name once.
    pub fn request_stages(&self) -> Vec<countersign_protocol::Stage> {
        self.stages
            .iter()
            .map(|s| countersign_protocol::Stage {
                name: s.name.clone(),
                approvers: s.approvers.as_ref().map(|l| {
                    let mut l = l.clone();
                    l.sort();
                    l.dedup();
                    l
                }),
                group: s.group.clone(),
                min: s.min,
            })
            .collect()
    }
}

/// A loaded policy: compiled, its tests passed, ready to evaluate.
pub struct Policy {
    engine: Mutex<regorus::Engine>,
    /// SHA-256 (hex) of the policy's text, as loaded.
    pub hash: String,
    /// The `test_*` rules it holds, all of which passed at load.
    pub tests: Vec<String>,
    /// The directory hash (`directory::hash`) of the entries it was loaded with as data: that
    /// of no entries until `load_for` sets it.
    pub directory_hash: String,
    /// The store's directory version (`directory_version`) those entries were read at; -1
    /// for a policy loaded without the store.
    pub directory_version: i64,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("hash", &self.hash)
            .field("tests", &self.tests)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Compiles `source` (named `name` in messages), refuses one that reads the system clock,
    /// and runs its `test_*` rules with `data` (the directory and any data file) as data: the
    /// policy loads only if each of them is true.
    pub fn load(name: &str, source: &str, data: serde_json::Value) -> Result<Policy, PolicyError> {
        Policy::compile(name, source, json_data(data, None), true)
    }

    /// [`Policy::load`] with the operator's data (`policy_data_file`) beside the directory.
    pub fn load_with(
        name: &str,
        source: &str,
        data: serde_json::Value,
        extra: Option<&OperatorData>,
    ) -> Result<Policy, PolicyError> {
        Policy::compile(name, source, json_data(data, extra), true)
    }

    /// [`Policy::load`] without running the policy's tests (`policy check`).
    pub fn check(name: &str, source: &str, data: serde_json::Value) -> Result<Policy, PolicyError> {
        Policy::compile(name, source, json_data(data, None), false)
    }

    fn compile(
        name: &str,
        source: &str,
        data: serde_json::Value,
        run_tests: bool,
    ) -> Result<Policy, PolicyError> {
        if let Some(line) = reads_system_clock(source) {
            return Err(PolicyError::ReadsSystemClock { line });
        }
        if let Some(line) = defaults_the_result(source) {
            return Err(PolicyError::DefaultResult { line });
        }
        let mut engine = regorus::Engine::new();
        // regorus reads the system clock in time.now_ns; an extension of the same name is
        // found first, so even a call the scan above missed fails closed.
        engine
            .add_extension(
                "time.now_ns".into(),
                0,
                Box::new(|_: Vec<regorus::Value>| -> anyhow::Result<regorus::Value> {
                    Err(anyhow::anyhow!(
                        "time.now_ns reads the system clock: use input.time"
                    ))
                }),
            )
            .map_err(|e| PolicyError::Compile(e.to_string()))?;
        let package = engine
            .add_policy(name.to_owned(), source.to_owned())
            .map_err(|e| PolicyError::Compile(e.to_string()))?;
        if package != "data.countersign" {
            return Err(PolicyError::Package);
        }
        engine
            .add_data(regorus::Value::from(data))
            .map_err(|e| PolicyError::Compile(e.to_string()))?;
        let tests = test_rules(source);
        let mut failed = Vec::new();
        for t in tests.iter().filter(|_| run_tests) {
            match engine.eval_rule(format!("data.countersign.{t}")) {
                Ok(regorus::Value::Bool(true)) => {}
                Ok(_) => failed.push(t.clone()),
                Err(e) => failed.push(format!("{t} ({e})")),
            }
        }
        if !failed.is_empty() {
            return Err(PolicyError::TestsFail(failed));
        }
        Ok(Policy {
            engine: Mutex::new(engine),
            hash: hex::encode(sha2::Sha256::digest(source.as_bytes())),
            tests,
            directory_hash: hex::encode(sha2::Sha256::digest(b"")),
            directory_version: -1,
        })
    }

    /// The embedded default policy.
    pub fn default_policy(data: serde_json::Value) -> Result<Policy, PolicyError> {
        Policy::load("default.rego", DEFAULT_POLICY, data)
    }

    /// Evaluates the policy on `input`; a result that is not a well-formed [`Outcome`] is an
    /// error (the caller fails closed).
    pub fn evaluate(&self, input: &serde_json::Value) -> Result<Outcome, PolicyError> {
        let value = {
            let mut engine = self
                .engine
                .lock()
                .map_err(|_| PolicyError::Evaluation("an earlier evaluation panicked".into()))?;
            engine.set_input(regorus::Value::from(input.clone()));
            engine
                .eval_rule(RESULT_RULE.into())
                .map_err(|e| PolicyError::Evaluation(e.to_string()))?
        };
        if value == regorus::Value::Undefined {
            return Err(PolicyError::Undefined);
        }
        let json = value
            .to_json_str()
            .map_err(|e| PolicyError::Malformed(e.to_string()))?;
        let outcome: Outcome =
            serde_json::from_str(&json).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        outcome.check()?;
        Ok(outcome)
    }
}

/// Who asks, as a policy's input names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Requester {
    /// The token's name.
    pub name: String,
    /// The directory person the token belongs to.
    pub person: Option<String>,
    pub team: Option<String>,
    pub environments: Vec<String>,
    /// The groups an integration vouches for the requester being in (a Kubernetes user's
    /// groups from the API server's `userInfo`); empty for a requester token.
    pub groups: Vec<String>,
}

/// The input a policy is evaluated on for `request` from `requester` at `now` (Unix seconds,
/// the gateway's clock), as docs/policy.md specifies it.
pub fn input(
    request: &countersign_protocol::api::NewRequest,
    requester: &Requester,
    now: i64,
) -> serde_json::Value {
    let risk = request
        .risk
        .unwrap_or(countersign_protocol::Risk::Medium)
        .as_str();
    serde_json::json!({
        "request": {
            "action": request.action,
            "resource": request.resource,
            "risk": risk,
            "summary": request.summary,
            "detail": request.detail,
            "reason": request.reason,
            "approvers": request.approvers,
            "min_approvals": request.min_approvals,
            "ttl_seconds": request.ttl_seconds,
            "require_match": request.require_match,
            "break_glass": request.break_glass,
        },
        "requester": requester,
        "time": {
            "unix": now,
            "ns": now.saturating_mul(1_000_000_000),
            "zone": "UTC",
        },
    })
}

/// What a policy in force was made from: SHA-256 of the policy file, of the directory file and
/// of the stored directory's entries (`directory::hash`), as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    pub policy_file: Option<String>,
    pub directory_file: Option<String>,
    pub directory: Option<String>,
    /// The operator's data file (`policy_data_file`).
    pub data_file: Option<String>,
}

/// SHA-256 (hex) of the file at `path`, if it can be read.
pub fn file_hash(path: Option<&std::path::Path>) -> Option<String> {
    let bytes = std::fs::read(path?).ok()?;
    Some(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// What the policy `config` names would be made from now, with `directory` (the listed
/// entries, `directory::listed`) as the stored directory.
pub fn sources(config: &crate::config::Config, directory: &[crate::directory::Entry]) -> Sources {
    Sources {
        policy_file: file_hash(config.policy_file.as_deref()),
        directory_file: file_hash(config.directory_file.as_deref()),
        directory: crate::directory::hash(directory).ok(),
        data_file: file_hash(config.policy_data_file.as_deref()),
    }
}

/// Why the configured policy could not be read or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the policy file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the policy {name}: {source}")]
    Policy { name: String, source: PolicyError },
    #[error("the policy's data file {}: {reason}", path.display())]
    Data {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// The policy `config` names (`policy_file`, or the embedded default), loaded with
/// `directory` (the listed entries, at the store's directory version `version`) as its data.
pub fn load_for(
    config: &crate::config::Config,
    (directory, version): (&[crate::directory::Entry], i64),
) -> Result<Policy, LoadError> {
    let data = crate::directory::policy_data(directory);
    let extra = config
        .policy_data_file
        .as_deref()
        .map(operator_data)
        .transpose()?;
    let (name, loaded) = match &config.policy_file {
        Some(path) => {
            let source = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            let name = path.display().to_string();
            let loaded = Policy::load_with(&name, &source, data, extra.as_ref());
            (name, loaded)
        }
        None => (
            "default.rego".to_owned(),
            Policy::load_with("default.rego", DEFAULT_POLICY, data, extra.as_ref()),
        ),
    };
    let mut policy = loaded.map_err(|source| LoadError::Policy { name, source })?;
    if let Ok(hash) = crate::directory::hash(directory) {
        policy.directory_hash = hash;
    }
    policy.directory_version = version;
    Ok(policy)
}

/// The operator's own data for the policy (`policy_data_file`): a JSON object whose members
/// become `data.<name>` (a change calendar as `data.freezes`, say).
pub type OperatorData = serde_json::Map<String, serde_json::Value>;

/// The data a policy sees: `data.directory` is the directory (`directory::policy_data`), and
/// each member of the operator's data beside it.
fn json_data(directory: serde_json::Value, extra: Option<&OperatorData>) -> serde_json::Value {
    let mut data = extra.cloned().unwrap_or_default();
    data.insert("directory".to_owned(), directory);
    serde_json::Value::Object(data)
}

/// Reads the operator's data file `path`: a JSON object without a `directory` member (that is
/// the gateway's).
pub fn operator_data(path: &std::path::Path) -> Result<OperatorData, LoadError> {
    let bad = |reason: String| LoadError::Data {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(map) =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?
    else {
        return Err(bad("not a JSON object".into()));
    };
    if map.contains_key("directory") {
        return Err(bad(
            "`directory` is the gateway's directory; name the data otherwise".into(),
        ));
    }
    Ok(map)
}

/// The Rego source with comments and string literals blanked out (each replaced by spaces, so
/// that line numbers stay), for the scans below.
fn code_only(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                out.push(' ');
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                    out.push(' ');
                }
            }
            '"' => {
                out.push(' ');
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                        out.push_str("  ");
                        continue;
                    }
                    out.push(if d == '\n' { '\n' } else { ' ' });
                    if d == '"' {
                        break;
                    }
                }
            }
            '`' => {
                out.push(' ');
                for d in chars.by_ref() {
                    out.push(if d == '\n' { '\n' } else { ' ' });
                    if d == '`' {
                        break;
                    }
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The line of the first call of `time.now_ns` in code (not in a comment or a string).
fn reads_system_clock(source: &str) -> Option<usize> {
    code_only(source)
        .lines()
        .position(|l| {
            let squeezed: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            squeezed.contains("time.now_ns")
        })
        .map(|i| i + 1)
}

/// The line of a `default result` declaration, if the policy has one.
fn defaults_the_result(source: &str) -> Option<usize> {
    code_only(source)
        .lines()
        .position(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("default")
                && words.next().is_some_and(|w| {
                    w == "result" || w.starts_with("result:") || w.starts_with("result=")
                })
        })
        .map(|i| i + 1)
}

/// The names of the rules whose name starts with `test_`, in order, once each.
fn test_rules(source: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in code_only(source).lines() {
        let Some(rest) = line.strip_prefix("test_") else {
            continue;
        };
        let tail: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let name = format!("test_{tail}");
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_strings_are_not_code() {
        let src = "package countersign\n# time.now_ns()\nx := \"time.now_ns\"\ny := `time.\nnow_ns`\nz := time.now_ns()\n";
        assert_eq!(reads_system_clock(src), Some(6));
        assert_eq!(
            test_rules("test_a if { true }\n  test_not_at_line_start := 1\ntest_b := true\ntest_a if { false }\n# test_c\n"),
            vec!["test_a", "test_b"]
        );
    }
}
