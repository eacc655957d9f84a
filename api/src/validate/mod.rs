//! Violations: what is wrong with an object, where, and why — and warnings: what is admitted but
//! interpreted.
//!
//! Every validator in this crate returns *all* its findings as [`Violation`]s, each carrying the
//! JSON path of the offending field (`spec.delay.latency`, `spec.containerNames[1]`) and a typed
//! [`Rule`], so callers match variants and users read one sentence per problem. What Chaos Mesh
//! accepts and Faultline reads in its own way (an ignored field, a default) is a [`Warning`] with
//! a path and a typed [`Note`], sent back as an admission warning.
//!
//! The syntax checks shared by several kinds live here as pure functions: Kubernetes names
//! (`names`), percentages, interface names and ranges (`syntax`), errnos (`errno`).

mod errno;
mod names;
mod rule;
mod syntax;
mod warning;

use std::fmt;

pub use errno::{ERRNO_NAMES, errno, errno_name};
pub use names::{dns_label, dns_subdomain, label_key, label_value};
pub use rule::Rule;
pub use syntax::{device_name, in_range, normalize_device, parse_percent};
pub use warning::{Note, Warning};

/// One problem found in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the field, e.g. `spec.delay.latency`.
    pub path: String,
    pub rule: Rule,
}

impl Violation {
    pub fn new(path: impl Into<String>, rule: Rule) -> Self {
        Violation {
            path: path.into(),
            rule,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

impl std::error::Error for Violation {}

/// Joins violations into one message, one per line, for admission denials and CLI errors.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects violations (and warnings) under a path prefix, so nested validators stay short.
#[derive(Debug, Default)]
pub struct Findings {
    violations: Vec<Violation>,
    warnings: Vec<Warning>,
}

impl Findings {
    pub fn push(&mut self, path: impl Into<String>, rule: Rule) {
        self.violations.push(Violation::new(path, rule));
    }

    /// Records `result`'s error, if any, at `path`.
    pub fn check(&mut self, path: impl Into<String>, result: Result<(), Rule>) {
        if let Err(rule) = result {
            self.push(path, rule);
        }
    }

    /// Records a warning: admitted, but read in a way the user should know about.
    pub fn warn(&mut self, path: impl Into<String>, note: Note) {
        self.warnings.push(Warning::new(path, note));
    }

    /// The violations found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The warnings found so far.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The violations (warnings are dropped: use [`Findings::into_parts`] to keep them).
    pub fn into_vec(self) -> Vec<Violation> {
        self.violations
    }

    /// Violations and warnings.
    pub fn into_parts(self) -> (Vec<Violation>, Vec<Warning>) {
        (self.violations, self.warnings)
    }
}

/// A field path helper: `child("spec", "delay")` → `spec.delay`.
pub fn child(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// `index("spec.containerNames", 1)` → `spec.containerNames[1]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// `key("spec.selector.labelSelectors", "app")` → `spec.selector.labelSelectors["app"]`.
pub fn key(parent: &str, k: &str) -> String {
    format!("{parent}[{k:?}]")
}

/// Whether `path` is `under` or a field or entry inside it (`spec.delay.latency` is within
/// `spec.delay`; `spec.delayed` is not).
pub fn within(path: &str, under: &str) -> bool {
    path.strip_prefix(under)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_listed_once() {
        let mut names = Rule::ALL_NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL_NAMES.len());
    }

    #[test]
    fn paths() {
        assert_eq!(child("", "spec"), "spec");
        assert_eq!(child("spec", "delay"), "spec.delay");
        assert_eq!(index("spec.x", 2), "spec.x[2]");
        assert_eq!(key("spec.pods", "shop"), "spec.pods[\"shop\"]");
        assert!(within("spec.delay.latency", "spec.delay"));
        assert!(within("spec.delay", "spec.delay"));
        assert!(within("spec.pods[\"a\"]", "spec.pods"));
        assert!(!within("spec.delayed", "spec.delay"));
    }
}
