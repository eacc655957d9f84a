//! The RPC listener with mutual TLS: a client certificate signed by `--client-ca` is required
//! at the handshake. Refused: no certificate, a certificate from another CA, an expired one.

mod common;

use common::{Daemon, Options};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};

fn client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn call(client: &reqwest::Client, d: &Daemon) -> Result<Value, String> {
    let url = format!("https://localhost:{}/", d.tls.unwrap().port());
    let resp = client
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "faults.list"}))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    resp.json().await.map_err(|e| format!("{e:?}"))
}

/// A client certificate signed by `issuer_cert`/`issuer_key`, valid from `not_before` to
/// `not_after`.
fn client_cert(
    issuer_cert: &str,
    issuer_key: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> (String, String) {
    let issuer_key = KeyPair::from_pem(issuer_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(issuer_cert, issuer_key).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "faultline-controller");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn only_clients_with_a_valid_certificate_of_the_ca_get_in() {
    let d = Daemon::start(Options {
        tls: true,
        ..Default::default()
    })
    .await;
    let certs = d.certs.clone().unwrap();
    let ca = certs.ca_cert.as_str();

    // The client certificate faultline-certs made: accepted.
    let good = client(ca, Some((&certs.client_cert, &certs.client_key)));
    let answer = call(&good, &d).await.expect("accepted");
    assert_eq!(answer["result"], json!({"faults": []}), "{answer}");

    // No certificate.
    let err = call(&client(ca, None), &d).await.unwrap_err();
    assert!(!err.is_empty());

    // A certificate of another CA.
    let other = faultline_certs::generate(&faultline_certs::GenerateOptions::new(vec![
        "localhost".into(),
    ]))
    .unwrap();
    call(
        &client(ca, Some((&other.client_cert, &other.client_key))),
        &d,
    )
    .await
    .unwrap_err();

    // Signed by the right CA, but expired yesterday.
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = client_cert(
        &certs.ca_cert,
        &certs.ca_key,
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    call(&client(ca, Some((&cert, &key))), &d)
        .await
        .unwrap_err();

    // The same CA and a valid period: accepted (so the expired one failed for its dates).
    let (cert, key) = client_cert(
        &certs.ca_cert,
        &certs.ca_key,
        now - time::Duration::days(1),
        now + time::Duration::days(1),
    );
    call(&client(ca, Some((&cert, &key))), &d)
        .await
        .expect("a fresh certificate of the CA is accepted");

    // Each refusal was a handshake refusal, logged with its reason; the daemon still serves.
    let log = d.log();
    assert!(log.matches("TLS handshake refused").count() >= 3, "{log}");
    assert!(log.contains("Expired") || log.contains("expired"), "{log}");
    assert!(call(&good, &d).await.is_ok());
}
