//! JSON Patch by diff, aligned on `name` in lists of named objects.
//!
//! [`json_patch::diff`] compares arrays index by index: inserting a sidecar in front of
//! `initContainers` would come out as a field-by-field rewrite of every existing init container
//! plus an `add` at the end. That patch is valid, but it touches objects the webhook did not
//! need to touch, and it races with any other mutating webhook that edited them. This diff
//! works like `json_patch::diff` except for arrays whose elements are all objects with a unique
//! string `name` on both sides (containers, volumes, env, ports) and whose length changed: there
//! the elements are matched by name, so an insertion is one `add` at its index and the other
//! elements are diffed in place. Lists of the same length are diffed by index, so an element
//! whose `name` changed (a redirected volume mount) is one `replace` of that field.
//! Pointers are built from tokens, so `/` and `~` in keys (annotation names) are escaped.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Map, Value};

/// The patch that turns `left` into `right`.
pub(crate) fn diff(left: &Value, right: &Value) -> Patch {
    let mut patch = Patch(Vec::new());
    diff_at(left, right, PointerBuf::root(), &mut patch);
    patch
}

/// Appends to `patch` the operations turning `left` into `right`, both found at `pointer`.
/// Below the root, `null` stands for an absent member: absent → value is an `add`,
/// value → absent a `remove`.
pub(crate) fn diff_at(left: &Value, right: &Value, mut pointer: PointerBuf, patch: &mut Patch) {
    if pointer.is_root() {
        diff_value(left, right, &mut pointer, &mut patch.0);
        return;
    }
    match (left, right) {
        (Value::Null, Value::Null) => {}
        (Value::Null, _) => patch.0.push(PatchOperation::Add(AddOperation {
            path: pointer,
            value: right.clone(),
        })),
        (_, Value::Null) => patch
            .0
            .push(PatchOperation::Remove(RemoveOperation { path: pointer })),
        _ => diff_value(left, right, &mut pointer, &mut patch.0),
    }
}

fn diff_value(
    left: &Value,
    right: &Value,
    pointer: &mut PointerBuf,
    ops: &mut Vec<PatchOperation>,
) {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => diff_object(l, r, pointer, ops),
        (Value::Array(l), Value::Array(r)) => {
            // Same length: elements changed in place (a renamed volume mount, say) — by index.
            // Different length: something was inserted or removed — align on `name`.
            if l.len() != r.len()
                && let (Some(ln), Some(rn)) = (names(l), names(r))
            {
                diff_named(l, &ln, r, &rn, pointer, ops);
            } else {
                diff_indexed(l, r, pointer, ops);
            }
        }
        _ if left == right => {}
        _ => ops.push(PatchOperation::Replace(ReplaceOperation {
            path: pointer.clone(),
            value: right.clone(),
        })),
    }
}

fn diff_object(
    left: &Map<String, Value>,
    right: &Map<String, Value>,
    pointer: &mut PointerBuf,
    ops: &mut Vec<PatchOperation>,
) {
    for key in left.keys() {
        if !right.contains_key(key) {
            pointer.push_back(key.as_str());
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: pointer.clone(),
            }));
            pointer.pop_back();
        }
    }
    for (key, r) in right {
        pointer.push_back(key.as_str());
        match left.get(key) {
            Some(l) => diff_value(l, r, pointer, ops),
            None => ops.push(PatchOperation::Add(AddOperation {
                path: pointer.clone(),
                value: r.clone(),
            })),
        }
        pointer.pop_back();
    }
}

/// The `name` of every element, when all are objects with distinct string names.
fn names(items: &[Value]) -> Option<Vec<&str>> {
    if items.is_empty() {
        return Some(Vec::new());
    }
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let name = item.get("name")?.as_str()?;
        if names.contains(&name) {
            return None;
        }
        names.push(name);
    }
    Some(names)
}

