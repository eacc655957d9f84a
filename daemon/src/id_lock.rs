//! One operation at a time per fault id.
//!
//! An apply (from its renewal check to its armed ttl) and a recovery (from taking the fault
//! out to removing its journal entry) of one id each hold that id's lock throughout, so they
//! never interleave: a renewal cannot land in the middle of a ttl recovery and have its entry
//! unjournaled by it, a recovery request cannot take out a fault whose apply is still running,
//! and a retried apply waits for the first and then finds the fault (a renewal). Every journal
//! write of an id happens under its lock too, so two writes of one entry never race.
//!
//! Locks of different ids are independent; an id's lock exists only while someone holds or
//! waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use faultline_api::rpc::daemon::FaultId;
use tokio::sync::OwnedMutexGuard;

type IdMutex = tokio::sync::Mutex<()>;

/// The locks of the ids in use.
#[derive(Default)]
pub(crate) struct IdLocks {
    // Weak: the holders and waiters own the lock; the map only finds it.
    held: Mutex<HashMap<FaultId, Weak<IdMutex>>>,
}

/// The lock of one id, held until dropped.
pub(crate) struct IdGuard<'a> {
    locks: &'a IdLocks,
    id: FaultId,
    guard: Option<OwnedMutexGuard<()>>,
    lock: Option<Arc<IdMutex>>,
}

impl IdLocks {
    /// As in the registry: the map stays whole across a panic elsewhere.
    fn map(&self) -> MutexGuard<'_, HashMap<FaultId, Weak<IdMutex>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for `id`'s lock. Dropping the returned future while it waits is fine: the id's
    /// entry goes with the last waiter.
    pub(crate) async fn hold(&self, id: &FaultId) -> IdGuard<'_> {
        let lock = {
            let mut held = self.map();
            match held.get(id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(IdMutex::new(()));
                    held.insert(id.clone(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        // Built before the wait so that a cancelled wait still cleans up (Drop).
        let mut guard = IdGuard {
            locks: self,
            id: id.clone(),
            guard: None,
            lock: Some(lock.clone()),
        };
        guard.guard = Some(lock.lock_owned().await);
        guard
    }

    /// How many ids have a lock now (held or waited for).
    pub(crate) fn in_use(&self) -> usize {
        self.map().len()
    }
}

impl Drop for IdGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        self.lock.take();
        let mut held = self.locks.map();
        // A waiter holds a strong reference, so a count of 0 means nobody needs it any more
        // (checked under the map's lock, where new waiters take theirs).
        if held.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
            held.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_per_id_and_no_entry_left() {
        let locks = Arc::new(IdLocks::default());
        let (a, b) = (FaultId("a".into()), FaultId("b".into()));
        let held = locks.hold(&a).await;
        // Another id is not blocked.
        drop(locks.hold(&b).await);
        let waiter = {
            let (locks, a) = (locks.clone(), a.clone());
            tokio::spawn(async move {
                let _g = locks.hold(&a).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second holder of one id must wait");
        drop(held);
        waiter.await.unwrap();
        assert_eq!(locks.in_use(), 0);
        // A wait that is given up leaves nothing behind either.
        let held = locks.hold(&a).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), locks.hold(&a)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(locks.in_use(), 0);
    }
}
