//! The generated chain, checked with rustls' webpki verifiers, and the CLI end to end.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use faultline_certs::{GenerateOptions, generate, set_ca_bundle};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("add CA");
    Arc::new(roots)
}

fn cert(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
}

fn verify_server(ca: &str, leaf: &str, name: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("verifier");
    verifier
        .verify_server_cert(
            &cert(leaf),
            &[],
            &ServerName::try_from(name.to_owned()).expect("server name"),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

fn verify_client(ca: &str, leaf: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("verifier");
    verifier
        .verify_client_cert(&cert(leaf), &[], UnixTime::now())
        .map(|_| ())
}

fn options() -> GenerateOptions {
    let mut opts = GenerateOptions::new(vec![
        "faultline-webhook.faultline-system.svc".into(),
        "faultline-webhook.faultline-system.svc.cluster.local".into(),
        "localhost".into(),
    ]);
    opts.ips = vec!["127.0.0.1".parse().expect("ip")];
    opts.days = 30;
    opts
}

#[test]
fn serving_cert_verifies_for_every_name_and_ip() {
    let b = generate(&options()).expect("generate");
    for name in [
        "faultline-webhook.faultline-system.svc",
        "faultline-webhook.faultline-system.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ] {
        verify_server(&b.ca_cert, &b.tls_cert, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = verify_server(&b.ca_cert, &b.tls_cert, "other.example").unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
                | rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. }
                )
        ),
        "{err:?}"
    );
}

#[test]
fn client_cert_is_for_client_auth_only() {
    let b = generate(&options()).expect("generate");
    verify_client(&b.ca_cert, &b.client_cert).expect("client cert accepted for client auth");
    // The serving certificate is not a client certificate and vice versa (EKU checks).
    assert!(verify_client(&b.ca_cert, &b.tls_cert).is_err());
    assert!(verify_server(&b.ca_cert, &b.client_cert, "localhost").is_err());
}

#[test]
fn another_ca_is_not_trusted() {
    let a = generate(&options()).expect("generate");
    let b = generate(&options()).expect("generate");
    let err = verify_server(&b.ca_cert, &a.tls_cert, "localhost").unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
}

#[test]
fn keys_load_into_a_rustls_server_and_client_config() {
    let b = generate(&options()).expect("generate");
    let key = PrivateKeyDer::from_pem_slice(b.tls_key.as_bytes()).expect("tls key");
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert(&b.tls_cert)], key)
        .expect("serving key matches serving cert");
    let key = PrivateKeyDer::from_pem_slice(b.client_key.as_bytes()).expect("client key");
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(&b.ca_cert))
        .with_client_auth_cert(vec![cert(&b.client_cert)], key)
        .expect("client key matches client cert");
}

const MANIFEST: &str = "\
# leading comment, kept
apiVersion: v1
kind: Service
metadata:
  name: faultline-webhook   # inline comment, kept
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: faultline
webhooks:
- name: validate.chaos.faultline.dev
  clientConfig:
    service: {name: faultline-webhook, namespace: faultline-system, path: /validate}
  admissionReviewVersions: [v1]
  sideEffects: None
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: faultline
webhooks:
- name: default.chaos.faultline.dev
  clientConfig:
    caBundle: b2xk
    service: {name: faultline-webhook, namespace: faultline-system, path: /default}
- name: inject.faultline.dev
  clientConfig:
    service: {name: faultline-webhook, namespace: faultline-system, path: /inject}
---
kind: ConfigMap
apiVersion: v1
data: {a: b}
";

#[test]
fn ca_bundle_patches_every_webhook_and_keeps_other_documents() {
    let ca = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
    let out = set_ca_bundle(MANIFEST, ca, Path::new("m.yaml")).expect("patch");
    assert_eq!(out.webhooks, 3);
    let expected = faultline_certs::ca_bundle_value(ca);
    let docs: Vec<serde_yaml::Value> = out
        .text
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).expect("yaml"))
        .collect();
    assert_eq!(docs.len(), 4);
    for doc in &docs[1..3] {
        for webhook in doc["webhooks"].as_sequence().expect("webhooks") {
            assert_eq!(
                webhook["clientConfig"]["caBundle"].as_str(),
                Some(&*expected)
            );
            assert!(webhook["clientConfig"]["service"]["path"].is_string());
        }
    }
    // Untouched documents are kept byte for byte, comments included.
    assert!(out.text.starts_with(
        "# leading comment, kept\napiVersion: v1\nkind: Service\nmetadata:\n  name: faultline-webhook   # inline comment, kept\n---\n"
    ));
    assert!(
        out.text
            .ends_with("---\nkind: ConfigMap\napiVersion: v1\ndata: {a: b}\n")
    );
    // Idempotent.
    let again = set_ca_bundle(&out.text, ca, Path::new("m.yaml")).expect("patch");
    assert_eq!(again.text, out.text);
}