fn diff_named(
    left: &[Value],
    left_names: &[&str],
    right: &[Value],
    right_names: &[&str],
    pointer: &mut PointerBuf,
    ops: &mut Vec<PatchOperation>,
) {
    // Elements kept on both sides must keep their relative order; otherwise fall back.
    let kept: Vec<&str> = left_names
        .iter()
        .copied()
        .filter(|n| right_names.contains(n))
        .collect();
    let kept_right: Vec<&str> = right_names
        .iter()
        .copied()
        .filter(|n| left_names.contains(n))
        .collect();
    if kept != kept_right {
        diff_indexed(left, right, pointer, ops);
        return;
    }
    // First remove (from the back, so indexes stay valid), then walk the target order.
    for (index, name) in left_names.iter().enumerate().rev() {
        if !right_names.contains(name) {
            pointer.push_back(index);
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: pointer.clone(),
            }));
            pointer.pop_back();
        }
    }
    for (index, (name, r)) in right_names.iter().zip(right).enumerate() {
        pointer.push_back(index);
        match left_names.iter().position(|n| n == name) {
            Some(li) => diff_value(&left[li], r, pointer, ops),
            None => ops.push(PatchOperation::Add(AddOperation {
                path: pointer.clone(),
                value: r.clone(),
            })),
        }
        pointer.pop_back();
    }
}

fn diff_indexed(
    left: &[Value],
    right: &[Value],
    pointer: &mut PointerBuf,
    ops: &mut Vec<PatchOperation>,
) {
    let common = left.len().min(right.len());
    for index in 0..common {
        pointer.push_back(index);
        diff_value(&left[index], &right[index], pointer, ops);
        pointer.pop_back();
    }
    for index in (common..left.len()).rev() {
        pointer.push_back(index);
        ops.push(PatchOperation::Remove(RemoveOperation {
            path: pointer.clone(),
        }));
        pointer.pop_back();
    }
    for (index, r) in right.iter().enumerate().skip(common) {
        pointer.push_back(index);
        ops.push(PatchOperation::Add(AddOperation {
            path: pointer.clone(),
            value: r.clone(),
        }));
        pointer.pop_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn apply(left: &Value, patch: &Patch) -> Value {
        let mut doc = left.clone();
        json_patch::patch(&mut doc, patch).expect("patch applies");
        doc
    }

    #[test]
    fn insert_in_front_of_named_list_is_one_add() {
        let left = json!({"c": [{"name": "a", "x": 1}, {"name": "b"}]});
        let right = json!({"c": [{"name": "s"}, {"name": "a", "x": 2}, {"name": "b"}]});
        let patch = diff(&left, &right);
        assert_eq!(
            serde_json::to_value(&patch).expect("json"),
            json!([
                {"op": "add", "path": "/c/0", "value": {"name": "s"}},
                {"op": "replace", "path": "/c/1/x", "value": 2},
            ])
        );
        assert_eq!(apply(&left, &patch), right);
    }

    #[test]
    fn keys_with_slashes_are_escaped() {
        let left = json!({"metadata": {"annotations": {"a/b": "1"}}});
        let right = json!({"metadata": {"annotations": {"a/b": "1", "faultline.dev/x~y": "2"}}});
        let patch = diff(&left, &right);
        assert_eq!(
            serde_json::to_value(&patch).expect("json")[0]["path"],
            json!("/metadata/annotations/faultline.dev~1x~0y")
        );
        assert_eq!(apply(&left, &patch), right);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..5).prop_map(Value::from),
            "[ab/~]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[ab]", inner.clone()), 0..4).prop_map(|items| {
                    Value::Array(
                        items
                            .into_iter()
                            .map(|(name, v)| json!({"name": name, "v": v}))
                            .collect(),
                    )
                }),
                prop::collection::btree_map("[ab/~n]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn diff_then_apply_roundtrips(left in arb_json(), right in arb_json()) {
            let patch = diff(&left, &right);
            prop_assert_eq!(apply(&left, &patch), right.clone());
            prop_assert!(diff(&right, &right).0.is_empty());
        }
    }
}
