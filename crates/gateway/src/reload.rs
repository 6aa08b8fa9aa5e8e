//! Watching what the policy is made of while the gateway runs: the policy file, the directory
//! file and the directory kept in the store (which `countersign-gateway approver …` changes
//! from another process). Every `reload_seconds` each is fingerprinted (SHA-256 of its bytes or
//! of the listed entries). When one changed, a changed directory file is applied first, then
//! the policy is loaded again with the directory as its data: compiled, checked and its own
//! tests run. A policy that loads replaces the old one (`policy.loaded`); one that does not is
//! refused and the old one kept (`policy.refused`). Both are logged and audited with the
//! policy's hash.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::error::StoreError;
use crate::gateway::Gateway;
use crate::policy::{file_hash, sources, Sources};

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The policy was loaded again; its hash.
    Loaded(String),
    /// The new policy (or directory file) was refused; the old policy stays. Why.
    Refused(String),
}

/// Applies a changed directory file (when `directory_file_changed`), then loads the policy
/// again. Audited either way. What it was loaded from becomes the sources to compare with.
pub fn reload(gw: &Gateway, directory_file_changed: bool) -> Reloaded {
    let _one_at_a_time = match gw.policy_reload.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let now = gw.now();
    let audit = |kind: &str, detail: serde_json::Value| {
        if let Err(e) = gw
            .store
            .write(|tx| tx.audit_append(now, kind, None, detail.clone()))
        {
            tracing::error!(%e, kind, "could not audit a policy reload");
        }
    };
    let file = gw
        .config
        .policy_file
        .as_ref()
        .map(|p| p.display().to_string());
    if directory_file_changed {
        if let Some(path) = &gw.config.directory_file {
            if let Err(e) = crate::directory::load(&gw.store, path, now) {
                tracing::error!(%e, "the changed directory file was refused; the old directory stays");
                // Not tried again until one of the files changes once more.
                if let Ok((_, seen)) = current(gw) {
                    gw.set_policy_sources(seen);
                }
                audit(
                    "policy.refused",
                    json!({"file": path.display().to_string(), "error": e.to_string(), "policy_hash": gw.policy().hash}),
                );
                return Reloaded::Refused(e.to_string());
            }
        }
    }
    // Taken before the load: a change made while it loads is seen at the next look.
    let ((directory, version), seen) = match current(gw) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%e, "the directory could not be read; the old policy stays");
            return Reloaded::Refused(e.to_string());
        }
    };
    gw.set_policy_sources(seen);
    // The approvers whose person or groups changed are told before any request routed with
    // the new directory reaches them.
    if let Err(e) = crate::memberships::sync(gw) {
        tracing::error!(%e, "the membership statements could not be brought up to date");
    }
    let loaded = crate::policy::load_for(&gw.config, (&directory, version));
    // Only once the load is over: until then a request for this version waits on the lock.
    gw.policy_tried_version.store(version, Ordering::SeqCst);
    match loaded {
        Ok(policy) => {
            let hash = policy.hash.clone();
            tracing::info!(policy = %hash, tests = policy.tests.len(), "policy loaded again");
            audit(
                "policy.loaded",
                json!({"file": file, "policy_hash": hash, "tests": policy.tests, "previous": gw.policy().hash, "data_file_hash": gw.policy_sources().data_file}),
            );
            match gw.policy.write() {
                Ok(mut slot) => *slot = Arc::new(policy),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
            }
            Reloaded::Loaded(hash)
        }
        Err(e) => {
            let refused = file_hash(gw.config.policy_file.as_deref());
            tracing::error!(%e, "the changed policy was refused; the old one stays");
            audit(
                "policy.refused",
                json!({"file": file, "error": e.to_string(), "refused_hash": refused, "policy_hash": gw.policy().hash}),
            );
            Reloaded::Refused(e.to_string())
        }
    }
}

/// The listed directory at its version, and what the policy would be made from with it.
#[allow(clippy::type_complexity)]
fn current(gw: &Gateway) -> Result<((Vec<crate::directory::Entry>, i64), Sources), StoreError> {
    let (directory, version) = gw.store.read(crate::directory::listed_at_version)?;
    let seen = sources(&gw.config, &directory);
    Ok(((directory, version), seen))
}

/// Loads the policy again first if the store's directory changed since the policy in force was
/// loaded (a pairing, or `countersign-gateway approver …` from another process), so that a
/// request is routed with the directory as it is. One small read when nothing changed.
pub fn ensure_current(gw: &Gateway) -> Result<(), StoreError> {
    let version = gw.store.read(|c| c.directory_version())?;
    if version == gw.policy().directory_version {
        return Ok(());
    }
    if version != gw.policy_tried_version.load(Ordering::SeqCst) {
        reload(gw, false);
    } else {
        // A reload for this version may still be running: wait for it to finish.
        drop(match gw.policy_reload.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        });
    }
    Ok(())
}

/// Looks every `reload_seconds` (never when it is 0) and reloads on a change.
pub async fn watch(gw: Arc<Gateway>) {
    let seconds = gw.config.reload_seconds;
    if seconds == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(seconds));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Ok((_, now)) = gw.blocking(|gw| Ok(current(gw)?)).await else {
            continue;
        };
        // What the last reload saw (here, or before routing a request), after applying a
        // directory file: not reloaded twice for it.
        let last = gw.policy_sources();
        if now == last {
            continue;
        }
        let directory_file_changed = now.directory_file != last.directory_file;
        let _ = gw
            .blocking(move |gw| Ok(reload(gw, directory_file_changed)))
            .await;
    }
}
