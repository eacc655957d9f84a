//! The injection template (`--injection FILE`): image, mode, RPC port and resources of the
//! sidecar, with defaults for every field and errors that name the file and the field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How apps wait for the FUSE mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Native sidecar: init container with `restartPolicy: Always` and a startupProbe.
    #[default]
    Native,
    /// First app container with a blocking postStart hook (clusters without native sidecars).
    Legacy,
}

impl Mode {
    /// `native` / `legacy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Legacy => "legacy",
        }
    }
}

/// How the sidecar serves the app's reads and writes (`ioMode`, passed as `--io-mode`).
pub use faultline_api::iomode::IoMode;

/// The injection template (`--injection FILE`; absent = [`Template::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Template {
    /// Sidecar image.
    pub image: String,
    /// Its pull policy.
    pub image_pull_policy: String,
    /// native or legacy.
    pub mode: Mode,
    /// JSON-RPC port of the sidecar (on 127.0.0.1): one per pod, whatever the number of volumes.
    pub rpc_port: u16,
    /// Sidecar resources.
    pub resources: ResourceRequirements,
    /// Extra environment of the sidecar.
    pub env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    /// `exact` (default) or `fast`; see [`IoMode`] and docs/sidecar.md. Left out of the
    /// canonical JSON when `exact`, so templates that do not set it keep their hash.
    #[serde(skip_serializing_if = "IoMode::is_exact")]
    pub io_mode: IoMode,
}

impl Default for Template {
    fn default() -> Self {
        let q = |s: &str| Quantity(s.to_owned());
        Template {
            image: "faultline/sidecar:latest".to_owned(),
            image_pull_policy: "IfNotPresent".to_owned(),
            mode: Mode::Native,
            rpc_port: 65533,
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), q("10m")),
                    ("memory".to_owned(), q("32Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_owned(), q("256Mi"))])),
                ..Default::default()
            },
            env: Vec::new(),
            io_mode: IoMode::Exact,
        }
    }
}

/// A template file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Bad YAML or an unknown field.
    #[error("{path}: {field}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// JSON path of the bad field.
        field: String,
        /// Why.
        message: String,
    },
    /// A value out of range.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field.
        field: &'static str,
        /// Why.
        message: &'static str,
    },
}

impl Template {
    /// Parses a template file's text; `path` names it in errors.
    pub fn from_yaml(text: &str, path: &str) -> Result<Self, TemplateError> {
        let template: Template = if text.trim().is_empty() {
            Template::default()
        } else {
            let de = serde_yaml::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let (field, message) = crate::yaml_error(&e);
                TemplateError::Parse {
                    path: path.to_owned(),
                    field,
                    message,
                }
            })?
        };
        let invalid = |field, message| TemplateError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        if template.image.trim().is_empty() {
            return Err(invalid("image", "must not be empty"));
        }
        if template.rpc_port < 1024 {
            return Err(invalid("rpcPort", "must be between 1024 and 65535"));
        }
        if !matches!(
            template.image_pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err(invalid(
                "imagePullPolicy",
                "must be Always, IfNotPresent or Never",
            ));
        }
        Ok(template)
    }

    /// Reads and parses a template file.
    pub fn load(path: &std::path::Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// `sha256:` + 16 hex digits of the template's canonical JSON.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        format!("sha256:{}", hex(&digest[..8]))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_defaults_and_errors() {
        let t = Template::from_yaml("", "t.yaml").expect("empty = defaults");
        assert_eq!(t, Template::default());
        let t = Template::from_yaml("mode: legacy\nrpcPort: 40000\n", "t.yaml").expect("parse");
        assert_eq!(
            (t.mode, t.rpc_port, t.image.as_str()),
            (Mode::Legacy, 40000, "faultline/sidecar:latest")
        );
        let err = Template::from_yaml("mode: sideways\n", "t.yaml").unwrap_err();
        assert!(
            err.to_string().starts_with("t.yaml: mode: unknown variant"),
            "{err}"
        );
        let err = Template::from_yaml("imagee: x\n", "t.yaml").unwrap_err();
        assert!(err.to_string().contains("unknown field `imagee`"), "{err}");
        let err = Template::from_yaml("rpcPort: 80\n", "t.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yaml: rpcPort: must be between 1024 and 65535"
        );
        assert_ne!(Template::default().hash(), t.hash());
    }

    #[test]
    fn io_mode_defaults_to_exact_and_changes_the_hash_only_when_set() {
        let exact = Template::from_yaml("ioMode: exact\n", "t.yaml").expect("parse");
        assert_eq!(exact.io_mode, IoMode::Exact);
        assert_eq!(exact.hash(), Template::default().hash());
        let fast = Template::from_yaml("ioMode: fast\n", "t.yaml").expect("parse");
        assert_eq!(fast.io_mode, IoMode::Fast);
        assert_ne!(fast.hash(), Template::default().hash());
        let err = Template::from_yaml("ioMode: turbo\n", "t.yaml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.yaml: ioMode: unknown variant `turbo`"),
            "{err}"
        );
    }
}
