//! Kubernetes name syntax: DNS labels and subdomains, label keys and values.

use super::Rule;

fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Rule {
    Rule::InvalidName {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// RFC 1123 label: namespaces, container names, volume names.
pub fn dns_label(what: &'static str, value: &str) -> Result<(), Rule> {
    if value.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if value.len() > 63 {
        return Err(invalid(what, value, "must be at most 63 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            what,
            value,
            "may contain only lowercase letters, digits and '-'",
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(invalid(
            what,
            value,
            "must start and end with a letter or digit",
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: pod and node names.
pub fn dns_subdomain(what: &'static str, value: &str) -> Result<(), Rule> {
    if value.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if value.len() > 253 {
        return Err(invalid(what, value, "must be at most 253 characters"));
    }
    for part in value.split('.') {
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || part.starts_with('-')
            || part.ends_with('-')
        {
            return Err(invalid(
                what,
                value,
                "must be lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit",
            ));
        }
    }
    Ok(())
}

fn qualified_name_part(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric()
}

/// Kubernetes label or annotation key: optional DNS-subdomain prefix, `/`, a qualified name.
pub fn label_key(value: &str) -> Result<(), Rule> {
    let (prefix, name) = match value.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        dns_subdomain("label key prefix", prefix).map_err(|_| {
            invalid(
                "label key",
                value,
                "the prefix before '/' must be a DNS subdomain",
            )
        })?;
    }
    if !qualified_name_part(name) {
        return Err(invalid(
            "label key",
            value,
            "the name must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

/// Kubernetes label value: empty, or a qualified-name part.
pub fn label_value(value: &str) -> Result<(), Rule> {
    if value.is_empty() || qualified_name_part(value) {
        Ok(())
    } else {
        Err(invalid(
            "label value",
            value,
            "must be empty or 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns_label("namespace", "team-a").is_ok());
        assert!(dns_label("namespace", "Team").is_err());
        assert!(dns_label("namespace", "-a").is_err());
        assert!(dns_label("namespace", &"a".repeat(64)).is_err());
        assert!(dns_subdomain("pod name", "web-0.x").is_ok());
        assert!(dns_subdomain("pod name", "web..x").is_err());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("app").is_ok());
        assert!(label_key("/app").is_err());
        assert!(label_key("Bad_Prefix/app").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_x").is_ok());
        assert!(label_value("-x").is_err());
    }
}
