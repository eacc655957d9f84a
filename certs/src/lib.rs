//! # faultline-certs
//!
//! Certificates for Faultline's TLS endpoints, made without openssl or cert-manager.
//!
//! * [`generate`] makes a new certificate authority and, signed by it, a **serving certificate**
//!   for the webhook (valid for the given DNS names and IP addresses, `serverAuth`) and a
//!   **client certificate** for the controller's mTLS connection to the daemon (`clientAuth`).
//!   All keys are ECDSA P-256, all files PEM.
//! * [`generate_key`] makes a lone private key (for signing service-account tokens).
//! * [`write_bundle`] writes them as `ca.crt`, `ca.key`, `tls.crt`, `tls.key`, `client.crt`,
//!   `client.key` (the names Kubernetes `kubernetes.io/tls` secrets use). Keys are created with
//!   mode `0600`, certificates `0644`. Each file is written to a temporary name in the same
//!   directory and renamed, so a server watching `tls.crt`/`tls.key` never reads half a file.
//! * [`set_ca_bundle`] sets `clientConfig.caBundle` (base64 of the CA PEM) on every webhook of
//!   every `ValidatingWebhookConfiguration` / `MutatingWebhookConfiguration` document of a
//!   multi-document YAML text (also inside `kind: List` items). Every other document is kept
//!   byte for byte; a patched document is re-serialized (its comments are lost).
//!
//! The `faultline-certs` binary is a thin CLI over these functions:
//!
//! ```text
//! faultline-certs generate --out DIR --dns NAME... [--ip IP...] [--days N] [--client-name CN]
//!                          [--client-org O]
//! faultline-certs key --out FILE            # and FILE.pub
//! faultline-certs ca-bundle --ca ca.crt FILE...
//! ```
//!
//! Errors are [`CertError`] values that name the file (and the YAML document) involved.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_yaml::Value;

/// Longest validity accepted for `--days` (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// File names written by [`write_bundle`].
pub const CA_CERT: &str = "ca.crt";
/// CA private key file name.
pub const CA_KEY: &str = "ca.key";
/// Serving certificate file name.
pub const TLS_CERT: &str = "tls.crt";
/// Serving key file name.
pub const TLS_KEY: &str = "tls.key";
/// Client certificate file name.
pub const CLIENT_CERT: &str = "client.crt";
/// Client key file name.
pub const CLIENT_KEY: &str = "client.key";

/// The organization of the CA and, unless told otherwise, of every leaf certificate.
pub const ORGANIZATION: &str = "Faultline";

/// Everything that can go wrong here; every variant names what it is about.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// `generate` needs at least one name for the serving certificate.
    #[error("the serving certificate needs at least one --dns name")]
    NoNames,
    /// A name that is not a DNS name (RFC 1123 host name, optionally with a leading `*.`).
    #[error("--dns {name:?} is not a DNS name: {reason}")]
    InvalidDnsName {
        /// The offending name.
        name: String,
        /// Why it is not one.
        reason: String,
    },
    /// `generate` into a directory that already holds a CA: replacing it would break every
    /// `caBundle` that trusts the old one.
    #[error(
        "{} already holds a CA ({CA_CERT}); a new one would break every caBundle that trusts it. \
         Pass --force to replace it, or choose another --out",
        dir.display()
    )]
    CaExists {
        /// The directory.
        dir: PathBuf,
    },
    /// `--days` out of range.
    #[error("--days must be between 1 and {MAX_DAYS}, got {0}")]
    Days(u32),
    /// rcgen failed to build a key or certificate.
    #[error("generating the {what}")]
    Generate {
        /// Which object ("CA certificate", "serving key", ...).
        what: &'static str,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file that should hold a PEM certificate does not.
    #[error("{}: not a PEM certificate (no \"-----BEGIN CERTIFICATE-----\")", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
    },
    /// A YAML document that does not parse.
    #[error("{}: document {doc}: {source}", path.display())]
    Yaml {
        /// The manifest file.
        path: PathBuf,
        /// 1-based document index in the file.
        doc: usize,
        /// The parser's reason.
        #[source]
        source: serde_yaml::Error,
    },
    /// A webhook configuration of an unexpected shape.
    #[error("{}: document {doc}: {field}: {reason}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based document index in the file.
        doc: usize,
        /// Path of the offending field, e.g. `webhooks[1].clientConfig`.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What [`generate`] makes certificates for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// DNS names of the serving certificate (the first is also its common name).
    pub dns: Vec<String>,
    /// IP addresses of the serving certificate.
    pub ips: Vec<IpAddr>,
    /// Validity in days, counted from now (all three certificates).
    pub days: u32,
    /// Common name of the client certificate.
    pub client_name: String,
    /// Organization of the client certificate (Kubernetes reads it as the user's group, e.g.
    /// `system:masters` for an API server admin).
    pub client_organization: String,
}

