//! The shape of a chaos spec — field names, JSON types, enumerations, required fields — taken
//! from the very CRD schema the API server checks ([`crate::crds()`]), so the in-process reader
//! and the server agree on what a well-formed object is.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{Map, Value};

/// What a JSON value must look like.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Shape {
    /// A string; one of `values` when that is not empty.
    String {
        values: Vec<String>,
    },
    /// A whole number within the range of the Rust type behind it.
    Integer {
        min: i128,
        max: i128,
    },
    Number,
    Bool,
    Object(Object),
    /// An object with any keys, each value of this shape.
    Map(Box<Shape>),
    Array(Box<Shape>),
    /// Not checked here (metadata, status).
    Any,
}

/// An object with known fields.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Object {
    pub fields: BTreeMap<String, Field>,
}

/// A field of an object.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Field {
    pub shape: Shape,
    pub required: bool,
    /// Why it is required, for the message: its values or its description.
    pub hint: String,
}

/// The integer range of an OpenAPI `format` (as schemars writes it for the Rust type).
fn integer_range(format: Option<&str>) -> (i128, i128) {
    match format {
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64" | "uint") => (0, u64::MAX.into()),
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    }
}

/// The first sentence of a description, as a hint: `Which pods: namespaces, …` → `which pods:
/// namespaces, …` (a sentence ends at a period before a capital letter, so `e.g. x` does not).
fn sentence(description: Option<&str>) -> String {
    let text = description.unwrap_or_default().trim().replace('\n', " ");
    let bytes = text.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| {
            bytes[i] == b'.'
                && bytes.get(i + 1) == Some(&b' ')
                && bytes.get(i + 2).is_some_and(u8::is_ascii_uppercase)
        })
        .unwrap_or(text.len());
    let first = text[..end].trim_end_matches('.');
    let mut chars = first.chars();
    match (chars.next(), chars.next()) {
        // Lower-case a capital that starts a plain word (`The` → `the`, but not `Go`'s `G`
        // in `Go duration`... which is two letters, so only when the next one is lower case
        // and the word is longer than two letters).
        (Some(c), Some(d))
            if c.is_ascii_uppercase() && d.is_ascii_lowercase() && !first.starts_with("Go ") =>
        {
            format!("{}{}", c.to_ascii_lowercase(), &first[1..])
        }
        _ => first.to_owned(),
    }
}

impl Shape {
    /// The shape a schema describes.
    pub(super) fn of(schema: &JSONSchemaProps) -> Shape {
        match schema.type_.as_deref() {
            Some("string") => Shape::String {
                values: schema
                    .enum_
                    .iter()
                    .flatten()
                    .filter_map(|v| v.0.as_str().map(str::to_owned))
                    .collect(),
            },
            Some("integer") => {
                let (min, max) = integer_range(schema.format.as_deref());
                Shape::Integer { min, max }
            }
            Some("number") => Shape::Number,
            Some("boolean") => Shape::Bool,
            Some("array") => match &schema.items {
                Some(JSONSchemaPropsOrArray::Schema(items)) => {
                    Shape::Array(Box::new(Shape::of(items)))
                }
                _ => Shape::Array(Box::new(Shape::Any)),
            },
            Some("object") => {
                if let Some(properties) = &schema.properties {
                    let required = schema.required.clone().unwrap_or_default();
                    let fields = properties
                        .iter()
                        .map(|(name, field)| {
                            let shape = Shape::of(field);
                            let hint = match &shape {
                                Shape::String { values } if !values.is_empty() => {
                                    format!("one of {}", values.join(", "))
                                }
                                _ => sentence(field.description.as_deref()),
                            };
                            let field = Field {
                                shape,
                                required: required.contains(name),
                                hint,
                            };
                            (name.clone(), field)
                        })
                        .collect();
                    Shape::Object(Object { fields })
                } else {
                    match &schema.additional_properties {
                        Some(JSONSchemaPropsOrBool::Schema(values)) => {
                            Shape::Map(Box::new(Shape::of(values)))
                        }
                        _ => Shape::Any,
                    }
                }
            }
            _ => Shape::Any,
        }
    }

