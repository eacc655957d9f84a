//! A reader of JSON values that collects every problem instead of stopping at the first.

use serde_json::{Map, Value};

use super::problem::{FieldError, Problem};
use crate::validate::{Rule, child};

/// How a JSON value looks, for "must be X, not Y".
pub(super) fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 40 => "a long string".into(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A field's value; `null` counts as absent, as it does for serde's `Option`.
pub(super) fn get<'v>(m: &'v Map<String, Value>, field: &str) -> Option<&'v Value> {
    m.get(field).filter(|v| !v.is_null())
}

/// Collects every problem while reading a value.
#[derive(Debug, Default)]
pub struct Reader {
    pub(super) errors: Vec<FieldError>,
}

impl Reader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, path: impl Into<String>, problem: impl Into<Problem>) {
        self.errors.push(FieldError::new(path, problem));
    }

    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    pub fn wrong(&mut self, path: &str, expected: &'static str, value: &Value) {
        self.push(
            path,
            Problem::WrongType {
                expected,
                found: found(value),
            },
        );
    }

    /// `value` as an object with only `accepted` fields; every other field is reported.
    pub fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        expected: &'static str,
        accepted: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(m) = value else {
            self.wrong(path, expected, value);
            return None;
        };
        for key in m.keys().filter(|k| !accepted.contains(&k.as_str())) {
            let accepted = if accepted.is_empty() {
                "none".to_string()
            } else {
                accepted.join(", ")
            };
            self.push(child(path, key), Problem::UnknownField { accepted });
        }
        Some(m)
    }

    /// An optional string field.
    pub fn string(&mut self, m: &Map<String, Value>, path: &str, field: &str) -> Option<String> {
        match get(m, field)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.wrong(&child(path, field), "a string", other);
                None
            }
        }
    }

    /// An optional whole-number field inside `min..=max`.
    pub(super) fn int(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        field: &str,
        (min, max): (i128, i128),
    ) -> Option<i128> {
        self.int_or(m, path, field, (min, max), "a whole number")
    }

    /// [`Reader::int`] with what to ask for when the value is no number.
    pub(super) fn int_or(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        field: &str,
        (min, max): (i128, i128),
        expected: &'static str,
    ) -> Option<i128> {
        let value = get(m, field)?;
        let path = child(path, field);
        let n = match value {
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from)),
            _ => None,
        };
        let Some(n) = n else {
            self.wrong(&path, expected, value);
            return None;
        };
        match crate::validate::in_range(n, min, max) {
            Ok(()) => Some(n),
            Err(rule) => {
                self.push(path, rule);
                None
            }
        }
    }

    pub(super) fn required<T>(
        &mut self,
        got: Option<T>,
        m: &Map<String, Value>,
        path: &str,
        field: &str,
        because: &str,
    ) -> Option<T> {
        if got.is_none() && get(m, field).is_none() {
            self.push(
                child(path, field),
                Rule::Required {
                    because: because.to_string(),
                },
            );
        }
        got
    }
}

pub(super) fn range<T: Into<i128>>(min: T, max: T) -> (i128, i128) {
    (min.into(), max.into())
}

pub(super) fn narrow<T: TryFrom<i128>>(n: Option<i128>) -> Option<T> {
    n.and_then(|n| T::try_from(n).ok())
}
