//! The real `faultline-webhook` binary, served on 127.0.0.1 and registered with the API server
//! through Mutating/ValidatingWebhookConfigurations (`clientConfig.url` + `caBundle`).
//!
//! The configurations of a test select only namespaces labelled [`crate::TEST_LABEL`] = the
//! test's namespace, so a test that stops its webhook (fail-closed checks) or leaves its
//! configurations behind never touches another test's objects in a shared control plane.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, PostParams};

use crate::{TEST_LABEL, TestEnv};

/// The pod label and namespace label of sidecar opt-in, and the namespace label of chaos
/// opt-in (webhook/src/policy.rs).
pub const POD_INJECT_LABEL: (&str, &str) = ("faultline.dev/inject", "true");
/// See [`POD_INJECT_LABEL`].
pub const INJECTION_LABEL: (&str, &str) = ("faultline.dev/injection", "enabled");
/// See [`POD_INJECT_LABEL`].
pub const CHAOS_LABEL: (&str, &str) = ("faultline.dev/chaos", "enabled");

/// The `faultline-webhook` binary: `$FAULTLINE_WEBHOOK_BIN`, else [`crate::binary`] (built
/// once per process, a no-op when it is up to date).
pub fn binary() -> Result<PathBuf, String> {
    match std::env::var_os("FAULTLINE_WEBHOOK_BIN") {
        Some(path) => Ok(PathBuf::from(path)),
        None => crate::binary("faultline-webhook", "faultline-webhook"),
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A running `faultline-webhook serve`, killed on drop.
pub struct Webhook {
    child: Option<Child>,
    /// Its HTTPS address.
    pub addr: SocketAddr,
    /// The CA that signed its serving certificate (PEM).
    pub ca_pem: String,
    dir: PathBuf,
}

/// Files the webhook starts with (`None` = its defaults).
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// `--policy` file contents.
    pub policy: Option<String>,
    /// `--injection` template contents.
    pub injection: Option<String>,
}

impl Webhook {
    /// Starts the webhook with `options`, watching namespaces through the test's kubeconfig,
    /// and waits until `/readyz` says it is ready (namespace labels synced).
    pub async fn start(env: &TestEnv, options: &Options) -> Webhook {
        let binary = binary().unwrap_or_else(|e| panic!("the webhook binary: {e}"));
        let dir = std::env::temp_dir().join(crate::unique_name("faultline-webhook"));
        std::fs::create_dir_all(&dir).expect("webhook dir");
        let mut opts = faultline_certs::GenerateOptions::new(vec!["localhost".into()]);
        opts.ips = vec![std::net::Ipv4Addr::LOCALHOST.into()];
        let bundle = faultline_certs::generate(&opts).expect("webhook certificates");
        faultline_certs::write_bundle(&bundle, &dir).expect("write webhook certificates");
        let addr = free_addr();
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(["--metrics-listen", &free_addr().to_string()])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(["--reload-interval-secs", "1"]);
        for (flag, text) in [
            ("--policy", &options.policy),
            ("--injection", &options.injection),
        ] {
            if let Some(text) = text {
                let file = dir.join(flag.trim_start_matches('-'));
                std::fs::write(&file, text).expect("webhook file");
                cmd.arg(flag).arg(file);
            }
        }
        let log = std::fs::File::create(dir.join("webhook.log")).expect("webhook log");
        let child = cmd
            .env("KUBECONFIG", &env.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn faultline-webhook");
        let webhook = Webhook {
            child: Some(child),
            addr,
            ca_pem: bundle.ca_cert,
            dir,
        };
        webhook.wait_ready().await;
        webhook
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA"),
            )
            .timeout(Duration::from_secs(5))
            .build()
            .expect("https client");
        let url = format!("https://{}/readyz", self.addr);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "faultline-webhook not ready after 30 s; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the webhook logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("webhook.log")).unwrap_or_default()
    }

    /// Stops the webhook (its configurations stay: the API server now cannot reach it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The directory of its certificates and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Registers `/inject` (pods, in the test's namespaces that opted in to injection),
    /// `/default` and `/validate` (chaos kinds, in all the test's namespaces), failurePolicy
    /// Fail, with the webhook's CA set by `faultline_certs::set_ca_bundle` as a deployment
    /// would. Returns the configuration names.
    pub async fn register(&self, env: &TestEnv) -> [String; 2] {
        let url = |path: &str| format!("https://{}{path}", self.addr);
        let chaos_rule = |ops: &[&str]| {
            serde_json::json!([{
                "apiGroups": ["chaos.faultline.dev"], "apiVersions": ["v1alpha1"],
                "operations": ops,
                "resources": ["podchaos", "networkchaos", "stresschaos", "iochaos"],
                "scope": "Namespaced"
            }])
        };
        let test_namespaces = serde_json::json!({"matchLabels": {TEST_LABEL: env.namespace}});
        let common = |name: &str, path: &str, rules: serde_json::Value, selector| {
            serde_json::json!({
                "name": name,
                "clientConfig": {"url": url(path)},
                "rules": rules,
                "namespaceSelector": selector,
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10
            })
        };
        let mutating = serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": format!("{}-mutate", env.namespace)},
            "webhooks": [
                common(
                    "inject.faultline.dev",
                    "/inject",
                    serde_json::json!([{
                        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                        "resources": ["pods"], "scope": "Namespaced"
                    }]),
                    serde_json::json!({"matchLabels": {
                        TEST_LABEL: env.namespace,
                        INJECTION_LABEL.0: INJECTION_LABEL.1
                    }}),
                ),
                common("default.faultline.dev", "/default", chaos_rule(&["CREATE"]), test_namespaces.clone()),
            ]
        });
        let validating = serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": format!("{}-validate", env.namespace)},
            "webhooks": [common(
                "validate.faultline.dev",
                "/validate",
                chaos_rule(&["CREATE", "UPDATE"]),
                test_namespaces,
            )]
        });
        // As a deployment does it: YAML without caBundle, then `faultline-certs ca-bundle`.
        let yaml = format!(
            "{}---\n{}",
            serde_yaml::to_string(&mutating).expect("yaml"),
            serde_yaml::to_string(&validating).expect("yaml")
        );
        let patched = faultline_certs::set_ca_bundle(&yaml, &self.ca_pem, Path::new("e2e.yaml"))
            .expect("set caBundle");
        assert_eq!(patched.webhooks, 3);
        let mut docs = patched.text.split("\n---\n");
        let mutating: MutatingWebhookConfiguration =
            serde_yaml::from_str(docs.next().expect("doc 1")).expect("mutating configuration");
        let validating: ValidatingWebhookConfiguration =
            serde_yaml::from_str(docs.next().expect("doc 2")).expect("validating configuration");
        Api::<MutatingWebhookConfiguration>::all(env.client.clone())
            .create(&PostParams::default(), &mutating)
            .await
            .expect("create MutatingWebhookConfiguration");
        Api::<ValidatingWebhookConfiguration>::all(env.client.clone())
            .create(&PostParams::default(), &validating)
            .await
            .expect("create ValidatingWebhookConfiguration");
        [
            mutating.metadata.name.unwrap_or_default(),
            validating.metadata.name.unwrap_or_default(),
        ]
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pod that asks for the sidecar: labelled, with an emptyDir its container mounts.
pub fn opted_in_pod(name: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {POD_INJECT_LABEL.0: POD_INJECT_LABEL.1, "app": name}},
        "spec": {
            "containers": [{
                "name": "app", "image": "busybox:1.36",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    }))
    .expect("pod")
}