    /// "a string", "a whole number", … for "must be X, not Y".
    pub(super) fn expected(&self) -> &'static str {
        match self {
            Shape::String { .. } => "a string",
            Shape::Integer { .. } => "a whole number",
            Shape::Number => "a number",
            Shape::Bool => "true or false",
            Shape::Object(_) | Shape::Map(_) => "an object",
            Shape::Array(_) => "a list",
            Shape::Any => "a value",
        }
    }

    /// A value of this shape that deserializes, standing in for one that could not be read.
    /// Its path is marked unreadable, so nothing judges it.
    pub(super) fn placeholder(&self) -> Value {
        match self {
            Shape::String { values } => Value::from(values.first().cloned().unwrap_or_default()),
            Shape::Integer { min, max } => {
                Value::from(i64::try_from((*min).max(0).min(*max)).unwrap_or(0))
            }
            Shape::Number => Value::from(0),
            Shape::Bool => Value::Bool(false),
            Shape::Object(object) => Value::Object(
                object
                    .fields
                    .iter()
                    .filter(|(_, f)| f.required)
                    .map(|(name, f)| (name.clone(), f.shape.placeholder()))
                    .collect::<Map<String, Value>>(),
            ),
            Shape::Map(_) | Shape::Any => Value::Object(Map::new()),
            Shape::Array(_) => Value::Array(Vec::new()),
        }
    }
}

/// The spec shape of each kind, from its CRD.
pub(super) fn spec_shape(kind: &str) -> Option<&'static Object> {
    static SHAPES: OnceLock<BTreeMap<String, Object>> = OnceLock::new();
    SHAPES
        .get_or_init(|| {
            crate::crds()
                .into_iter()
                .filter_map(|crd| {
                    let kind = crd.spec.names.kind.clone();
                    let schema = crd
                        .spec
                        .versions
                        .first()?
                        .schema
                        .as_ref()?
                        .open_api_v3_schema
                        .as_ref()?
                        .properties
                        .as_ref()?
                        .get("spec")?
                        .clone();
                    match Shape::of(&schema) {
                        Shape::Object(object) => Some((kind, object)),
                        _ => None,
                    }
                })
                .collect()
        })
        .get(kind)
}

/// Optimal string alignment distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The known field closest to `name`, if it is close (same letters in another case, or at
/// most two edits away for names longer than four letters).
pub(super) fn suggestion<'a>(
    name: &str,
    known: impl Iterator<Item = &'a String>,
) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .map(|k| {
            let d = if k.to_ascii_lowercase() == lower {
                0
            } else {
                distance(&lower, &k.to_ascii_lowercase())
            };
            (d, k.as_str())
        })
        .filter(|(d, k)| *d == 0 || (*d <= 2 && k.len() > 4 && name.len() > 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_first_sentences() {
        assert_eq!(
            sentence(Some("The delay to add, a Go duration, e.g. `100ms`.")),
            "the delay to add, a Go duration, e.g. `100ms`"
        );
        assert_eq!(sentence(Some("Go duration. More text.")), "Go duration");
        assert_eq!(sentence(Some("Percent 0..=100.")), "percent 0..=100");
        assert_eq!(sentence(None), "");
    }

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(distance("actoin", "action"), 1);
        assert_eq!(distance("latnecy", "latency"), 1);
        assert_eq!(distance("abc", "abc"), 0);
        let known = [
            "action".to_string(),
            "mode".into(),
            "selector".into(),
            "volumePath".into(),
        ];
        assert_eq!(suggestion("actoin", known.iter()), Some("action"));
        assert_eq!(suggestion("volumepath", known.iter()), Some("volumePath"));
        assert_eq!(suggestion("selectr", known.iter()), Some("selector"));
        assert_eq!(
            suggestion("node", known.iter()),
            None,
            "short names are not guessed"
        );
        assert_eq!(suggestion("remoteCluster", known.iter()), None);
    }

    #[test]
    fn every_kind_has_a_spec_shape() {
        for kind in crate::KINDS {
            let spec = spec_shape(kind).expect("spec shape");
            assert!(spec.fields["mode"].required, "{kind}");
            assert!(spec.fields["selector"].required, "{kind}");
            assert!(spec.fields.contains_key("remoteCluster"), "{kind}");
        }
        let network = spec_shape("NetworkChaos").expect("network");
        let Shape::Object(delay) = &network.fields["delay"].shape else {
            panic!("delay is an object")
        };
        assert!(delay.fields["latency"].required);
        let Shape::Object(bandwidth) = &network.fields["bandwidth"].shape else {
            panic!("bandwidth is an object")
        };
        assert_eq!(
            bandwidth.fields["peakrate"].shape,
            Shape::Integer {
                min: 0,
                max: u64::MAX.into()
            }
        );
    }
}
