//! How an error reads to a user: the error and its causes, each once.
//!
//! Library errors here name their cause in their own text (`{path}: {source}`), so that a log
//! line with only the error says what happened. Printing the whole chain (`{:#}`) then repeats
//! each cause; [`error_text`] appends a cause only when the text so far does not hold it yet.

use std::error::Error;

/// `err` and its `source()` chain in one line, no cause twice.
pub fn error_text(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text = format!("{text}: {c_text}");
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("policy.yaml: {source}")]
    struct Named {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("loading the policy")]
    struct Context {
        source: Named,
    }

    #[test]
    fn each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        assert_eq!(
            error_text(&Named { source: io() }),
            "policy.yaml: No such file"
        );
        assert_eq!(
            error_text(&Context {
                source: Named { source: io() }
            }),
            "loading the policy: policy.yaml: No such file"
        );
    }
}
