//! Locking the agent's plain shared values.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex whose data stays valid even if a holder panicked (plain values, no invariants
/// spanning several fields).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
