//! `faultline-sidecar rules add|list|remove|clear` and `faultline-sidecar status`: a command line
//! beside curl, talking to a running sidecar over `--rpc-listen` or `--rpc-socket`.
//!
//! Results go to stdout (tables, or raw JSON with `-o json`); a refusal of the sidecar is printed
//! once on stderr, one line per bad field, and the exit code is 1.

mod table;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{Client, ClientError, Endpoint};

/// Which sidecar to talk to: the same flags as the server's.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The sidecar's JSON-RPC address (host:port).
    #[arg(long, default_value = "127.0.0.1:65533", env = "FAULTLINE_RPC_LISTEN")]
    pub rpc_listen: String,
    /// Talk over this Unix socket instead (the server's --rpc-socket).
    #[arg(long)]
    pub rpc_socket: Option<PathBuf>,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Which mount of the sidecar: its volume name or the path where the app mounts it
    /// (needed to add or set rules when the sidecar serves several; absent = every mount for
    /// list, clear and status).
    #[arg(long)]
    pub mount: Option<String>,
}

impl Target {
    fn client(&self) -> Client {
        let endpoint = match &self.rpc_socket {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::Tcp(self.rpc_listen.clone()),
        };
        Client::new(endpoint, Duration::from_millis(self.timeout_ms))
    }

    /// `params` with `"mount"` when one was given.
    fn with_mount(&self, mut params: Value) -> Value {
        if let (Some(mount), Some(map)) = (&self.mount, params.as_object_mut()) {
            map.insert("mount".into(), json!(mount));
        }
        params
    }
}

/// Output format of `rules list` and `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A readable table.
    #[default]
    Table,
    /// The raw JSON-RPC result.
    Json,
}

/// `faultline-sidecar rules …`
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Add one rule, given as a JSON argument or read with -f.
    #[command(after_help = "Example:\n  faultline-sidecar rules add \
        '{\"type\": \"fault\", \"path\": \"logs/**\", \"faults\": [{\"errno\": \"EIO\"}]}'")]
    Add {
        /// The rule as JSON, e.g. '{"type": "latency", "latency": "100ms"}'.
        #[arg(conflicts_with = "file", required_unless_present = "file")]
        rule: Option<String>,
        /// Read the rule from this file ("-" for stdin).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// List the rules with their hit counts.
    List {
        #[command(flatten)]
        target: Target,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Remove the rule with this id.
    Remove {
        /// The rule's id (as `rules list` shows it).
        id: String,
        #[command(flatten)]
        target: Target,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Remove every rule.
    Clear {
        #[command(flatten)]
        target: Target,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
}

/// `faultline-sidecar status`
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Reads the rule of `rules add`: the argument, or the file (`-` = stdin).
fn rule_text(rule: Option<String>, file: Option<PathBuf>) -> Result<(String, String), String> {
    match (rule, file) {
        (Some(text), _) => Ok(("the rule argument".into(), text)),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("read the rule from stdin: {e}"))?;
            Ok(("stdin".into(), text))
        }
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|text| (path.display().to_string(), text))
            .map_err(|e| format!("read {}: {e}", path.display())),
        (None, None) => Err("give the rule as an argument or with -f FILE".into()),
    }
}

/// What the command prints, or why it failed.
fn run_rules(cmd: RulesCommand) -> Result<String, String> {
    let (target, output, method, params) = match cmd {
        RulesCommand::Add {
            rule,
            file,
            target,
            output,
        } => {
            let (source, text) = rule_text(rule, file)?;
            // Checked here only for JSON syntax, to point at the line and column; the sidecar
            // judges the rule itself (one acceptance rule).
            let rule: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{source} is not valid JSON: {e}"))?;
            (target, output, "rules.add", json!({ "rule": rule }))
        }
        RulesCommand::List { target, output } => (target, output, "rules.list", json!({})),
        RulesCommand::Remove { id, target, output } => {
            (target, output, "rules.remove", json!({ "id": id }))
        }
        RulesCommand::Clear { target, output } => (target, output, "rules.clear", json!({})),
    };
    let params = target.with_mount(params);
    let result = call(&target, method, params)?;
    Ok(match output {
        Output::Json => pretty(&result),
        Output::Table => match method {
            "rules.list" => table::rules(&result),
            "rules.add" => format!(
                "added rule {} to mount {} (generation {})\n",
                result["id"].as_str().unwrap_or("?"),
                result["mount"].as_str().unwrap_or("?"),
                result["generation"]
            ),
            "rules.remove" => format!("removed (generation {})\n", result["generation"]),
            _ => match &target.mount {
                Some(mount) => format!(
                    "cleared the rules of mount {mount} (generation {})\n",
                    result["generation"]
                ),
                None => format!("cleared all rules (generation {})\n", result["generation"]),
            },
        },
    })
}

fn run_status(args: StatusArgs) -> Result<String, String> {
    let result = call(&args.target, "status", args.target.with_mount(json!({})))?;
    Ok(match args.output {
        Output::Json => pretty(&result),
        Output::Table => table::status(&result),
    })
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

fn call(target: &Target, method: &str, params: Value) -> Result<Value, String> {
    target
        .client()
        .call(method, params)
        .map_err(|err| describe(method, &err))
}

/// A refusal in words: one line per bad field when the sidecar listed them.
fn describe(method: &str, err: &ClientError) -> String {
    let ClientError::Rpc { message, data, .. } = err else {
        return err.to_string();
    };
    let violations: Vec<String> = data
        .as_ref()
        .and_then(|d| d.get("violations"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|v| {
                    format!(
                        "  {}: {}",
                        v["field"].as_str().unwrap_or("?"),
                        v["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if violations.is_empty() {
        format!("{method} refused: {message}")
    } else {
        format!(
            "{method} refused, invalid params:\n{}",
            violations.join("\n")
        )
    }
}

fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("faultline-sidecar: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `faultline-sidecar rules …`.
pub fn rules(cmd: RulesCommand) -> ExitCode {
    finish(run_rules(cmd))
}

/// Runs `faultline-sidecar status`.
pub fn status(args: StatusArgs) -> ExitCode {
    finish(run_status(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_list_each_field_once() {
        let err = ClientError::Rpc {
            code: -32602,
            message: "invalid params: rule.pth: unknown field (accepted: id)".into(),
            data: Some(json!({"field": "rule.pth", "violations": [
                {"field": "rule.pth", "reason": "unknown field (accepted: id)"},
                {"field": "rule.percent", "reason": "-5 is out of range: must be from 0 to 100"},
            ]})),
        };
        assert_eq!(
            describe("rules.add", &err),
            "rules.add refused, invalid params:\n  rule.pth: unknown field (accepted: id)\n  \
             rule.percent: -5 is out of range: must be from 0 to 100"
        );
        let err = ClientError::Rpc {
            code: -32601,
            message: "method `x` not found; methods: status".into(),
            data: None,
        };
        assert_eq!(
            describe("x", &err),
            "x refused: method `x` not found; methods: status"
        );
    }
}
