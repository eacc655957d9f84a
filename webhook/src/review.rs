//! Decoding `admission.k8s.io/v1` AdmissionReview bodies and encoding the answers.
//!
//! The body is parsed once into a [`serde_json::Value`]; the request envelope (uid, kind,
//! operation, userInfo, ...) becomes a kube [`AdmissionRequest`] and the `object` / `oldObject`
//! stay JSON values, so each endpoint deserializes them once into the type it needs (a typed
//! `Pod`, a chaos object) with errors that carry the JSON path of the bad field.
//!
//! Everything that is not a v1 AdmissionReview with a `request` is a [`DecodeError`], answered
//! with HTTP 400 and a JSON error body; once the request (and so its uid) is known, every
//! problem becomes an admission denial instead.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, META_API_VERSION_V1, META_KIND};
use kube::core::{DynamicObject, TypeMeta};
use serde_json::Value;

/// A decoded AdmissionReview request.
#[derive(Debug, Clone)]
pub struct Review {
    /// The request envelope; its `object` and `old_object` are always `None`: see below.
    pub request: AdmissionRequest<DynamicObject>,
    /// `request.object` (absent or `null` → `None`).
    pub object: Option<Value>,
    /// `request.oldObject` (absent or `null` → `None`).
    pub old_object: Option<Value>,
}

/// Why a body is not an AdmissionReview we can answer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all, or truncated.
    #[error("body is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("body is not a JSON object")]
    NotObject,
    /// Wrong `apiVersion`.
    #[error("apiVersion must be \"{META_API_VERSION_V1}\", got {0}")]
    ApiVersion(String),
    /// Wrong `kind`.
    #[error("kind must be \"{META_KIND}\", got {0}")]
    Kind(String),
    /// No `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// `request` is not an object.
    #[error("request must be an object, got {0}")]
    RequestNotObject(String),
    /// A field of the request envelope is malformed.
    #[error("request.{path}: {message}")]
    Request {
        /// JSON path inside `request`.
        path: String,
        /// serde's reason.
        message: String,
    },
}

fn describe(value: Option<&Value>) -> String {
    match value {
        None => "nothing".to_owned(),
        Some(v) => {
            let mut s = v.to_string();
            if s.len() > 80 {
                let mut cut = 77;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push_str("...");
            }
            s
        }
    }
}

/// Decodes an AdmissionReview body.
pub fn decode(body: &[u8]) -> Result<Review, DecodeError> {
    let value: Value = serde_json::from_slice(body).map_err(DecodeError::NotJson)?;
    let Value::Object(mut review) = value else {
        return Err(DecodeError::NotObject);
    };
    match review.get("apiVersion") {
        Some(Value::String(v)) if v == META_API_VERSION_V1 => {}
        other => return Err(DecodeError::ApiVersion(describe(other))),
    }
    match review.get("kind") {
        Some(Value::String(k)) if k == META_KIND => {}
        other => return Err(DecodeError::Kind(describe(other))),
    }
    let mut request = match review.remove("request") {
        Some(Value::Object(request)) => request,
        None | Some(Value::Null) => return Err(DecodeError::NoRequest),
        Some(other) => return Err(DecodeError::RequestNotObject(describe(Some(&other)))),
    };
    let object = request.remove("object").filter(|v| !v.is_null());
    let old_object = request.remove("oldObject").filter(|v| !v.is_null());
    let mut request: AdmissionRequest<DynamicObject> =
        serde_path_to_error::deserialize(Value::Object(request)).map_err(|e| {
            DecodeError::Request {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            }
        })?;
    request.types = TypeMeta {
        api_version: META_API_VERSION_V1.to_owned(),
        kind: META_KIND.to_owned(),
    };
    Ok(Review {
        request,
        object,
        old_object,
    })
}

/// The wire form of the answer. kube's `AdmissionResponse` serializes `patch` (a `Vec<u8>`) as
/// an array of numbers; Go's `[]byte` is canonically a base64 string, which is what this writes.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: WireResponse<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<kube::core::Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    audit_annotations: &'a std::collections::HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

/// A denial's status: `Failure`, code 403 unless the handler chose one.
fn denial_status(result: &kube::core::Status) -> kube::core::Status {
    let mut status = result.clone();
    status.status = Some(kube::core::response::StatusSummary::Failure);
    if status.code == 0 {
        status.code = 403;
    }
    status
}

/// The JSON body answering with `response`.
pub fn encode(response: AdmissionResponse) -> Vec<u8> {
    use base64::Engine;
    let wire = WireReview {
        api_version: META_API_VERSION_V1,
        kind: META_KIND,
        response: WireResponse {
            uid: &response.uid,
            allowed: response.allowed,
            // An allowed answer needs no status (kube-apiserver ignores it).
            status: (!response.allowed).then(|| denial_status(&response.result)),
            patch: response
                .patch
                .as_deref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            patch_type: response.patch.as_ref().map(|_| "JSONPatch"),
            audit_annotations: &response.audit_annotations,
            warnings: response.warnings.as_ref(),
        },
    };
    // Serializing these plain structs cannot fail; keep a valid body even if it ever did.
    serde_json::to_vec(&wire).unwrap_or_else(|e| {
        serde_json::to_vec(&serde_json::json!({ "error": format!("encoding the response: {e}") }))
            .unwrap_or_default()
    })
}

/// The JSON body of an HTTP 400 answer.
pub fn error_body(error: &DecodeError) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": error.to_string() })).unwrap_or_default()
}

/// `group/version, Kind` of the request, for messages and metrics (`chaos.faultline.dev/PodChaos`).
pub fn kind_label(review: &Review) -> String {
    let k = &review.request.kind;
    if k.group.is_empty() {
        k.kind.clone()
    } else {
        format!("{}/{}", k.group, k.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const POD_REVIEW: &str = include_str!("../tests/fixtures/review-pod.json");

    #[test]
    fn decodes_a_real_review() {
        let review = decode(POD_REVIEW.as_bytes()).expect("decode");
        assert_eq!(review.request.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(review.request.kind.kind, "Pod");
        assert_eq!(
            review.request.user_info.username.as_deref(),
            Some("kubernetes-admin")
        );
        assert!(review.object.is_some());
        assert!(review.old_object.is_none());
        assert!(review.request.object.is_none());
    }

    #[test]
    fn rejects_what_is_not_a_review() {
        assert!(matches!(decode(b"nope"), Err(DecodeError::NotJson(_))));
        assert!(matches!(
            decode(&POD_REVIEW.as_bytes()[..100]),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(decode(b"[1]"), Err(DecodeError::NotObject)));
        let wrong = POD_REVIEW.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        assert_eq!(
            decode(wrong.as_bytes()).unwrap_err().to_string(),
            "apiVersion must be \"admission.k8s.io/v1\", got \"admission.k8s.io/v1beta1\""
        );
        let wrong = POD_REVIEW.replace("\"kind\": \"AdmissionReview\"", "\"kind\": \"Pod\"");
        assert!(matches!(
            decode(wrong.as_bytes()),
            Err(DecodeError::Kind(_))
        ));
        let none = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert!(matches!(
            decode(none.as_bytes()),
            Err(DecodeError::NoRequest)
        ));
        let bad = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"EXPLODE","userInfo":{}}}"#;
        let err = decode(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("request.operation: "), "{err}");
    }
}