/// Whether the API server stored `pod` with a sidecar (the status annotation is there).
pub fn injected(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("faultline.dev/sidecar-status"))
}

/// Waits until the API server calls the webhook for pods in `namespace` (configurations take
/// effect a moment after they are created), probing with dry-run creates.
pub async fn wait_for_injection(env: &TestEnv, namespace: &str) {
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(env.client.clone(), namespace);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    crate::wait_for(&format!("sidecar injection in {namespace}"), || async {
        let pod = pods.create(&dry, &opted_in_pod("probe")).await.ok()?;
        injected(&pod).then_some(())
    })
    .await;
}

/// Waits until chaos objects in `namespace` go through `/validate`, probing with a dry-run
/// create that only the webhook refuses.
pub async fn wait_for_validation(env: &TestEnv, namespace: &str) {
    let api = crate::chaos_api(&env.client, namespace, "PodChaos");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "probe"},
        // mode fixed without a value: the schema accepts it, the api rules do not.
        "spec": {"action": "pod-kill", "mode": "fixed", "selector": {"labelSelectors": {"app": "x"}}}
    }))
    .expect("probe");
    crate::wait_for(&format!("chaos validation in {namespace}"), || async {
        match api.create(&dry, &probe).await {
            Err(kube::Error::Api(e)) if e.message.contains("denied the request") => Some(()),
            _ => None,
        }
    })
    .await;
}
