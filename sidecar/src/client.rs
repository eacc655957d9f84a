//! A small blocking JSON-RPC client of the sidecar over HTTP/1.1, on TCP or a Unix socket: what
//! `faultline-sidecar probe`, `rules …` and `status` use (no async runtime for one request).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::rpc::listen::resolve;

/// Where the sidecar's RPC service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `host:port` (names resolved).
    Tcp(String),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("cannot reach the sidecar at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("talking to the sidecar at {endpoint}: {source}")]
    Io {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the sidecar at {endpoint} answered HTTP {status}: {body}")]
    Http {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("the answer of {endpoint} is not a JSON-RPC response: {reason}")]
    BadAnswer { endpoint: String, reason: String },
    /// The sidecar refused the call (a JSON-RPC error object).
    #[error("{message}")]
    Rpc {
        code: i64,
        message: String,
        data: Option<Value>,
    },
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

#[derive(Debug, Clone)]
pub(crate) struct Client {
    endpoint: Endpoint,
    timeout: Duration,
}

impl Client {
    pub(crate) fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        Self { endpoint, timeout }
    }

    pub(crate) fn tcp(addr: &str, timeout: Duration) -> Self {
        Self::new(Endpoint::Tcp(addr.to_string()), timeout)
    }

    fn connect_error(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Connect {
            endpoint: self.endpoint.to_string(),
            reason: reason.to_string(),
        }
    }

    fn io_error(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            endpoint: self.endpoint.to_string(),
            source,
        }
    }

    fn connect(&self) -> Result<Box<dyn Stream>, ClientError> {
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path)
                    .map_err(|e| self.connect_error(e))?;
                s.set_read_timeout(Some(self.timeout))
                    .and_then(|()| s.set_write_timeout(Some(self.timeout)))
                    .map_err(|e| self.io_error(e))?;
                Ok(Box::new(s))
            }
            Endpoint::Tcp(addr) => {
                let addrs = resolve(addr).map_err(|e| self.connect_error(e))?;
                let mut last = None;
                for a in addrs {
                    match std::net::TcpStream::connect_timeout(&a, self.timeout) {
                        Ok(s) => {
                            s.set_read_timeout(Some(self.timeout))
                                .and_then(|()| s.set_write_timeout(Some(self.timeout)))
                                .map_err(|e| self.io_error(e))?;
                            return Ok(Box::new(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(self.connect_error(
                    last.map_or_else(|| "no address".to_string(), |e| e.to_string()),
                ))
            }
        }
    }

    /// One HTTP/1.1 exchange; returns (status, body).
    fn exchange(&self, request: &str) -> Result<(u16, String), ClientError> {
        let mut s = self.connect()?;
        s.write_all(request.as_bytes())
            .map_err(|e| self.io_error(e))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| self.io_error(e))?;
        parse_http(&raw).map_err(|reason| ClientError::BadAnswer {
            endpoint: self.endpoint.to_string(),
            reason,
        })
    }

    /// `GET path`: (status, body).
    pub(crate) fn get(&self, path: &str) -> Result<(u16, String), ClientError> {
        self.exchange(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ))
    }

    /// Calls `method` with named `params`; the `result`, or the sidecar's error.
    pub(crate) fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let (status, answer) = self.exchange(&format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))?;
        // JSON-RPC errors may come with a 4xx status (a parse error is a 400): read the body.
        let Ok(mut value) = serde_json::from_str::<Value>(&answer) else {
            return Err(ClientError::Http {
                endpoint: self.endpoint.to_string(),
                status,
                body: answer.trim().to_string(),
            });
        };
        if let Some(error) = value.get_mut("error") {
            return Err(ClientError::Rpc {
                code: error["code"].as_i64().unwrap_or(0),
                message: error["message"].as_str().unwrap_or("").to_string(),
                data: error.get_mut("data").map(Value::take),
            });
        }
        match value.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(ClientError::BadAnswer {
                endpoint: self.endpoint.to_string(),
                reason: format!("no result and no error in {answer}"),
            }),
        }
    }
}

/// Status and body of an HTTP/1.1 response (`Content-Length`, chunked or read to the end).
fn parse_http(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header in {:?}", truncate(&text)))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {:?}", truncate(head)))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body).ok_or("bad chunked encoding")?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

fn truncate(s: &str) -> &str {
    s.char_indices().nth(200).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready";
        assert_eq!(parse_http(plain), Ok((200, "ready".into())));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_http(chunked), Ok((200, "{\"a\":1}".into())));
        assert!(parse_http(b"garbage").is_err());
    }
}