impl GenerateOptions {
    /// Options with the defaults of the CLI: 365 days, client name `faultline-controller`.
    pub fn new(dns: Vec<String>) -> Self {
        Self {
            dns,
            ips: Vec::new(),
            days: 365,
            client_name: "faultline-controller".to_owned(),
            client_organization: ORGANIZATION.to_owned(),
        }
    }
}

/// A CA and the two leaf certificates it signed, all PEM.
#[derive(Clone)]
pub struct Bundle {
    /// CA certificate.
    pub ca_cert: String,
    /// CA private key (PKCS#8).
    pub ca_key: String,
    /// Serving certificate.
    pub tls_cert: String,
    /// Serving private key (PKCS#8).
    pub tls_key: String,
    /// Client certificate.
    pub client_cert: String,
    /// Client private key (PKCS#8).
    pub client_key: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("ca_cert", &self.ca_cert)
            .field("tls_cert", &self.tls_cert)
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}

fn gen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Generate { what, source }
}

/// Makes a new CA, a serving certificate and a client certificate signed by it.
pub fn generate(opts: &GenerateOptions) -> Result<Bundle, CertError> {
    if opts.dns.is_empty() {
        return Err(CertError::NoNames);
    }
    if opts.days == 0 || opts.days > MAX_DAYS {
        return Err(CertError::Days(opts.days));
    }
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that lag behind the one that made the certificate.
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(i64::from(opts.days));

    // The CA.
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    // A distinct subject per CA (as kube's self-signed "<host>-ca@<time>"), so a verifier that
    // trusts an older CA never mistakes it for the issuer of a newer chain.
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("faultline-ca@{}", now.unix_timestamp_nanos()),
    );
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(gen_err("CA certificate"))?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    // The serving certificate.
    let mut sans = Vec::with_capacity(opts.dns.len() + opts.ips.len());
    for name in &opts.dns {
        dns_name(name)?;
        let ia5 =
            name.clone()
                .try_into()
                .map_err(|source: rcgen::Error| CertError::InvalidDnsName {
                    name: name.clone(),
                    reason: source.to_string(),
                })?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(opts.ips.iter().copied().map(SanType::IpAddress));
    let mut tls_params = leaf_params(&opts.dns[0], not_before, not_after);
    tls_params.subject_alt_names = sans;
    tls_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let tls_key = KeyPair::generate().map_err(gen_err("serving key"))?;
    let tls_cert = tls_params
        .signed_by(&tls_key, &issuer)
        .map_err(gen_err("serving certificate"))?;

    // The client certificate.
    let mut client_params = leaf_params(&opts.client_name, not_before, not_after);
    client_params.distinguished_name = rcgen::DistinguishedName::new();
    client_params
        .distinguished_name
        .push(DnType::CommonName, opts.client_name.as_str());
    client_params
        .distinguished_name
        .push(DnType::OrganizationName, opts.client_organization.as_str());
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().map_err(gen_err("client key"))?;
    let client_cert = client_params
        .signed_by(&client_key, &issuer)
        .map_err(gen_err("client certificate"))?;

    Ok(Bundle {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key_pem,
        tls_cert: tls_cert.pem(),
        tls_key: tls_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    })
}

