//! The namespace-label cache: a kube reflector over Namespaces, started on first need (a policy
//! that requires namespace opt-in). Its state and store are swapped whole (`ArcSwap`): readers
//! on the admission path never take a lock.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::policy::NamespaceLabels;

/// What the namespace cache knows.
#[derive(Debug, Clone)]
enum CacheState {
    NotStarted,
    Syncing(String),
    Synced,
}

/// Namespace labels from a reflector over the Kubernetes API, started on first need.
#[derive(Clone)]
pub struct NamespaceCache {
    store: Arc<ArcSwapOption<Store<Namespace>>>,
    state: Arc<ArcSwap<CacheState>>,
    started: Arc<OnceLock<()>>,
}

impl Default for NamespaceCache {
    fn default() -> Self {
        NamespaceCache {
            store: Arc::new(ArcSwapOption::empty()),
            state: Arc::new(ArcSwap::from_pointee(CacheState::NotStarted)),
            started: Arc::new(OnceLock::new()),
        }
    }
}

impl NamespaceCache {
    fn set_state(&self, state: CacheState) {
        self.state.store(Arc::new(state));
    }

    /// The state in words, for `/readyz`.
    pub(crate) fn describe(&self) -> String {
        match &**self.state.load() {
            CacheState::NotStarted => "not needed".to_owned(),
            CacheState::Syncing(why) => format!("unknown: {why}"),
            CacheState::Synced => "synced".to_owned(),
        }
    }

    pub(crate) fn synced(&self) -> bool {
        matches!(**self.state.load(), CacheState::Synced)
    }

    /// Starts the watch once (idempotent). `client` = `None`: in-cluster / kubeconfig default.
    pub fn start(&self, client: Option<kube::Client>) {
        if self.started.set(()).is_err() {
            return;
        }
        self.set_state(CacheState::Syncing(
            "the Namespace watch is starting".to_owned(),
        ));
        let cache = self.clone();
        tokio::spawn(async move {
            let client = match client {
                Some(c) => c,
                None => loop {
                    match kube::Client::try_default().await {
                        Ok(c) => break c,
                        Err(e) => {
                            tracing::warn!(error = %e, "no Kubernetes client; retrying in 5s");
                            cache.set_state(CacheState::Syncing(format!(
                                "no Kubernetes API client: {e}"
                            )));
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                    }
                },
            };
            cache.run(client).await;
        });
    }

    /// Runs the reflector until the process ends.
    pub async fn run(&self, client: kube::Client) {
        let api: kube::Api<Namespace> = kube::Api::all(client);
        let (reader, writer) = reflector::store();
        self.store.store(Some(Arc::new(reader)));
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    tracing::info!("namespace cache synced");
                    self.set_state(CacheState::Synced);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "namespace watch failed; retrying");
                    let synced = self.synced();
                    // Once synced, keep answering from the last known state while the watch
                    // recovers; before that, say why the labels are unknown.
                    if !synced {
                        self.set_state(CacheState::Syncing(format!(
                            "the Kubernetes API cannot be read: {e}"
                        )));
                    }
                }
            }
        }
    }
}

impl NamespaceLabels for NamespaceCache {
    fn label(&self, namespace: &str, key: &str) -> Result<Option<String>, String> {
        match &**self.state.load() {
            CacheState::Synced => {}
            CacheState::Syncing(why) => return Err(why.clone()),
            CacheState::NotStarted => {
                return Err("the Namespace watch has not started".to_owned());
            }
        }
        let store = self
            .store
            .load_full()
            .ok_or_else(|| "the namespace cache is unavailable".to_owned())?;
        Ok(store
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.as_ref()?.get(key).cloned()))
    }

    fn watched(&self) -> bool {
        !matches!(**self.state.load(), CacheState::NotStarted)
    }
}