#[test]
fn ca_bundle_error_names_file_and_document() {
    let err = set_ca_bundle("a: 1\n---\nkind: [\n", "x", Path::new("bad.yaml")).unwrap_err();
    assert!(
        err.to_string().starts_with("bad.yaml: document 2: "),
        "{err}"
    );
}

#[test]
fn cli_help_lists_the_subcommands() {
    let output = Command::new(env!("CARGO_BIN_EXE_faultline-certs"))
        .arg("--help")
        .output()
        .expect("run faultline-certs --help");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("generate") && text.contains("ca-bundle") && text.contains("key"),
        "{text}"
    );
}

#[test]
fn cli_key_writes_a_private_key_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sa.key");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_faultline-certs"))
            .args(["key", "--out"])
            .arg(&out)
            .output()
            .expect("run faultline-certs key")
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let text = std::fs::read_to_string(&out).expect("key file");
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    let mode = std::fs::metadata(&out).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read_to_string(dir.path().join("sa.key.pub")).expect("public key");
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    let second = run();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("exists"),
        "{second:?}"
    );
    assert_eq!(std::fs::read_to_string(&out).expect("key file"), text);
}

#[test]
fn cli_generate_and_ca_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    let status = Command::new(env!("CARGO_BIN_EXE_faultline-certs"))
        .args(["generate", "--out"])
        .arg(&out)
        .args([
            "--dns",
            "localhost",
            "webhook.svc",
            "--ip",
            "127.0.0.1",
            "--days",
            "2",
        ])
        .status()
        .expect("run faultline-certs");
    assert!(status.success());
    for (name, mode) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("tls.crt", 0o644),
        ("tls.key", 0o600),
        ("client.crt", 0o644),
        ("client.key", 0o600),
    ] {
        let meta = std::fs::metadata(out.join(name)).expect(name);
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
    }
    let ca = std::fs::read_to_string(out.join("ca.crt")).expect("ca");
    let tls = std::fs::read_to_string(out.join("tls.crt")).expect("tls");
    verify_server(&ca, &tls, "webhook.svc").expect("chain from files");

    let manifest = dir.path().join("webhooks.yaml");
    std::fs::write(&manifest, MANIFEST).expect("write manifest");
    let output = Command::new(env!("CARGO_BIN_EXE_faultline-certs"))
        .args(["ca-bundle", "--ca"])
        .arg(out.join("ca.crt"))
        .arg(&manifest)
        .output()
        .expect("run ca-bundle");
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&manifest).expect("read manifest");
    assert_eq!(
        text.matches(&faultline_certs::ca_bundle_value(&ca)).count(),
        3
    );

    // A missing file is named in the error.
    let output = Command::new(env!("CARGO_BIN_EXE_faultline-certs"))
        .args(["ca-bundle", "--ca", "/nonexistent/ca.crt", "x.yaml"])
        .output()
        .expect("run ca-bundle");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/ca.crt"));
}

fn generate_into(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faultline-certs"))
        .args(["generate", "--out"])
        .arg(out)
        .args(extra)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run faultline-certs")
}

#[test]
fn cli_generate_does_not_replace_a_ca_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    assert!(
        generate_into(&out, &["--dns", "localhost"])
            .status
            .success()
    );
    let first = std::fs::read_to_string(out.join("ca.crt")).expect("ca");

    let output = generate_into(&out, &["--dns", "localhost"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already holds a CA") && stderr.contains("--force"),
        "{stderr}"
    );
    // Printed once, without a backtrace even with RUST_BACKTRACE=1.
    assert_eq!(stderr.matches("already holds a CA").count(), 1, "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("ca.crt")).expect("ca"),
        first,
        "the CA was replaced"
    );

    assert!(
        generate_into(&out, &["--dns", "localhost", "--force"])
            .status
            .success()
    );
    assert_ne!(
        std::fs::read_to_string(out.join("ca.crt")).expect("ca"),
        first
    );
}

#[test]
fn cli_generate_refuses_names_that_are_not_dns_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, reason) in [
        ("web hook.svc", "only letters, digits and '-'"),
        ("webhook..svc", "empty label"),
        ("webhook-.svc", "starts or ends with '-'"),
        ("10.0.0.1", "--ip"),
        ("https://webhook.svc", "only letters, digits and '-'"),
    ] {
        let out = dir.path().join(name.replace(['/', ' ', ':'], "_"));
        let output = generate_into(&out, &["--dns", name]);
        assert!(!output.status.success(), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("--dns {name:?} is not a DNS name"))
                && stderr.contains(reason),
            "{name}: {stderr}"
        );
        assert!(!out.join("ca.crt").exists(), "{name}: files were written");
    }
    for name in [
        "faultline-webhook.faultline.svc",
        "*.example.com",
        "localhost",
    ] {
        assert!(faultline_certs::dns_name(name).is_ok(), "{name}");
    }
}
