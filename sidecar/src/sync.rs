//! The workspace's one lock-poisoning policy, for the sidecar: a poisoned lock is used as is.
//!
//! Nothing here updates shared data half-way across a call that can panic (handlers catch
//! their panics outside the locks), so the data behind a poisoned lock is consistent. Failing
//! every later operation with EIO instead — or silently skipping a `forget` — would turn one
//! panic into a filesystem that never recovers. (The webhook has no locks to poison: its
//! swapped configuration lives in `ArcSwap`.)

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, poisoned or not.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l`, poisoned or not.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