fn leaf_params(
    common_name: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

/// A lone key pair, PEM: see [`generate_key`].
#[derive(Clone)]
pub struct LoneKey {
    /// The private key (PKCS#8).
    pub private_key: String,
    /// Its public key (SubjectPublicKeyInfo, `PUBLIC KEY`).
    pub public_key: String,
}

/// A new ECDSA P-256 key pair with no certificate: e.g. the key kube-apiserver signs
/// service-account tokens with (`--service-account-signing-key-file` takes the private key,
/// `--service-account-key-file` the public one).
pub fn generate_key() -> Result<LoneKey, CertError> {
    let key = KeyPair::generate().map_err(gen_err("private key"))?;
    Ok(LoneKey {
        private_key: key.serialize_pem(),
        public_key: key.public_key_pem(),
    })
}

/// Where `faultline-certs key --out FILE` writes the public key: `FILE.pub`.
pub fn public_key_path(private_key: &Path) -> PathBuf {
    let mut name = private_key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes the bundle into `dir` (created if missing). Keys get mode 0600, certificates 0644;
/// every file is written under a temporary name and renamed into place.
pub fn write_bundle(bundle: &Bundle, dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for (name, text, secret) in [
        (CA_CERT, &bundle.ca_cert, false),
        (CA_KEY, &bundle.ca_key, true),
        (TLS_CERT, &bundle.tls_cert, false),
        (TLS_KEY, &bundle.tls_key, true),
        (CLIENT_CERT, &bundle.client_cert, false),
        (CLIENT_KEY, &bundle.client_key, true),
    ] {
        write_atomic(
            &dir.join(name),
            text.as_bytes(),
            if secret { 0o600 } else { 0o644 },
        )?;
    }
    Ok(())
}

/// Checks that `name` is a DNS name as a certificate SAN needs it: RFC 1123 labels (letters,
/// digits, `-`, not at a label's ends, 1–63 characters), 253 characters at most, an optional
/// leading `*.` wildcard. An IP address is refused here: it belongs in `--ip`.
pub fn dns_name(name: &str) -> Result<(), CertError> {
    dns_name_reason(name).map_err(|reason| CertError::InvalidDnsName {
        name: name.to_owned(),
        reason,
    })
}

fn dns_name_reason(name: &str) -> Result<(), String> {
    if name.parse::<IpAddr>().is_ok() {
        return Err("an IP address goes in --ip".to_owned());
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.is_empty() {
        return Err("empty".to_owned());
    }
    if name.len() > 253 {
        return Err(format!("{} characters, at most 253", name.len()));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("an empty label (two dots, or a dot at an end)".to_owned());
        }
        if label.len() > 63 {
            return Err(format!(
                "label {label:?} has {} characters, at most 63",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "{c:?} in label {label:?}: only letters, digits and '-' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// Refuses a directory that already holds a CA certificate or key (see [`CertError::CaExists`]).
pub fn refuse_existing_ca(dir: &Path) -> Result<(), CertError> {
    if dir.join(CA_CERT).exists() || dir.join(CA_KEY).exists() {
        return Err(CertError::CaExists {
            dir: dir.to_owned(),
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| CertError::Io { path: p, source }
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(mode);
    let mut file = opts.open(&tmp).map_err(io(&tmp))?;
    // `mode` only applies to new files: make a leftover temporary file private too.
    #[cfg(unix)]
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io(&tmp))?;
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))
}

/// Reads a CA certificate file and checks that it holds a PEM certificate.
pub fn read_ca(path: &Path) -> Result<String, CertError> {
    let text = fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(CertError::NotPem {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// The `caBundle` value for a CA PEM: standard base64 of the PEM text.
pub fn ca_bundle_value(ca_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes())
}

/// Result of [`set_ca_bundle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    /// The new text of the manifest.
    pub text: String,
    /// How many webhooks got the caBundle.
    pub webhooks: usize,
}

const WEBHOOK_KINDS: [&str; 2] = [
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// Sets `clientConfig.caBundle` on every webhook of every webhook configuration in the
/// multi-document YAML `text`. `origin` only names the file in errors.
pub fn set_ca_bundle(text: &str, ca_pem: &str, origin: &Path) -> Result<Patched, CertError> {
    let bundle = Value::String(ca_bundle_value(ca_pem));
    let mut out = String::with_capacity(text.len() + 2048);
    let mut webhooks = 0;
    for (index, doc) in split_documents(text).into_iter().enumerate() {
        out.push_str(doc.separator);
        let number = index + 1;
        if doc.body.trim().is_empty() {
            out.push_str(doc.body);
            continue;
        }
        let mut value: Value =
            serde_yaml::from_str(doc.body).map_err(|source| CertError::Yaml {
                path: origin.to_owned(),
                doc: number,
                source,
            })?;
        let before = webhooks;
        patch_value(&mut value, &bundle, &mut webhooks, "", origin, number)?;
        if webhooks == before && !is_webhook_config(&value) {
            // Not ours: keep it byte for byte.
            out.push_str(doc.body);
        } else {
            let yaml = serde_yaml::to_string(&value).map_err(|source| CertError::Yaml {
                path: origin.to_owned(),
                doc: number,
                source,
            })?;
            out.push_str(&yaml);
        }
    }
    Ok(Patched {
        text: out,
        webhooks,
    })
}

fn is_webhook_config(value: &Value) -> bool {
    value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| WEBHOOK_KINDS.contains(&k))
}

fn patch_value(
    value: &mut Value,
    bundle: &Value,
    count: &mut usize,
    prefix: &str,
    origin: &Path,
    doc: usize,
) -> Result<(), CertError> {
    let bad = |field: String, reason: &'static str| CertError::Manifest {
        path: origin.to_owned(),
        doc,
        field,
        reason,
    };
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == "List" {
        if let Some(Value::Sequence(items)) = value.get_mut("items") {
            for (i, item) in items.iter_mut().enumerate() {
                patch_value(
                    item,
                    bundle,
                    count,
                    &format!("{prefix}items[{i}]."),
                    origin,
                    doc,
                )?;
            }
        }
        return Ok(());
    }
    if !WEBHOOK_KINDS.contains(&kind) {
        return Ok(());
    }
    let Some(webhooks) = value.get_mut("webhooks") else {
        return Ok(());
    };
    let Value::Sequence(webhooks) = webhooks else {
        return Err(bad(format!("{prefix}webhooks"), "must be a list"));
    };
    for (i, webhook) in webhooks.iter_mut().enumerate() {
        let Value::Mapping(webhook) = webhook else {
            return Err(bad(format!("{prefix}webhooks[{i}]"), "must be a mapping"));
        };
        let config = webhook
            .entry(Value::String("clientConfig".to_owned()))
            .or_insert_with(|| Value::Mapping(Default::default()));
        let Value::Mapping(config) = config else {
            return Err(bad(
                format!("{prefix}webhooks[{i}].clientConfig"),
                "must be a mapping",
            ));
        };
        config.insert(Value::String("caBundle".to_owned()), bundle.clone());
        *count += 1;
    }
    Ok(())
}

struct Document<'a> {
    /// The `---` line (with its newline) that opened this document, or "" for the first.
    separator: &'a str,
    body: &'a str,
}

/// Splits YAML text at `---` lines, keeping every byte in `separator` or `body`.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut separator = "";
    let mut body_start = 0;
    let mut pos = 0;
    while pos < text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        let line = text[pos..end].trim_end_matches(['\n', '\r']);
        let is_separator = line == "---"
            || line.starts_with("--- ")
            || line.starts_with("---\t")
            || line.starts_with("--- #");
        if is_separator {
            docs.push(Document {
                separator,
                body: &text[body_start..pos],
            });
            separator = &text[pos..end];
            body_start = end;
        }
        pos = end;
    }
    docs.push(Document {
        separator,
        body: &text[body_start..],
    });
    docs
}

/// Reads `ca` and every manifest file, sets the caBundle and writes each file back (only when
/// its text changed). Returns the number of webhooks patched per file.
pub fn ca_bundle_files(ca: &Path, files: &[PathBuf]) -> Result<Vec<(PathBuf, usize)>, CertError> {
    let ca_pem = read_ca(ca)?;
    let mut result = Vec::with_capacity(files.len());
    for file in files {
        let text = fs::read_to_string(file).map_err(|source| CertError::Io {
            path: file.clone(),
            source,
        })?;
        let patched = set_ca_bundle(&text, &ca_pem, file)?;
        if patched.text != text {
            let mode = file_mode(file);
            write_atomic(file, patched.text.as_bytes(), mode)?;
        }
        result.push((file.clone(), patched.webhooks));
    }
    Ok(result)
}

fn file_mode(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        0o644
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_byte() {
        let text = "a: 1\n---\nb: 2\n--- # c\nc: 3\n---\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 4);
        let joined: String = docs.iter().flat_map(|d| [d.separator, d.body]).collect();
        assert_eq!(joined, text);
        assert_eq!(docs[1].body, "b: 2\n");
        assert_eq!(docs[2].separator, "--- # c\n");
    }

    #[test]
    fn rejects_empty_names_and_bad_days() {
        assert!(matches!(
            generate(&GenerateOptions::new(vec![])),
            Err(CertError::NoNames)
        ));
        let mut opts = GenerateOptions::new(vec!["a.b".into()]);
        opts.days = 0;
        assert!(matches!(generate(&opts), Err(CertError::Days(0))));
    }

    fn der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("PEM body is base64")
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn client_organization_is_the_client_subject_organization() {
        let mut opts = GenerateOptions::new(vec!["localhost".into()]);
        let b = generate(&opts).expect("generate");
        assert!(!contains(&der(&b.client_cert), "system:masters"));
        opts.client_name = "faultline-admin".into();
        opts.client_organization = "system:masters".into();
        let b = generate(&opts).expect("generate");
        let client = der(&b.client_cert);
        assert!(contains(&client, "system:masters"));
        assert!(contains(&client, "faultline-admin"));
        assert!(!contains(&der(&b.tls_cert), "system:masters"));
    }

    #[test]
    fn a_lone_key_is_a_new_pkcs8_key() {
        let a = generate_key().expect("key");
        let b = generate_key().expect("key");
        assert!(a.private_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(a.public_key.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_ne!(a.private_key, b.private_key);
        let parsed = KeyPair::from_pem(&a.private_key).expect("the key parses back");
        assert_eq!(parsed.public_key_pem(), a.public_key);
    }

    #[test]
    fn bad_webhooks_field_names_the_field() {
        let text = "kind: MutatingWebhookConfiguration\nwebhooks:\n- name: a\n  clientConfig: 3\n";
        let err = set_ca_bundle(text, "pem", Path::new("m.yaml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.yaml: document 1: webhooks[0].clientConfig: must be a mapping"
        );
    }
}
