//! Decoding `admission.k8s.io/v1` AdmissionReview bodies and encoding the answers.
//!
//! The body is parsed once: the envelope (uid, kind, operation, userInfo, ...) becomes a kube
//! [`AdmissionRequest`], while `object` / `oldObject` are kept as raw JSON text
//! ([`RawValue`]), so each endpoint deserializes them once, straight into the type it needs
//! (a typed `Pod`, a chaos object), with errors that carry the JSON path of the bad field.
//!
//! Everything that is not a v1 AdmissionReview with a `request` is a [`DecodeError`], answered
//! with HTTP 400 and a JSON error body; once the request (and so its uid) is known, every
//! problem becomes an admission denial instead.

use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, META_API_VERSION_V1, META_KIND, Operation,
};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// A decoded AdmissionReview request.
#[derive(Debug, Clone)]
pub struct Review {
    /// The request envelope; its `object` and `old_object` are always `None`: see below.
    pub request: AdmissionRequest<DynamicObject>,
    /// `request.object` as raw JSON (absent or `null` → `None`).
    pub object: Option<Box<RawValue>>,
    /// `request.oldObject` as raw JSON (absent or `null` → `None`).
    pub old_object: Option<Box<RawValue>>,
}

impl Review {
    /// `request.object` parsed as a JSON value.
    pub fn object_value(&self) -> Option<Value> {
        self.object
            .as_deref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }
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

fn describe(raw: Option<&RawValue>) -> String {
    match raw {
        None => "nothing".to_owned(),
        Some(v) => {
            let mut s = v.get().to_owned();
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

/// Whether `raw` is the JSON string `want` (fast path on the common spelling).
fn is_string(raw: Option<&RawValue>, want: &str) -> bool {
    let Some(raw) = raw else {
        return false;
    };
    let text = raw.get();
    if text.len() == want.len() + 2 && text.starts_with('"') && &text[1..text.len() - 1] == want {
        return true;
    }
    serde_json::from_str::<&str>(text).is_ok_and(|s| s == want)
        || serde_json::from_str::<String>(text).is_ok_and(|s| s == want)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
}

/// `AdmissionRequest` with the objects left raw; field rules as in kube-core.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: k8s_openapi::api::authentication::v1::UserInfo,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: Option<k8s_openapi::apimachinery::pkg::runtime::RawExtension>,
}

/// The whole review in one pass, for the common case of a well-formed body.
#[derive(Deserialize)]
struct FastEnvelope<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    #[serde(borrow)]
    request: WireRequest<'a>,
}

fn not_null(raw: Option<&RawValue>) -> Option<Box<RawValue>> {
    raw.filter(|r| r.get() != "null").map(ToOwned::to_owned)
}

/// Decodes an AdmissionReview body.
pub fn decode(body: &[u8]) -> Result<Review, DecodeError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => DecodeError::NotObject,
                Err(e) => DecodeError::NotJson(e),
            },
        );
    }
    // One typed pass for a well-formed review; anything else takes the careful path below,
    // which finds the first problem and names it.
    if let Ok(fast) = serde_json::from_slice::<FastEnvelope<'_>>(body)
        && fast.api_version == META_API_VERSION_V1
        && fast.kind == META_KIND
    {
        return Ok(review_from(fast.request));
    }
    decode_carefully(body)
}

/// [`decode`] without its one-pass fast path: checks each part in turn and names the first
/// problem. Same results as [`decode`] (the fuzz tests compare them).
pub fn decode_carefully(body: &[u8]) -> Result<Review, DecodeError> {
    let envelope: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(e) => e,
        // An object that does not fit (a duplicated key, say) or invalid JSON?
        Err(e) if e.is_data() => return Err(DecodeError::NotObject),
        Err(e) => return Err(DecodeError::NotJson(e)),
    };
    if !is_string(envelope.api_version, META_API_VERSION_V1) {
        return Err(DecodeError::ApiVersion(describe(envelope.api_version)));
    }
    if !is_string(envelope.kind, META_KIND) {
        return Err(DecodeError::Kind(describe(envelope.kind)));
    }
    let request = match envelope.request {
        None => return Err(DecodeError::NoRequest),
        Some(r) if r.get() == "null" => return Err(DecodeError::NoRequest),
        Some(r) if !r.get().starts_with('{') => {
            return Err(DecodeError::RequestNotObject(describe(Some(r))));
        }
        Some(r) => r,
    };
    let mut de = serde_json::Deserializer::from_str(request.get());
    let wire: WireRequest<'_> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError::Request {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    Ok(review_from(wire))
}

fn review_from(wire: WireRequest<'_>) -> Review {
    let request = AdmissionRequest {
        types: TypeMeta {
            api_version: META_API_VERSION_V1.to_owned(),
            kind: META_KIND.to_owned(),
        },
        uid: wire.uid,
        kind: wire.kind,
        resource: wire.resource,
        sub_resource: wire.sub_resource,
        request_kind: wire.request_kind,
        request_resource: wire.request_resource,
        request_sub_resource: wire.request_sub_resource,
        name: wire.name,
        namespace: wire.namespace,
        operation: wire.operation,
        user_info: wire.user_info,
        object: None,
        old_object: None,
        dry_run: wire.dry_run,
        options: wire.options,
    };
    Review {
        request,
        object: not_null(wire.object),
        old_object: not_null(wire.old_object),
    }
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
    fn fast_and_careful_paths_agree() {
        let fast = decode(POD_REVIEW.as_bytes()).expect("decode");
        let careful = decode_carefully(POD_REVIEW.as_bytes()).expect("decode");
        assert_eq!(
            serde_json::to_value(&fast.request).expect("json"),
            serde_json::to_value(&careful.request).expect("json")
        );
        assert_eq!(
            fast.object.as_ref().map(|o| o.get()),
            careful.object.as_ref().map(|o| o.get())
        );
        // An escaped spelling of the apiVersion is still a v1 review.
        let escaped = POD_REVIEW.replace("\"admission.k8s.io/v1\"", "\"admission.k8s.io\\/v1\"");
        assert!(decode(escaped.as_bytes()).is_ok());
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
