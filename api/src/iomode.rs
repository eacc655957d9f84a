//! The fault sidecar's I/O mode: the injection template's `ioMode` and the sidecar's
//! `--io-mode` (docs/sidecar.md, "I/O modes").

use serde::{Deserialize, Serialize};

/// How the sidecar serves the app's reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// Every read and write reaches the sidecar's rules, also on files the app opened before a
    /// rule arrived (databases keep their files open for their whole life); a write costs a
    /// FUSE round trip.
    #[default]
    Exact,
    /// Files no rule matches when they are opened are served by kernel FUSE passthrough, at
    /// near-raw speed; a rule arriving later does not reach the handles already open (the
    /// sidecar counts and logs them) until the app closes and reopens the file.
    Fast,
}

impl IoMode {
    /// `exact` / `fast`.
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Exact => "exact",
            IoMode::Fast => "fast",
        }
    }

    /// The default, which the injection template leaves out of what it hashes and prints.
    pub fn is_exact(&self) -> bool {
        *self == IoMode::Exact
    }
}

impl std::fmt::Display for IoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IoMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exact" => Ok(IoMode::Exact),
            "fast" => Ok(IoMode::Fast),
            other => Err(format!(
                "`{other}` is not an I/O mode: use `exact` (every operation reaches the rules) or `fast` (kernel passthrough for files no rule matches at open)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_yaml_agree() {
        for mode in [IoMode::Exact, IoMode::Fast] {
            assert_eq!(mode.as_str().parse::<IoMode>(), Ok(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
        let err = "Fast".parse::<IoMode>().unwrap_err();
        assert!(err.contains("`Fast` is not an I/O mode"), "{err}");
    }
}
